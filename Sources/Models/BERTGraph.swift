import Tensor

extension BertModel {
  /// A new model: Hugging Face's init (normal(0, 0.02) weights and embeddings, zero biases,
  /// unit LayerNorms) from a seed, or zero weights (for shapes and counts only).
  public init(
    configuration: BertConfiguration, prefix: String = "", classes: Int?,
    initialization: Initialization
  ) {
    let c = configuration
    var random = RandomStream(seed: initialization.seed ?? 0)
    func normal(_ shape: [Int]) -> Tensor {
      guard initialization.seed != nil else { return Tensor(zeros: shape) }
      return Tensor.normal(shape: shape, standardDeviation: 0.02, random: &random)
    }
    func linear(_ name: String, _ inFeatures: Int, _ outFeatures: Int) -> Linear {
      Linear(
        name: name, weight: normal([outFeatures, inFeatures]), bias: Tensor(zeros: [outFeatures]))
    }
    let p = prefix
    self.configuration = c
    self.prefix = prefix
    wordEmbeddings = Embedding(
      name: p + "embeddings.word_embeddings", weight: normal([c.vocabularySize, c.hiddenSize]))
    positionEmbeddings = Embedding(
      name: p + "embeddings.position_embeddings", weight: normal([c.maxPositions, c.hiddenSize]))
    tokenTypeEmbeddings = Embedding(
      name: p + "embeddings.token_type_embeddings",
      weight: normal([c.typeVocabularySize, c.hiddenSize]))
    embeddingNorm = LayerNorm(
      name: p + "embeddings.LayerNorm", features: c.hiddenSize, epsilon: c.layerNormEpsilon)
    var layers: [BertLayer] = []
    for index in 0..<c.layerCount {
      let base = p + "encoder.layer.\(index)."
      layers.append(
        BertLayer(
          query: linear(base + "attention.self.query", c.hiddenSize, c.hiddenSize),
          key: linear(base + "attention.self.key", c.hiddenSize, c.hiddenSize),
          value: linear(base + "attention.self.value", c.hiddenSize, c.hiddenSize),
          attention: MultiHeadAttention(
            heads: c.headCount, dropoutProbability: c.attentionDropout),
          attentionOutput: linear(base + "attention.output.dense", c.hiddenSize, c.hiddenSize),
          attentionNorm: LayerNorm(
            name: base + "attention.output.LayerNorm", features: c.hiddenSize,
            epsilon: c.layerNormEpsilon),
          intermediate: linear(base + "intermediate.dense", c.hiddenSize, c.intermediateSize),
          output: linear(base + "output.dense", c.intermediateSize, c.hiddenSize),
          outputNorm: LayerNorm(
            name: base + "output.LayerNorm", features: c.hiddenSize, epsilon: c.layerNormEpsilon)))
    }
    self.layers = layers
    pooler = linear(p + "pooler.dense", c.hiddenSize, c.hiddenSize)
    classifier = classes.map { linear("classifier", c.hiddenSize, $0) }
  }

  /// A model from checkpoint tensors; every tensor's shape is checked against `configuration`.
  /// `prefix` is `"bert."` or `""`, as the checkpoint names them.
  public init(configuration: BertConfiguration, prefix: String, loading source: WeightSource)
    throws(WeightError)
  {
    let c = configuration
    let p = prefix
    self.configuration = c
    self.prefix = prefix
    wordEmbeddings = Embedding(
      name: p + "embeddings.word_embeddings",
      weight: try source.require(
        p + "embeddings.word_embeddings.weight", shape: [c.vocabularySize, c.hiddenSize]))
    positionEmbeddings = Embedding(
      name: p + "embeddings.position_embeddings",
      weight: try source.require(
        p + "embeddings.position_embeddings.weight", shape: [c.maxPositions, c.hiddenSize]))
    tokenTypeEmbeddings = Embedding(
      name: p + "embeddings.token_type_embeddings",
      weight: try source.require(
        p + "embeddings.token_type_embeddings.weight", shape: [c.typeVocabularySize, c.hiddenSize])
    )
    embeddingNorm = try LayerNorm(
      loading: p + "embeddings.LayerNorm", features: c.hiddenSize, epsilon: c.layerNormEpsilon,
      from: source)
    var layers: [BertLayer] = []
    for index in 0..<c.layerCount {
      let base = p + "encoder.layer.\(index)."
      let h = c.hiddenSize
      layers.append(
        BertLayer(
          query: try Linear(
            loading: base + "attention.self.query", inFeatures: h, outFeatures: h, from: source),
          key: try Linear(
            loading: base + "attention.self.key", inFeatures: h, outFeatures: h, from: source),
          value: try Linear(
            loading: base + "attention.self.value", inFeatures: h, outFeatures: h, from: source),
          attention: MultiHeadAttention(
            heads: c.headCount, dropoutProbability: c.attentionDropout),
          attentionOutput: try Linear(
            loading: base + "attention.output.dense", inFeatures: h, outFeatures: h, from: source),
          attentionNorm: try LayerNorm(
            loading: base + "attention.output.LayerNorm", features: h,
            epsilon: c.layerNormEpsilon, from: source),
          intermediate: try Linear(
            loading: base + "intermediate.dense", inFeatures: h, outFeatures: c.intermediateSize,
            from: source),
          output: try Linear(
            loading: base + "output.dense", inFeatures: c.intermediateSize, outFeatures: h,
            from: source),
          outputNorm: try LayerNorm(
            loading: base + "output.LayerNorm", features: h, epsilon: c.layerNormEpsilon,
            from: source)))
    }
    self.layers = layers
    if source.tensors[p + "pooler.dense.weight"] != nil {
      pooler = try Linear(
        loading: p + "pooler.dense", inFeatures: c.hiddenSize, outFeatures: c.hiddenSize,
        from: source)
    } else {
      pooler = nil
    }
    if let weight = source.tensors["classifier.weight"] {
      guard weight.shape.count == 2, weight.shape[1] == c.hiddenSize, weight.shape[0] >= 1 else {
        throw WeightError(
          "tensor 'classifier.weight' has shape \(weight.shape); expected [classes, \(c.hiddenSize)]"
        )
      }
      classifier = try Linear(
        loading: "classifier", inFeatures: c.hiddenSize, outFeatures: weight.shape[0],
        from: source)
    } else {
      classifier = nil
    }
  }

  /// The model with a fresh `classes`-way classifier (normal(0, 0.02), zero bias) in place of
  /// any head it had.
  public func replacingClassifier(classes: Int, random: inout RandomStream) -> BertModel {
    var result = self
    result.classifier = Linear(
      name: "classifier",
      weight: Tensor.normal(
        shape: [classes, configuration.hiddenSize], standardDeviation: 0.02, random: &random),
      bias: Tensor(zeros: [classes]))
    return result
  }

  /// Every node in execution order, with its role.
  public var nodes: [GraphNode] {
    var result = [
      wordEmbeddings.node(role: .embeddings), positionEmbeddings.node(role: .embeddings),
      tokenTypeEmbeddings.node(role: .embeddings),
      embeddingNorm.node(role: .embeddings, block: nil),
    ]
    for (index, layer) in layers.enumerated() {
      result += [
        layer.query.node(role: .query, block: index),
        layer.key.node(role: .key, block: index),
        layer.value.node(role: .value, block: index),
        layer.attentionOutput.node(role: .attentionOutput, block: index),
        layer.attentionNorm.node(role: .attentionNorm, block: index),
        layer.intermediate.node(role: .ffnIntermediate, block: index),
        layer.output.node(role: .ffnOutput, block: index),
        layer.outputNorm.node(role: .ffnNorm, block: index),
      ]
    }
    if let pooler { result.append(pooler.node(role: .pooler, block: nil)) }
    if let classifier { result.append(classifier.node(role: .classifier, block: nil)) }
    return result
  }

  /// Every parameter by checkpoint name, in node order.
  public var namedParameters: [(String, Tensor)] {
    var result: [(String, Tensor)] = [
      (wordEmbeddings.weightName, wordEmbeddings.weight),
      (positionEmbeddings.weightName, positionEmbeddings.weight),
      (tokenTypeEmbeddings.weightName, tokenTypeEmbeddings.weight),
    ]
    result += embeddingNorm.namedParameters
    for layer in layers {
      result += layer.query.namedParameters + layer.key.namedParameters
      result += layer.value.namedParameters + layer.attentionOutput.namedParameters
      result += layer.attentionNorm.namedParameters + layer.intermediate.namedParameters
      result += layer.output.namedParameters + layer.outputNorm.namedParameters
    }
    if let pooler { result += pooler.namedParameters }
    if let classifier { result += classifier.namedParameters }
    return result
  }
}

import Tensor

/// Every `config.json` field of a Hugging Face BERT that changes the computation.
public struct BertConfiguration: Sendable, Equatable {
  public var vocabularySize: Int
  public var hiddenSize: Int
  public var layerCount: Int
  public var headCount: Int
  public var intermediateSize: Int
  public var activation: Activation
  public var layerNormEpsilon: Float
  public var maxPositions: Int
  public var typeVocabularySize: Int
  public var hiddenDropout: Float
  public var attentionDropout: Float
  /// `classifier_dropout`; nil: the hidden dropout (Hugging Face's rule).
  public var classifierDropout: Float?

  public init(
    vocabularySize: Int = 30_522, hiddenSize: Int, layerCount: Int, headCount: Int,
    intermediateSize: Int, activation: Activation = .gelu, layerNormEpsilon: Float = 1e-12,
    maxPositions: Int = 512, typeVocabularySize: Int = 2, hiddenDropout: Float = 0.1,
    attentionDropout: Float = 0.1, classifierDropout: Float? = nil
  ) {
    self.vocabularySize = vocabularySize
    self.hiddenSize = hiddenSize
    self.layerCount = layerCount
    self.headCount = headCount
    self.intermediateSize = intermediateSize
    self.activation = activation
    self.layerNormEpsilon = layerNormEpsilon
    self.maxPositions = maxPositions
    self.typeVocabularySize = typeVocabularySize
    self.hiddenDropout = hiddenDropout
    self.attentionDropout = attentionDropout
    self.classifierDropout = classifierDropout
  }
}

/// One tokenised batch: row-major `batchSize × length` ids, attention mask and token types.
public struct TextBatch: Sendable {
  public var batchSize: Int
  public var length: Int
  public var inputIDs: [Int32]
  public var attentionMask: [Int32]
  public var tokenTypeIDs: [Int32]
  public var labels: [Int32]?

  public init(
    batchSize: Int, length: Int, inputIDs: [Int32], attentionMask: [Int32]? = nil,
    tokenTypeIDs: [Int32]? = nil, labels: [Int32]? = nil
  ) {
    self.batchSize = batchSize
    self.length = length
    self.inputIDs = inputIDs
    self.attentionMask = attentionMask ?? [Int32](repeating: 1, count: inputIDs.count)
    self.tokenTypeIDs = tokenTypeIDs ?? [Int32](repeating: 0, count: inputIDs.count)
    self.labels = labels
  }
}

/// Input that does not fit the model; the message names the tensor and the allowed range.
public struct ModelInputError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// One transformer block: self-attention, then the feed-forward network, each with a residual
/// connection and a post-LayerNorm (BERT's order).
public struct BertLayer: Sendable {
  public var query: Linear
  public var key: Linear
  public var value: Linear
  public var attention: MultiHeadAttention
  public var attentionOutput: Linear
  public var attentionNorm: LayerNorm
  public var intermediate: Linear
  public var output: Linear
  public var outputNorm: LayerNorm

  /// What backward needs from one block.
  public struct Cache: Sendable {
    var input: Tensor
    var query: Linear.Cache
    var key: Linear.Cache
    var value: Linear.Cache
    var attention: MultiHeadAttention.Cache
    var attentionOutput: Linear.Cache
    var attentionDropoutMask: Tensor?
    var attentionNorm: LayerNorm.Cache
    var intermediate: Linear.Cache
    var intermediateInput: Tensor
    var intermediateOutput: Tensor
    var output: Linear.Cache
    var outputDropoutMask: Tensor?
    var outputNorm: LayerNorm.Cache
  }
}

/// What backward needs from a whole forward pass (kept only in training mode).
public struct BertTape: Sendable {
  var batch: TextBatch
  var embeddingSum: LayerNorm.Cache
  var embeddingDropoutMask: Tensor?
  var layers: [BertLayer.Cache]
  var pooler: Linear.Cache?
  var pooled: Tensor
  var classifierDropoutMask: Tensor?
  var classifier: Linear.Cache?
}

/// The outputs of a forward pass, as Hugging Face names them.
public struct BertOutputs: Sendable {
  /// `batch × length × hidden`.
  public var lastHiddenState: Tensor
  /// `batch × hidden`; nil when the checkpoint has no pooler.
  public var poolerOutput: Tensor?
  /// `batch × classes`; nil without a classifier head.
  public var logits: Tensor?
  /// Mean cross-entropy, when the batch has labels and the model a head.
  public var loss: Float?
  /// `∂loss/∂logits`, kept for backward (a distillation loss replaces it).
  public var logitsGradient: Tensor?
  /// An extra `∂loss/∂lastHiddenState` (`batch × length × hidden`) that backward adds, e.g. a
  /// feature-distillation term; nil: none.
  public var lastHiddenGradient: Tensor?
  /// With `.hiddenStates`: the embedding output and every block's output, `layerCount + 1`
  /// tensors of `batch × length × hidden` (Hugging Face's `hidden_states`).
  public var hiddenStates: [Tensor]?
  /// With `.attentionScores`: every block's pre-softmax scores `s·Q Kᵀ`, before the padding
  /// mask, `batch × heads × length × length`.
  public var attentionScores: [Tensor]?
  /// Extra gradients for `hiddenStates` that backward adds (same count and shapes); nil: none.
  public var hiddenStatesGradient: [Tensor]?
  /// Extra gradients for `attentionScores` that backward adds (same count and shapes); nil:
  /// none.
  public var attentionScoresGradient: [Tensor]?
}

/// Hugging Face's `BertModel` (optionally with the `BertForSequenceClassification` head):
/// embeddings, `layerCount` blocks, a tanh pooler on [CLS] and a linear classifier on the pooler.
public struct BertModel: Sendable {
  public var configuration: BertConfiguration
  /// `"bert."` for a `BertForSequenceClassification` checkpoint, `""` for a bare `BertModel`.
  public var prefix: String
  public var wordEmbeddings: Embedding
  public var positionEmbeddings: Embedding
  public var tokenTypeEmbeddings: Embedding
  public var embeddingNorm: LayerNorm
  public var layers: [BertLayer]
  public var pooler: Linear?
  public var classifier: Linear?

  /// The number of classes of the head (nil: no head).
  public var classCount: Int? { classifier?.outFeatures }

  /// Checks what the tensors themselves cannot: ids, types and lengths within the tables.
  public func validate(_ batch: TextBatch) throws(ModelInputError) {
    let count = batch.batchSize * batch.length
    guard batch.inputIDs.count == count, batch.attentionMask.count == count,
      batch.tokenTypeIDs.count == count
    else {
      throw ModelInputError(
        "input_ids, attention_mask and token_type_ids must all be \(batch.batchSize)×\(batch.length)"
      )
    }
    guard batch.length <= configuration.maxPositions else {
      throw ModelInputError(
        "sequence length \(batch.length) exceeds max_position_embeddings \(configuration.maxPositions); truncate the inputs"
      )
    }
    if let bad = batch.inputIDs.first(where: { $0 < 0 || Int($0) >= configuration.vocabularySize })
    {
      throw ModelInputError(
        "input_ids holds \(bad), outside the vocabulary 0..<\(configuration.vocabularySize)")
    }
    if let bad = batch.tokenTypeIDs.first(where: {
      $0 < 0 || Int($0) >= configuration.typeVocabularySize
    }) {
      throw ModelInputError(
        "token_type_ids holds \(bad), outside 0..<\(configuration.typeVocabularySize) (type_vocab_size)"
      )
    }
    if let bad = batch.attentionMask.first(where: { $0 != 0 && $0 != 1 }) {
      throw ModelInputError("attention_mask holds \(bad); it must be 0 or 1")
    }
    if let labels = batch.labels {
      guard labels.count == batch.batchSize else {
        throw ModelInputError(
          "labels has \(labels.count) entries for a batch of \(batch.batchSize)")
      }
      guard let classes = classCount else {
        throw ModelInputError("labels were given but the model has no classifier head")
      }
      if let bad = labels.first(where: { $0 < 0 || Int($0) >= classes }) {
        throw ModelInputError("labels holds \(bad), outside 0..<\(classes)")
      }
    }
  }

  /// Runs the model. In training mode dropout draws from `random`. The tape for `backward` is
  /// kept only when `recordsTape` (by default: in training); otherwise nothing is cached.
  /// `intermediates` selects the inner tensors the outputs also carry.
  public func forward(
    _ batch: TextBatch, mode: ForwardMode, recordsTape: Bool? = nil,
    exposing intermediates: Intermediates = [], random: inout RandomStream
  ) throws(ModelInputError) -> (outputs: BertOutputs, tape: BertTape?) {
    try validate(batch)
    let (batchSize, length, hidden) = (batch.batchSize, batch.length, configuration.hiddenSize)
    let recording = recordsTape ?? (mode == .training)
    let hiddenDropout = Dropout(probability: configuration.hiddenDropout)

    let positions = (0..<batchSize).flatMap { _ in (0..<length).map { Int32($0) } }
    var embedded = wordEmbeddings.forward(batch.inputIDs)
    embedded.add(positionEmbeddings.forward(positions))
    embedded.add(tokenTypeEmbeddings.forward(batch.tokenTypeIDs))
    let (normalized, embeddingCache) = embeddingNorm.forward(embedded)
    var (hiddenState, embeddingMask) = hiddenDropout.forward(
      normalized, mode: mode, random: &random)
    let keepsHiddenStates = intermediates.contains(.hiddenStates)
    let keepsScores = intermediates.contains(.attentionScores)
    var hiddenStates: [Tensor] = []
    var attentionScores: [Tensor] = []
    if keepsHiddenStates { hiddenStates.append(hiddenState.reshaped([batchSize, length, hidden])) }

    var layerCaches: [BertLayer.Cache] = []
    for layer in layers {
      let input = hiddenState
      let (query, queryCache) = layer.query.forward(input, mode: mode, random: &random)
      let (key, keyCache) = layer.key.forward(input, mode: mode, random: &random)
      let (value, valueCache) = layer.value.forward(input, mode: mode, random: &random)
      let (context, attentionCache) = layer.attention.forward(
        query: query, key: key, value: value, mask: batch.attentionMask, batch: batchSize,
        length: length, mode: mode, keepsScores: keepsScores, random: &random)
      if let scores = attentionCache.scores { attentionScores.append(scores) }
      let (projected, projectedCache) = layer.attentionOutput.forward(
        context, mode: mode, random: &random)
      var (droppedAttention, attentionMask) = hiddenDropout.forward(
        projected, mode: mode, random: &random)
      droppedAttention.add(input)
      let (normalizedAttention, attentionNormCache) = layer.attentionNorm.forward(droppedAttention)
      let (preActivation, intermediateCache) = layer.intermediate.forward(
        normalizedAttention, mode: mode, random: &random)
      let activated = configuration.activation.forward(preActivation)
      let (output, outputCache) = layer.output.forward(activated, mode: mode, random: &random)
      var (droppedOutput, outputMask) = hiddenDropout.forward(output, mode: mode, random: &random)
      droppedOutput.add(normalizedAttention)
      let (layerOutput, outputNormCache) = layer.outputNorm.forward(droppedOutput)
      hiddenState = layerOutput
      if keepsHiddenStates {
        hiddenStates.append(layerOutput.reshaped([batchSize, length, hidden]))
      }
      if recording {
        layerCaches.append(
          BertLayer.Cache(
            input: input, query: queryCache, key: keyCache, value: valueCache,
            attention: attentionCache, attentionOutput: projectedCache,
            attentionDropoutMask: attentionMask, attentionNorm: attentionNormCache,
            intermediate: intermediateCache, intermediateInput: preActivation,
            intermediateOutput: activated, output: outputCache, outputDropoutMask: outputMask,
            outputNorm: outputNormCache))
      }
    }

    var outputs = BertOutputs(lastHiddenState: hiddenState.reshaped([batchSize, length, hidden]))
    if keepsHiddenStates { outputs.hiddenStates = hiddenStates }
    if keepsScores { outputs.attentionScores = attentionScores }
    var classifierToken = Tensor(zeros: [batchSize, hidden])
    var classifierMask: Tensor?
    var poolerCache: Linear.Cache?
    var classifierCache: Linear.Cache?
    if let pooler {
      hiddenState.withUnsafeBufferPointer { h in
        classifierToken.withUnsafeMutableBufferPointer { cls in
          for b in 0..<batchSize {
            (cls.baseAddress! + b * hidden).update(
              from: h.baseAddress! + b * length * hidden, count: hidden)
          }
        }
      }
      let (preTanh, cache) = pooler.forward(classifierToken, mode: mode, random: &random)
      poolerCache = cache
      let pooled = Activation.tanh.forward(preTanh)
      outputs.poolerOutput = pooled
      if let classifier {
        let dropout = Dropout(
          probability: configuration.classifierDropout ?? configuration.hiddenDropout)
        let classifierInput: Tensor
        (classifierInput, classifierMask) = dropout.forward(pooled, mode: mode, random: &random)
        let (logits, cache) = classifier.forward(classifierInput, mode: mode, random: &random)
        classifierCache = cache
        outputs.logits = logits
        if let labels = batch.labels {
          let (loss, gradient) = CrossEntropy.lossAndGradient(logits: logits, labels: labels)
          outputs.loss = loss
          outputs.logitsGradient = gradient
        }
      }
    }
    guard recording else { return (outputs, nil) }
    let tape = BertTape(
      batch: batch, embeddingSum: embeddingCache, embeddingDropoutMask: embeddingMask,
      layers: layerCaches, pooler: poolerCache, pooled: outputs.poolerOutput ?? Tensor(zeros: [0]),
      classifierDropoutMask: classifierMask, classifier: classifierCache)
    return (outputs, tape)
  }

  /// The gradients of the mean cross-entropy of `outputs` for every wanted parameter.
  public func backward(tape: BertTape, outputs: BertOutputs, gradients: inout GradientSet) {
    guard let logitsGradient = outputs.logitsGradient, let classifier, let pooler,
      let classifierCache = tape.classifier, let poolerCache = tape.pooler
    else {
      preconditionFailure("backward needs a forward pass with labels through a classifier head")
    }
    let batch = tape.batch
    let (batchSize, length, hidden) = (batch.batchSize, batch.length, configuration.hiddenSize)
    let hiddenDropout = Dropout(probability: configuration.hiddenDropout)
    let classifierDropout = Dropout(
      probability: configuration.classifierDropout ?? configuration.hiddenDropout)

    var pooledGradient = classifier.backward(
      cache: classifierCache, outputGradient: logitsGradient, gradients: &gradients)!
    pooledGradient = classifierDropout.backward(
      mask: tape.classifierDropoutMask, outputGradient: pooledGradient)
    let preTanhGradient = Activation.tanh.backward(
      input: tape.pooled, output: tape.pooled, outputGradient: pooledGradient)
    let tokenGradient = pooler.backward(
      cache: poolerCache, outputGradient: preTanhGradient, gradients: &gradients)!
    var hiddenGradient = Tensor(zeros: [batchSize * length, hidden])
    tokenGradient.withUnsafeBufferPointer { cls in
      hiddenGradient.withUnsafeMutableBufferPointer { h in
        for b in 0..<batchSize {
          (h.baseAddress! + b * length * hidden).update(
            from: cls.baseAddress! + b * hidden, count: hidden)
        }
      }
    }

    if let extra = outputs.lastHiddenGradient {
      hiddenGradient.add(extra.reshaped([batchSize * length, hidden]))
    }

    // Backward stops below the lowest block that has a trained tensor.
    let needsEmbeddings = gradients.wantsAny(withPrefix: prefix + "embeddings.")
    let lowestLayer =
      needsEmbeddings
      ? 0
      : (layers.indices.first { gradients.wantsAny(withPrefix: prefix + "encoder.layer.\($0).") }
        ?? layers.count)
    let rows = [batchSize * length, hidden]
    for (index, (layer, cache)) in zip(layers, tape.layers).enumerated().reversed() {
      if index < lowestLayer { return }
      if let extra = outputs.hiddenStatesGradient?[index + 1] {
        hiddenGradient.add(extra.reshaped(rows))
      }
      // Output LayerNorm over (dropout(output) + normalizedAttention).
      let sumGradient = layer.outputNorm.backward(
        cache: cache.outputNorm, outputGradient: hiddenGradient, gradients: &gradients)
      let outputGradient = hiddenDropout.backward(
        mask: cache.outputDropoutMask, outputGradient: sumGradient)
      let activatedGradient = layer.output.backward(
        cache: cache.output, outputGradient: outputGradient, gradients: &gradients)!
      let preActivationGradient = configuration.activation.backward(
        input: cache.intermediateInput, output: cache.intermediateOutput,
        outputGradient: activatedGradient)
      var normalizedAttentionGradient = layer.intermediate.backward(
        cache: cache.intermediate, outputGradient: preActivationGradient, gradients: &gradients)!
      normalizedAttentionGradient.add(sumGradient)
      // Attention LayerNorm over (dropout(projected) + input).
      let attentionSumGradient = layer.attentionNorm.backward(
        cache: cache.attentionNorm, outputGradient: normalizedAttentionGradient,
        gradients: &gradients)
      let projectedGradient = hiddenDropout.backward(
        mask: cache.attentionDropoutMask, outputGradient: attentionSumGradient)
      let contextGradient = layer.attentionOutput.backward(
        cache: cache.attentionOutput, outputGradient: projectedGradient, gradients: &gradients)!
      let (queryGradient, keyGradient, valueGradient) = layer.attention.backward(
        cache: cache.attention, outputGradient: contextGradient, batch: batchSize, length: length,
        scoresGradient: outputs.attentionScoresGradient?[index])
      // The lowest block's input gradient feeds nothing trained: its Q/K/V products skip the
      // GEMMs for it (as autograd does), and the backward ends with this block.
      let needsInputGradient = index > lowestLayer || needsEmbeddings
      var inputGradient = attentionSumGradient
      for (projection, projectionCache, gradient) in [
        (layer.query, cache.query, queryGradient), (layer.key, cache.key, keyGradient),
        (layer.value, cache.value, valueGradient),
      ] {
        let projected = projection.backward(
          cache: projectionCache, outputGradient: gradient, gradients: &gradients,
          needsInputGradient: needsInputGradient)
        if let projected { inputGradient.add(projected) }
      }
      if !needsInputGradient { return }
      hiddenGradient = inputGradient
    }
    guard needsEmbeddings else { return }
    if let extra = outputs.hiddenStatesGradient?[0] { hiddenGradient.add(extra.reshaped(rows)) }

    let normalizedGradient = hiddenDropout.backward(
      mask: tape.embeddingDropoutMask, outputGradient: hiddenGradient)
    let embeddedGradient = embeddingNorm.backward(
      cache: tape.embeddingSum, outputGradient: normalizedGradient, gradients: &gradients)
    let positions = (0..<batchSize).flatMap { _ in (0..<length).map { Int32($0) } }
    wordEmbeddings.backward(
      indices: batch.inputIDs, outputGradient: embeddedGradient, gradients: &gradients)
    positionEmbeddings.backward(
      indices: positions, outputGradient: embeddedGradient, gradients: &gradients)
    tokenTypeEmbeddings.backward(
      indices: batch.tokenTypeIDs, outputGradient: embeddedGradient, gradients: &gradients)
  }
}

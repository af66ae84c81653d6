import Models
import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Lowers a model, as surgeon holds it, to an ONNX graph (opset 17, float32): the plain model,
/// the rewritten one with its adapters at their current decay `d` (noise off: the evaluation
/// forward), or the W-free one (two small MatMuls per wrapped Linear, a k×k conv then a 1×1
/// conv per lowrank ConvLoRA).
///
/// BERT takes `input_ids`, `attention_mask` and `token_type_ids` (int64, `batch × sequence`,
/// both dynamic) and gives `last_hidden_state` and, with a head, `logits`; VGG takes
/// `pixel_values` (float, `batch × C × H × W`, batch dynamic) and gives `logits`.
public enum ONNXExporter {
  public static func model(for model: Model, metadata: [(key: String, value: String)] = [])
    throws(ONNXExportError) -> ONNXModel
  {
    let graph: ONNXGraph
    switch model {
    case .bert(let bert): graph = try self.graph(for: bert)
    case .vgg(let vgg): graph = try self.graph(for: vgg)
    }
    try graph.validate()
    return ONNXModel(graph: graph, metadata: metadata)
  }

  static func graph(for model: BertModel) throws(ONNXExportError) -> ONNXGraph {
    let c = model.configuration
    let p = model.prefix
    var b = GraphBuilder(name: "surgeon-bert")
    let dynamic: [ONNXDimension] = [.named("batch"), .named("sequence")]
    for name in ["input_ids", "attention_mask", "token_type_ids"] {
      b.graph.inputs.append(ONNXValueInfo(name: name, elementType: .int64, dimensions: dynamic))
    }

    // Embeddings: word + position (0 ..< sequence, the same for every row) + token type.
    let words = b.node(
      "Gather",
      [b.initializer(model.wordEmbeddings.weightName, model.wordEmbeddings.weight), "input_ids"],
      name: p + "embeddings.word_embeddings/Gather")
    let shape = b.node("Shape", ["input_ids"], name: p + "embeddings/Shape")
    let length = b.node(
      "Gather", [shape, b.integers([1], dimensions: [])], name: p + "embeddings/sequence/Gather",
      attributes: [.int("axis", 0)])
    let positions = b.node(
      "Range",
      [b.integers([0], dimensions: []), length, b.integers([1], dimensions: [])],
      name: p + "embeddings/positions/Range")
    let positionVectors = b.node(
      "Gather",
      [
        b.initializer(model.positionEmbeddings.weightName, model.positionEmbeddings.weight),
        positions,
      ], name: p + "embeddings.position_embeddings/Gather")
    let types = b.node(
      "Gather",
      [
        b.initializer(model.tokenTypeEmbeddings.weightName, model.tokenTypeEmbeddings.weight),
        "token_type_ids",
      ], name: p + "embeddings.token_type_embeddings/Gather")
    var sum = b.node("Add", [words, positionVectors], name: p + "embeddings/positions/Add")
    sum = b.node("Add", [sum, types], name: p + "embeddings/types/Add")
    var hidden = layerNorm(model.embeddingNorm, sum, &b)

    // Hugging Face's additive mask: finfo(float32).min on padded keys, `batch × 1 × 1 × keys`.
    let maskFloat = b.node(
      "Cast", ["attention_mask"], name: p + "mask/Cast",
      attributes: [.int("to", Int(ONNXElementType.float.rawValue))])
    let padding = b.node("Sub", [b.scalar(1), maskFloat], name: p + "mask/Sub")
    let additive = b.node(
      "Mul", [padding, b.scalar(-Float.greatestFiniteMagnitude)], name: p + "mask/Mul")
    let mask = b.node(
      "Unsqueeze", [additive, b.integers([1, 2], dimensions: [2])], name: p + "mask/Unsqueeze")

    let heads = c.headCount
    let headSize = c.hiddenSize / heads
    let splitHeads = b.integers([0, 0, Int64(heads), Int64(headSize)], dimensions: [4])
    let mergeHeads = b.integers([0, 0, Int64(c.hiddenSize)], dimensions: [3])
    for (index, layer) in model.layers.enumerated() {
      let base = p + "encoder.layer.\(index)."
      let a = base + "attention.self"
      func splitIntoHeads(_ projection: Linear, _ permutation: [Int], _ b: inout GraphBuilder)
        -> String
      {
        let projected = b.linear(projection, hidden, inputRank: 3)
        let split = b.node("Reshape", [projected, splitHeads], name: projection.name + "/Reshape")
        return b.node(
          "Transpose", [split], name: projection.name + "/Transpose",
          attributes: [.ints("perm", permutation)])
      }
      let query = splitIntoHeads(layer.query, [0, 2, 1, 3], &b)
      let keyTransposed = splitIntoHeads(layer.key, [0, 2, 3, 1], &b)
      let value = splitIntoHeads(layer.value, [0, 2, 1, 3], &b)
      var scores = b.node("MatMul", [query, keyTransposed], name: a + "/scores/MatMul")
      scores = b.node(
        "Mul", [scores, b.scalar(1 / Float(headSize).squareRoot())], name: a + "/scores/Mul")
      scores = b.node("Add", [scores, mask], name: a + "/mask/Add")
      let probabilities = b.node(
        "Softmax", [scores], name: a + "/Softmax", attributes: [.int("axis", -1)])
      var context = b.node("MatMul", [probabilities, value], name: a + "/context/MatMul")
      context = b.node(
        "Transpose", [context], name: a + "/context/Transpose",
        attributes: [.ints("perm", [0, 2, 1, 3])])
      context = b.node("Reshape", [context, mergeHeads], name: a + "/context/Reshape")
      let projected = b.linear(layer.attentionOutput, context, inputRank: 3)
      let residual = b.node("Add", [projected, hidden], name: base + "attention.output/Add")
      let attended = layerNorm(layer.attentionNorm, residual, &b)
      let expanded = b.linear(layer.intermediate, attended, inputRank: 3)
      let activated = activation(
        c.activation, expanded, name: base + "intermediate/\(c.activation.rawValue)", &b)
      let output = b.linear(layer.output, activated, inputRank: 3)
      let outputResidual = b.node("Add", [output, attended], name: base + "output/Add")
      hidden = layerNorm(
        layer.outputNorm, outputResidual, &b,
        output: index == model.layers.count - 1 ? "last_hidden_state" : nil)
    }
    if model.layers.isEmpty {
      hidden = b.node(
        "Add", [hidden, b.scalar(0)], name: "last_hidden_state", output: "last_hidden_state")
    }
    b.graph.outputs.append(
      ONNXValueInfo(
        name: "last_hidden_state", elementType: .float,
        dimensions: dynamic + [.fixed(c.hiddenSize)]))

    if let pooler = model.pooler, let classifier = model.classifier {
      let first = b.node(
        "Gather", [hidden, b.integers([0], dimensions: [])], name: p + "pooler/first/Gather",
        attributes: [.int("axis", 1)])
      let dense = b.linear(pooler, first, inputRank: 2)
      let pooled = b.node("Tanh", [dense], name: pooler.name + "/Tanh")
      _ = b.linear(classifier, pooled, inputRank: 2, output: "logits")
      b.graph.outputs.append(
        ONNXValueInfo(
          name: "logits", elementType: .float,
          dimensions: [.named("batch"), .fixed(classifier.outFeatures)]))
    }
    return b.graph
  }

  private static func layerNorm(
    _ norm: LayerNorm, _ x: String, _ b: inout GraphBuilder, output: String? = nil
  ) -> String {
    b.node(
      "LayerNormalization",
      [x, b.initializer(norm.weightName, norm.weight), b.initializer(norm.biasName, norm.bias)],
      name: norm.name + "/LayerNormalization", output: output,
      attributes: [.int("axis", -1), .float("epsilon", norm.epsilon)])
  }

  /// `hidden_act`: exact GELU `x·½(1 + erf(x/√2))`, the tanh approximation
  /// `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`, ReLU or tanh.
  private static func activation(
    _ activation: Activation, _ x: String, name: String, _ b: inout GraphBuilder
  ) -> String {
    switch activation {
    case .relu:
      return b.node("Relu", [x], name: name + "/Relu")
    case .tanh:
      return b.node("Tanh", [x], name: name + "/Tanh")
    case .gelu:
      let scaled = b.node("Mul", [x, b.scalar(0.707_106_78)], name: name + "/Mul")
      let erf = b.node("Erf", [scaled], name: name + "/Erf")
      let shifted = b.node("Add", [erf, b.scalar(1)], name: name + "/Add")
      let gated = b.node("Mul", [x, shifted], name: name + "/gate/Mul")
      return b.node("Mul", [gated, b.scalar(0.5)], name: name + "/half/Mul")
    case .geluTanh:
      let square = b.node("Mul", [x, x], name: name + "/square/Mul")
      let cube = b.node("Mul", [square, x], name: name + "/cube/Mul")
      let weighted = b.node("Mul", [cube, b.scalar(0.044715)], name: name + "/cubic/Mul")
      let inner = b.node("Add", [x, weighted], name: name + "/inner/Add")
      let argument = b.node(
        "Mul", [inner, b.scalar((2 / Float.pi).squareRoot())], name: name + "/argument/Mul")
      let tanh = b.node("Tanh", [argument], name: name + "/Tanh")
      let shifted = b.node("Add", [tanh, b.scalar(1)], name: name + "/Add")
      let gated = b.node("Mul", [x, shifted], name: name + "/gate/Mul")
      return b.node("Mul", [gated, b.scalar(0.5)], name: name + "/half/Mul")
    }
  }

  static func graph(for model: VGGModel) throws(ONNXExportError) -> ONNXGraph {
    let c = model.configuration
    var b = GraphBuilder(name: "surgeon-vgg")
    b.graph.inputs.append(
      ONNXValueInfo(
        name: "pixel_values", elementType: .float,
        dimensions: [
          .named("batch"), .fixed(c.inChannels), .fixed(c.imageSize), .fixed(c.imageSize),
        ]))
    var x = "pixel_values"
    var (height, width) = (c.imageSize, c.imageSize)
    var channels = c.inChannels
    for (index, feature) in model.features.enumerated() {
      switch feature {
      case .convolution(let conv):
        x = b.convolution(conv, x)
        (height, width) = conv.outputSize(height: height, width: width)
        channels = conv.outChannels
      case .batchNorm(let norm):
        x = b.node(
          "BatchNormalization",
          [
            x, b.initializer(norm.weightName, norm.weight), b.initializer(norm.biasName, norm.bias),
            b.initializer(norm.name + ".running_mean", norm.runningMean),
            b.initializer(norm.name + ".running_var", norm.runningVariance),
          ], name: norm.name + "/BatchNormalization", attributes: [.float("epsilon", norm.epsilon)])
      case .relu:
        x = b.node("Relu", [x], name: "features.\(index)/Relu")
      case .maxPool(let pool):
        x = b.node(
          "MaxPool", [x], name: "features.\(index)/MaxPool",
          attributes: [
            .ints("kernel_shape", [pool.kernel.0, pool.kernel.1]),
            .ints("strides", [pool.stride.0, pool.stride.1]),
            .ints("pads", [pool.padding.0, pool.padding.1, pool.padding.0, pool.padding.1]),
          ])
        (height, width) = pool.outputSize(height: height, width: width)
      }
    }
    if let size = c.averagePool {
      x = adaptiveAveragePool(x, channels: channels, height: height, width: width, size: size, &b)
    }
    x = b.node("Flatten", [x], name: "flatten/Flatten", attributes: [.int("axis", 1)])
    for (index, linear) in model.classifier.enumerated() {
      let last = index == model.classifier.count - 1
      x = b.linear(linear, x, inputRank: 2, output: last ? "logits" : nil)
      if !last { x = b.node("Relu", [x], name: "classifier.\(index * 3 + 1)/Relu") }
    }
    b.graph.outputs.append(
      ONNXValueInfo(
        name: "logits", elementType: .float, dimensions: [.named("batch"), .fixed(c.classCount)]))
    return b.graph
  }

  /// PyTorch's `AdaptiveAvgPool2d` on a map whose size is known at export: `GlobalAveragePool`
  /// for 1×1, `AveragePool` when the size divides evenly (equal windows), else the exact
  /// average as a MatMul with the `(H·W) × (size²)` window-membership matrix (the windows
  /// overlap or differ in size).
  private static func adaptiveAveragePool(
    _ x: String, channels: Int, height: Int, width: Int, size: Int, _ b: inout GraphBuilder
  ) -> String {
    let name = "avgpool"
    if size == 1 { return b.node("GlobalAveragePool", [x], name: name + "/GlobalAveragePool") }
    if height % size == 0 && width % size == 0 {
      let window = [height / size, width / size]
      return b.node(
        "AveragePool", [x], name: name + "/AveragePool",
        attributes: [.ints("kernel_shape", window), .ints("strides", window)])
    }
    func window(_ index: Int, _ input: Int) -> Range<Int> {
      (index * input / size)..<(((index + 1) * input + size - 1) / size)
    }
    var weights = Tensor(zeros: [height * width, size * size])
    weights.withUnsafeMutableBufferPointer { w in
      for oh in 0..<size {
        for ow in 0..<size {
          let (rows, columns) = (window(oh, height), window(ow, width))
          let share = 1 / Float(rows.count * columns.count)
          for ih in rows {
            for iw in columns { w[(ih * width + iw) * size * size + oh * size + ow] = share }
          }
        }
      }
    }
    let flat = b.node(
      "Reshape", [x, b.integers([0, Int64(channels), Int64(height * width)], dimensions: [3])],
      name: name + "/flatten/Reshape")
    let pooled = b.node(
      "MatMul", [flat, b.initializer(name + ".windows", weights)], name: name + "/MatMul")
    return b.node(
      "Reshape",
      [pooled, b.integers([0, Int64(channels), Int64(size), Int64(size)], dimensions: [4])],
      name: name + "/Reshape")
  }
}

import Tensor

/// What one evaluation-mode forward pass fed a wrappable node: row-major rows (a Linear's input
/// rows; BERT: non-padding tokens only), or a Conv2d's im2col patch matrices, one
/// column-major `width × pixels` matrix per image (`fan_in = in·k·k`; one group only).
public struct NodeInputs {
  public var width: Int
  public var columnMajor: Bool
  /// Each chunk's floats and its row count (rows: `width`-float rows or pixels).
  public var chunks: [(scalars: [Float], rows: Int)]
}

/// The inputs every wrappable node saw in one evaluation-mode forward pass of a batch: what the
/// calibration of `init: svd_whitened` and `refit: sequential` read.
public struct RecordedInputs {
  fileprivate let lookup: (String) -> NodeInputs?

  /// The inputs of `node`, nil when the model has no such wrappable node.
  public func inputs(of node: String) -> NodeInputs? { lookup(node) }
}

extension Model {
  /// Runs `batch` in evaluation mode (no dropout) and keeps every wrappable node's inputs.
  public func recordInputs(_ batch: TextBatch) throws(ModelInputError) -> RecordedInputs {
    guard case .bert(let bert) = self else {
      throw ModelInputError("a \(family) model cannot take a text batch")
    }
    var random = RandomStream(seed: 0)
    let (_, tape) = try bert.forward(batch, mode: .evaluation, recordsTape: true, random: &random)
    guard let tape else { return RecordedInputs { _ in nil } }
    // Token rows that are not padding (the attention mask is 1).
    let kept = batch.attentionMask.enumerated().filter { $0.element != 0 }.map(\.offset)
    var inputs: [String: (Tensor, tokens: Bool)] = [:]
    for (layer, cache) in zip(bert.layers, tape.layers) {
      inputs[layer.query.name] = (cache.query.input, true)
      inputs[layer.key.name] = (cache.key.input, true)
      inputs[layer.value.name] = (cache.value.input, true)
      inputs[layer.attentionOutput.name] = (cache.attentionOutput.input, true)
      inputs[layer.intermediate.name] = (cache.intermediate.input, true)
      inputs[layer.output.name] = (cache.output.input, true)
    }
    if let pooler = bert.pooler, let cache = tape.pooler {
      inputs[pooler.name] = (cache.input, false)
    }
    if let classifier = bert.classifier, let cache = tape.classifier {
      inputs[classifier.name] = (cache.input, false)
    }
    return RecordedInputs { name in
      guard let (input, tokens) = inputs[name] else { return nil }
      let width = input.shape[input.shape.count - 1]
      if !tokens || kept.count * width == input.count {
        return NodeInputs(
          width: width, columnMajor: false, chunks: [(input.scalars, input.count / width)])
      }
      var rows = [Float](repeating: 0, count: kept.count * width)
      input.withUnsafeBufferPointer { x in
        for (index, row) in kept.enumerated() {
          for i in 0..<width { rows[index * width + i] = x[row * width + i] }
        }
      }
      return NodeInputs(width: width, columnMajor: false, chunks: [(rows, kept.count)])
    }
  }

  /// The same for an image batch (`N × C × H × W`).
  public func recordInputs(pixels: Tensor) throws(ModelInputError) -> RecordedInputs {
    guard case .vgg(var vgg) = self else {
      throw ModelInputError("a \(family) model cannot take an image batch")
    }
    var random = RandomStream(seed: 0)
    let (_, tape) = try vgg.forward(
      pixels: pixels, labels: nil, mode: .evaluation, recordsTape: true, random: &random)
    guard let tape else { return RecordedInputs { _ in nil } }
    var convolutions: [String: (Conv2d, Tensor)] = [:]
    for (index, feature) in vgg.features.enumerated() {
      guard case .convolution(let conv) = feature, let cache = tape.convolutionCaches[index]
      else { continue }
      convolutions[conv.name] = (conv, cache.input)
    }
    var linears: [String: (Linear, Tensor)] = [:]
    for (linear, cache) in zip(vgg.classifier, tape.classifierCaches) {
      linears[linear.name] = (linear, cache.input)
    }
    return RecordedInputs { name in
      if let (conv, input) = convolutions[name] {
        let (kh, kw) = conv.kernelSize
        var inputs = NodeInputs(
          width: conv.inChannels * kh * kw, columnMajor: true, chunks: [])
        conv.forEachPatchMatrix(of: input) { columns, pixels in
          inputs.chunks.append(
            (Array(UnsafeBufferPointer(start: columns, count: inputs.width * pixels)), pixels))
        }
        return inputs
      }
      if let (linear, input) = linears[name] {
        return NodeInputs(
          width: linear.inFeatures, columnMajor: false,
          chunks: [(input.scalars, input.count / linear.inFeatures)])
      }
      return nil
    }
  }

  /// The wrappable nodes in forward order, grouped so that no node's input depends on another
  /// node of its group (BERT's query, key and value read the same hidden states): the order
  /// `refit: sequential` fits them in.
  public var forwardStages: [[String]] {
    switch self {
    case .bert(let bert):
      var stages: [[String]] = []
      for layer in bert.layers {
        stages.append([layer.query.name, layer.key.name, layer.value.name])
        stages.append([layer.attentionOutput.name])
        stages.append([layer.intermediate.name])
        stages.append([layer.output.name])
      }
      if let pooler = bert.pooler { stages.append([pooler.name]) }
      if let classifier = bert.classifier { stages.append([classifier.name]) }
      return stages
    case .vgg(let vgg):
      var stages: [[String]] = []
      for feature in vgg.features {
        if case .convolution(let conv) = feature { stages.append([conv.name]) }
      }
      for linear in vgg.classifier { stages.append([linear.name]) }
      return stages
    }
  }
}

import Tensor

extension Model {
  /// Adds what each wrappable node in `nodes` sees in an evaluation-mode forward pass of one
  /// batch to its running moments: a Linear's input rows (BERT: non-padding tokens only), a
  /// Conv2d's im2col patches (`fan_in = in·k·k`; one group only). Nodes not yet in `moments`
  /// start empty.
  public func accumulateInputMoments(
    text batch: TextBatch, nodes: Set<String>, into moments: inout [String: InputMoments]
  ) throws(ModelInputError) {
    guard case .bert(let bert) = self else {
      throw ModelInputError("a \(family) model cannot take a text batch")
    }
    var random = RandomStream(seed: 0)
    let (_, tape) = try bert.forward(batch, mode: .evaluation, recordsTape: true, random: &random)
    guard let tape else { return }
    // Token rows that are not padding (the attention mask is 1).
    let kept = batch.attentionMask.enumerated().filter { $0.element != 0 }.map(\.offset)
    func add(_ name: String, _ input: Tensor, tokens: Bool) {
      guard nodes.contains(name) else { return }
      let width = input.shape[input.shape.count - 1]
      var entry = moments[name] ?? InputMoments(width: width)
      input.withUnsafeBufferPointer { x in
        if !tokens || kept.count * width == input.count {
          entry.add(x.baseAddress!, rows: input.count / width)
        } else {
          var rows = [Float](repeating: 0, count: kept.count * width)
          for (index, row) in kept.enumerated() {
            for i in 0..<width { rows[index * width + i] = x[row * width + i] }
          }
          entry.add(rows, rows: kept.count)
        }
      }
      moments[name] = entry
    }
    for (layer, cache) in zip(bert.layers, tape.layers) {
      add(layer.query.name, cache.query.input, tokens: true)
      add(layer.key.name, cache.key.input, tokens: true)
      add(layer.value.name, cache.value.input, tokens: true)
      add(layer.attentionOutput.name, cache.attentionOutput.input, tokens: true)
      add(layer.intermediate.name, cache.intermediate.input, tokens: true)
      add(layer.output.name, cache.output.input, tokens: true)
    }
    if let pooler = bert.pooler, let cache = tape.pooler {
      add(pooler.name, cache.input, tokens: false)
    }
    if let classifier = bert.classifier, let cache = tape.classifier {
      add(classifier.name, cache.input, tokens: false)
    }
  }

  /// The same for an image batch (`N × C × H × W`).
  public func accumulateInputMoments(
    pixels: Tensor, nodes: Set<String>, into moments: inout [String: InputMoments]
  ) throws(ModelInputError) {
    guard case .vgg(var vgg) = self else {
      throw ModelInputError("a \(family) model cannot take an image batch")
    }
    var random = RandomStream(seed: 0)
    let (_, tape) = try vgg.forward(
      pixels: pixels, labels: nil, mode: .evaluation, recordsTape: true, random: &random)
    guard let tape else { return }
    for (index, feature) in vgg.features.enumerated() {
      guard case .convolution(let conv) = feature, nodes.contains(conv.name),
        let cache = tape.convolutionCaches[index]
      else { continue }
      let (kh, kw) = conv.kernelSize
      var entry = moments[conv.name] ?? InputMoments(width: conv.inChannels * kh * kw)
      conv.forEachPatchMatrix(of: cache.input) { columns, pixels in
        entry.add(columns, rows: pixels, columnMajor: true)
      }
      moments[conv.name] = entry
    }
    for (linear, cache) in zip(vgg.classifier, tape.classifierCaches)
    where nodes.contains(linear.name) {
      var entry = moments[linear.name] ?? InputMoments(width: linear.inFeatures)
      cache.input.withUnsafeBufferPointer { x in
        entry.add(x.baseAddress!, rows: cache.input.count / linear.inFeatures)
      }
      moments[linear.name] = entry
    }
  }
}

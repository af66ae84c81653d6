import Tensor

/// Why a model cannot be merged into plain layers.
public struct MergeError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

extension Model {
  /// The model with every adapter folded into its layer: `W' = d·W + s·B·A` and
  /// `b' = d·b + C`, so each wrapped Linear or conv is a plain one again. Exact for evaluation
  /// (noise is drawn only in training), at any `d`; the result has the base architecture's
  /// tensor names, which Hugging Face and torchvision load.
  public func merged() throws(MergeError) -> Model {
    var result = self
    var failure: MergeError?
    func fold(
      weight: inout Tensor, bias: inout Tensor?, adapter: LowRankAdapter, groups: Int
    ) {
      if adapter.convForm == .lowrank && weight.shape.count == 4 && groups != 1 {
        failure = MergeError(
          "\(adapter.node) is a grouped convolution (groups \(groups)) with a low-rank adapter, which no plain convolution computes"
        )
        return
      }
      let outputs = weight.shape[0]
      let up = adapter.up.reshaped([outputs, adapter.up.count / outputs])
      let down = adapter.down.reshaped([adapter.rank, adapter.down.count / adapter.rank])
      var folded = weight
      if adapter.isExported || adapter.decay == 0 {
        folded = Tensor(zeros: weight.shape)
      } else if adapter.decay != 1 {
        folded.scale(by: adapter.decay)
      }
      if adapter.convForm == .loralib && weight.shape.count == 4 {
        // loralib's B·A is a full kernel already, laid out as out·k × in·k.
        folded.add(
          adapter.up.matmul(adapter.down).reshaped(weight.shape), scaledBy: adapter.scale)
      } else {
        folded.add(up.matmul(down).reshaped(weight.shape), scaledBy: adapter.scale)
      }
      weight = folded
      var newBias = adapter.isExported ? nil : bias
      if var kept = newBias, adapter.decay != 1 {
        kept.scale(by: adapter.decay)
        newBias = kept
      }
      if let c = adapter.bias {
        if var kept = newBias {
          kept.add(c)
          newBias = kept
        } else {
          newBias = c
        }
      }
      // A W-free layer lost its bias to C; the base architecture still has one.
      bias = newBias ?? (bias != nil || adapter.isExported ? Tensor(zeros: [outputs]) : nil)
    }
    result.visitWrappable(
      linear: { layer in
        guard let adapter = layer.adapter else { return }
        var bias = layer.bias
        fold(weight: &layer.weight, bias: &bias, adapter: adapter, groups: 1)
        layer.bias = bias
        layer.adapter = nil
      },
      convolution: { layer in
        guard let adapter = layer.adapter else { return }
        var bias = layer.bias
        fold(weight: &layer.weight, bias: &bias, adapter: adapter, groups: layer.groups)
        layer.bias = bias
        layer.adapter = nil
      })
    if let failure { throw failure }
    return result
  }
}

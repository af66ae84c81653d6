import Tensor

/// Inverted dropout: in training each element is kept with probability `1 − p` and scaled by
/// `1/(1 − p)`; in evaluation it is the identity. The mask comes from the caller's seeded stream.
public struct Dropout: Sendable {
  public var probability: Float

  public init(probability: Float) {
    self.probability = probability
  }

  /// The output and the mask (`0` or `1/(1 − p)` per element; nil when nothing was dropped).
  public func forward(_ input: Tensor, mode: ForwardMode, random: inout RandomStream)
    -> (output: Tensor, mask: Tensor?)
  {
    guard mode == .training, probability > 0 else { return (input, nil) }
    var mask = Tensor(zeros: input.shape)
    let keep = 1 - probability
    let scale: Float = keep > 0 ? 1 / keep : 0
    mask.withUnsafeMutableBufferPointer { values in
      random.fillDropoutMask(values, probability: probability, scale: scale)
    }
    var output = input
    output.multiply(by: mask)
    return (output, mask)
  }

  public func backward(mask: Tensor?, outputGradient: Tensor) -> Tensor {
    guard let mask else { return outputGradient }
    var result = outputGradient
    result.multiply(by: mask)
    return result
  }
}

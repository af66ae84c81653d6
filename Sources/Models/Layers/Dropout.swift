import Tensor

/// Inverted dropout: in training each element is kept with probability `1 − p` and scaled by
/// `1/(1 − p)`; in evaluation it is the identity. The mask comes from the caller's seeded stream;
/// when the stream names a `batchShare` (the input holds rows of a larger batch, examples
/// contiguous), the mask is that share's part of the mask the whole batch would get, and the
/// stream moves as for the whole batch: data-parallel processes draw one process's masks.
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
    var mask = Tensor(uninitialized: input.shape)
    let keep = 1 - probability
    let scale: Float = keep > 0 ? 1 / keep : 0
    let probability = probability
    mask.withUnsafeMutableBufferPointer { values in
      if let share = random.batchShare, !share.rows.isEmpty, input.count % share.rows.count == 0 {
        // This pass holds rows of a larger batch: its part of the whole batch's draw.
        let perRow = input.count / share.rows.count
        random.fillDropoutMask(
          values, probability: probability, scale: scale, part: share.rows.lowerBound * perRow,
          of: share.count * perRow)
      } else {
        random.fillDropoutMask(values, probability: probability, scale: scale)
      }
    }
    // Out of place: `input` is usually still referenced (a cache keeps it), so multiplying a
    // copy in place would first copy it.
    return (Tensor.product(input, mask), mask)
  }

  public func backward(mask: Tensor?, outputGradient: Tensor) -> Tensor {
    guard let mask else { return outputGradient }
    return Tensor.product(outputGradient, mask)
  }
}

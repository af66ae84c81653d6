import Tensor

/// Inverted dropout: in training each element is kept with probability `1 − p` and scaled by
/// `1/(1 − p)`; in evaluation it is the identity. The mask comes from the caller's seeded stream;
/// when the stream names its `batchRows`, each example (a contiguous row block of the input) gets
/// a stream of its own keyed by its position in the global batch, and the caller's stream moves
/// by one block whatever the batch size (data-parallel ranks stay in step).
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
    let probability = probability
    if let rows = random.batchRows, !rows.isEmpty, input.count % rows.count == 0 {
      let key = random.nextWord()
      let perRow = input.count / rows.count
      let first = rows.lowerBound
      mask.withUnsafeMutableBufferPointer { values in
        let v = values.baseAddress!
        Parallel.forEachChunk(rows.count, grain: max(1, 16_384 / max(1, perRow))) { range in
          for row in range {
            var stream = RandomStream(seed: key, stream: UInt64(first + row))
            let part = UnsafeMutableBufferPointer(start: v + row * perRow, count: perRow)
            stream.fillUniform(part, low: 0, high: 1)
            for i in part.indices { part[i] = part[i] < probability ? 0 : scale }
          }
        }
      }
    } else {
      mask.withUnsafeMutableBufferPointer { values in
        random.fillUniform(values, low: 0, high: 1)
        let v = values.baseAddress!
        Parallel.forEachChunk(values.count) { range in
          for i in range { v[i] = v[i] < probability ? 0 : scale }
        }
      }
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

import Tensor

/// A lookup table: row `i` of `weight` (`count × dimension`) is the vector of index `i`.
public struct Embedding: Sendable {
  public var name: String
  public var weight: Tensor

  public init(name: String, weight: Tensor) {
    precondition(weight.shape.count == 2, "Embedding weight must be 2-D")
    self.name = name
    self.weight = weight
  }

  public var count: Int { weight.shape[0] }
  public var dimension: Int { weight.shape[1] }
  public var weightName: String { name + ".weight" }

  /// One row per index; every index must be in `0..<count` (callers validate user input).
  public func forward(_ indices: [Int32]) -> Tensor {
    let width = dimension
    var output = Tensor(zeros: [indices.count, width])
    weight.withUnsafeBufferPointer { table in
      output.withUnsafeMutableBufferPointer { out in
        for (row, index) in indices.enumerated() {
          precondition(index >= 0 && Int(index) < count, "embedding index \(index) out of range")
          (out.baseAddress! + row * width).update(
            from: table.baseAddress! + Int(index) * width, count: width)
        }
      }
    }
    return output
  }

  /// Scatters `outputGradient` rows back onto the rows they were read from.
  public func backward(indices: [Int32], outputGradient: Tensor, gradients: inout GradientSet) {
    guard gradients.wants(weightName) else { return }
    let width = dimension
    var weightGradient = Tensor(zeros: weight.shape)
    outputGradient.withUnsafeBufferPointer { dy in
      weightGradient.withUnsafeMutableBufferPointer { dw in
        for (row, index) in indices.enumerated() {
          let target = dw.baseAddress! + Int(index) * width
          let source = dy.baseAddress! + row * width
          for c in 0..<width { target[c] += source[c] }
        }
      }
    }
    gradients.accumulate(weightName, weightGradient)
  }
}

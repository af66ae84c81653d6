import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Softmax cross-entropy of `logits` (`batch × classes`) against class indices, averaged over
/// the batch (PyTorch's `cross_entropy`, reduction mean).
public enum CrossEntropy {
  /// The mean loss and its gradient with respect to the logits.
  public static func lossAndGradient(logits: Tensor, labels: [Int32]) -> (
    loss: Float, logitsGradient: Tensor
  ) {
    precondition(logits.shape.count == 2 && logits.shape[0] == labels.count, "logits/labels")
    let classes = logits.shape[1]
    let batch = labels.count
    var gradient = Tensor(zeros: logits.shape)
    var total = 0.0
    logits.withUnsafeBufferPointer { zs in
      gradient.withUnsafeMutableBufferPointer { gs in
        for row in 0..<batch {
          let z = zs.baseAddress! + row * classes
          let g = gs.baseAddress! + row * classes
          var maximum = -Float.infinity
          for c in 0..<classes { maximum = Swift.max(maximum, z[c]) }
          var sum: Float = 0
          for c in 0..<classes {
            g[c] = expf(z[c] - maximum)
            sum += g[c]
          }
          let label = Int(labels[row])
          precondition(label >= 0 && label < classes, "label \(label) out of range")
          total += Double(logf(sum) + maximum - z[label])
          let inverse = 1 / (sum * Float(batch))
          for c in 0..<classes { g[c] *= inverse }
          g[label] -= 1 / Float(batch)
        }
      }
    }
    return (Float(total / Double(batch)), gradient)
  }
}

import Models
import Surgery
import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// AdamW (Loshchilov & Hutter): Adam with bias correction and decoupled weight decay. Moments
/// exist for the plan's trainable tensors only.
public struct AdamW: Sendable {
  public var learningRate: Float
  public var beta1: Float
  public var beta2: Float
  public var epsilon: Float
  public var weightDecay: Float
  public private(set) var step: Int = 0
  /// `(m, v)` per trainable tensor name.
  public private(set) var moments: [String: (first: Tensor, second: Tensor)]

  public init(
    plan: TrainingPlan, learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999,
    epsilon: Float = 1e-8, weightDecay: Float = 0
  ) {
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
    var moments: [String: (first: Tensor, second: Tensor)] = [:]
    for (name, tensor) in plan.model.namedParameters where plan.trainableSet.contains(name) {
      moments[name] = (Tensor(zeros: tensor.shape), Tensor(zeros: tensor.shape))
    }
    self.moments = moments
  }

  /// Restores a saved step count and moments (resume); every trainable tensor needs both.
  public mutating func restore(step: Int, moments saved: [String: (first: Tensor, second: Tensor)])
    -> Bool
  {
    guard Set(saved.keys) == Set(moments.keys) else { return false }
    for (name, state) in saved where state.first.shape != moments[name]?.first.shape {
      return false
    }
    self.step = step
    moments = saved
    return true
  }

  /// One update of every trainable tensor that has a gradient.
  public mutating func apply(_ gradients: GradientSet, to plan: inout TrainingPlan) {
    step += 1
    let correction1 = 1 - powf(beta1, Float(step))
    let correction2 = 1 - powf(beta2, Float(step))
    let (lr, b1, b2, eps, decay) = (learningRate, beta1, beta2, epsilon, weightDecay)
    var moments = self.moments
    plan.update { name, parameter in
      // Taken out of the dictionary so the moment buffers are uniquely referenced (no copy).
      guard let gradient = gradients[name], var state = moments.removeValue(forKey: name) else {
        return
      }
      gradient.withUnsafeBufferPointer { g in
        state.first.withUnsafeMutableBufferPointer { m in
          state.second.withUnsafeMutableBufferPointer { v in
            parameter.withUnsafeMutableBufferPointer { p in
              for i in 0..<p.count {
                m[i] = b1 * m[i] + (1 - b1) * g[i]
                v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                let update = (m[i] / correction1) / ((v[i] / correction2).squareRoot() + eps)
                p[i] -= lr * (update + decay * p[i])
              }
            }
          }
        }
      }
      moments[name] = state
    }
    self.moments = moments
  }
}

import Tensor

/// The parameter gradients of one backward pass, by checkpoint tensor name.
///
/// `trainable` says which parameters want a gradient (nil: all); a layer skips the weight-gradient
/// GEMM of a parameter nobody trains.
public struct GradientSet: Sendable {
  public private(set) var tensors: [String: Tensor] = [:]
  public let trainable: Set<String>?

  public init(trainable: Set<String>? = nil) {
    self.trainable = trainable
  }

  /// True when `name` is trained, so its gradient is worth computing.
  public func wants(_ name: String) -> Bool {
    trainable?.contains(name) ?? true
  }

  /// True when some trained tensor's name starts with `prefix` (backward can stop below the
  /// lowest such node).
  public func wantsAny(withPrefix prefix: String) -> Bool {
    guard let trainable else { return true }
    return trainable.contains { $0.hasPrefix(prefix) }
  }

  /// Adds `gradient` to the gradient of `name` (a parameter used twice gets both contributions).
  public mutating func accumulate(_ name: String, _ gradient: Tensor) {
    if var existing = tensors.removeValue(forKey: name) {
      existing.add(gradient)
      tensors[name] = existing
    } else {
      tensors[name] = gradient
    }
  }

  public subscript(name: String) -> Tensor? { tensors[name] }
}

/// Whether a forward pass trains (dropout on, batch statistics, caches kept for backward) or
/// evaluates.
public enum ForwardMode: Sendable {
  case training
  case evaluation
}

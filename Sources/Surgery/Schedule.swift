import Foundation

/// How the decay factor `d` falls from 1 to 0 between two fractions of training (docs/method.md):
/// warm-up (`d = 1` before `start`), the fall, cool-down (`d = 0` from `end` on).
public struct DecayCurve: Sendable, Equatable {
  public enum Shape: String, Sendable { case linear, cosine, sine }

  public var shape: Shape
  public var start: Double
  public var end: Double

  public init(shape: Shape, start: Double, end: Double) {
    self.shape = shape
    self.start = start
    self.end = end
  }

  /// `d` at training progress `p = step / steps`.
  public func decay(at progress: Double) -> Float {
    if progress < start { return 1 }
    if progress >= end { return 0 }
    let t = (progress - start) / (end - start)
    switch shape {
    case .linear: return Float(1 - t)
    // Slow at both ends, fastest in the middle (PC-LoRA's cosine).
    case .cosine: return Float(0.5 * (1 + cos(Double.pi * t)))
    // Slow at first, fastest near the end: d = cos(π t / 2).
    case .sine: return Float(cos(Double.pi / 2 * t))
    }
  }
}

/// When a wrapped layer's noise is drawn: while `d < 1` (at `d = 1` it is zero anyway) and, with
/// a clear threshold, only while `d ≥ clearBelow` (the original research notes' clear stage).
public struct NoiseSchedule: Sendable, Equatable {
  public var clearBelow: Double?

  public init(clearBelow: Double?) {
    self.clearBelow = clearBelow
  }

  public func isActive(decay: Float) -> Bool {
    guard decay < 1 else { return false }
    guard let clearBelow else { return true }
    return Double(decay) >= clearBelow
  }
}

/// A wrapped node's schedule: its decay curve (nil: plain LoRA, `d = 1` throughout) and noise.
public struct AdapterSchedule: Sendable, Equatable {
  public var decay: DecayCurve?
  public var noise: NoiseSchedule?

  public init(decay: DecayCurve?, noise: NoiseSchedule?) {
    self.decay = decay
    self.noise = noise
  }

  /// `(d, noise on)` at training progress `p`.
  public func state(at progress: Double) -> (decay: Float, noiseActive: Bool) {
    let d = decay?.decay(at: progress) ?? 1
    return (d, noise?.isActive(decay: d) ?? false)
  }
}

import Foundation

/// A labelled position on an axis, in data units.
struct Tick: Equatable, Sendable {
  var value: Double
  var label: String
}

/// Tick placement a reader can interpolate between: steps of 1, 2 or 5 times a power of ten on
/// linear axes; decades (or 1-2-5 within a decade or two) on log axes.
enum Ticks {
  /// A 1-2-5 step as `multiple`·10^`exponent`, kept apart so tick values can be formed exactly.
  struct Step: Equatable {
    var multiple: Int
    var exponent: Int
    var value: Double { Double(multiple) * power10(exponent) }
  }

  /// The smallest 1-2-5 step that cuts `span` into at most `maxIntervals` intervals.
  static func niceStep(span: Double, maxIntervals: Int) -> Step? {
    guard span.isFinite, span > 0, maxIntervals > 0 else { return nil }
    let raw = span / Double(maxIntervals)
    guard raw.isNormal else { return nil }
    let exponent = Int(log10(raw).rounded(.down))
    for candidate in [
      Step(multiple: 1, exponent: exponent), Step(multiple: 2, exponent: exponent),
      Step(multiple: 5, exponent: exponent), Step(multiple: 1, exponent: exponent + 1),
    ] where span / candidate.value <= Double(maxIntervals) * (1 + 1e-9) {
      return candidate
    }
    return Step(multiple: 2, exponent: exponent + 1)
  }

  /// Ticks on a linear axis within `lower...upper`. `integral` forbids fractional steps, for axes
  /// that count (training steps, epochs).
  static func linear(lower: Double, upper: Double, maxIntervals: Int, integral: Bool = false)
    -> [Tick]
  {
    guard var step = niceStep(span: upper - lower, maxIntervals: maxIntervals) else { return [] }
    if integral && step.exponent < 0 { step = Step(multiple: 1, exponent: 0) }
    let size = step.value
    let first = (lower / size - 1e-9).rounded(.up)
    let last = (upper / size + 1e-9).rounded(.down)
    guard first.isFinite, last.isFinite, first <= last, last - first <= 1000 else { return [] }
    let values = stride(from: first, through: last, by: 1).map { value(index: $0, step: step) }
    let largest = values.map(\.magnitude).max() ?? 0
    return values.map { Tick(value: $0, label: linearLabel($0, step: step, largest: largest)) }
  }

  /// index·step, formed so that e.g. 3·0.2 is the double nearest 0.6 (what a test or a reader
  /// expects), not 0.6000000000000001.
  private static func value(index: Double, step: Step) -> Double {
    let units = index * Double(step.multiple)
    let result =
      step.exponent < 0 ? units / power10(-step.exponent) : units * power10(step.exponent)
    return result == 0 ? 0 : result  // no "-0"
  }

  /// Fixed decimals matching the step ("0.0, 0.2, … 1.0"), or scientific notation when steps are
  /// below 0.001 or values reach a million, where fixed notation gets long and hard to count.
  static func linearLabel(_ value: Double, step: Step, largest: Double) -> String {
    if step.exponent < -3 || largest >= 1.0e6 {
      guard value != 0 else { return "0" }
      let exponent = Int(log10(value.magnitude).rounded(.down))
      return Format.scientific(value, mantissaDecimals: exponent - step.exponent)
    }
    return Format.fixed(value, decimals: max(0, -step.exponent))
  }

  /// Major ticks and unlabelled minor ticks on a log axis over `lower...upper` (both positive).
  static func logarithmic(lower: Double, upper: Double, maxIntervals: Int)
    -> (major: [Tick], minor: [Double])
  {
    guard lower > 0, upper > lower, lower.isFinite, upper.isFinite else { return ([], []) }
    let low = log10(lower)
    let high = log10(upper)
    let firstDecade = Int((low - 1e-9).rounded(.up))
    let lastDecade = Int((high + 1e-9).rounded(.down))
    let decadeCount = lastDecade - firstDecade + 1
    func inRange(_ value: Double) -> Bool {
      value >= lower * (1 - 1e-9) && value <= upper * (1 + 1e-9)
    }
    // Every m·10^k in range, m = 1…9, as (m, k).
    var candidates: [(multiple: Int, exponent: Int)] = []
    for exponent in (firstDecade - 1)...(lastDecade + 1) {
      for multiple in 1...9 where inRange(Double(multiple) * power10(exponent)) {
        candidates.append((multiple, exponent))
      }
    }
    func decades(stride: Int) -> (major: [Tick], minor: [Double]) {
      let major = (firstDecade...lastDecade).filter { $0 % stride == 0 }
      let ticks = major.map { Tick(value: power10($0), label: logLabel(1, $0)) }
      if stride > 1 {
        return (ticks, (firstDecade...lastDecade).filter { $0 % stride != 0 }.map { power10($0) })
      }
      let minor = candidates.filter { $0.multiple != 1 }.map {
        Double($0.multiple) * power10($0.exponent)
      }
      return (ticks, minor)
    }
    if decadeCount >= 3 {
      // Every decade, or every 2nd, 5th, 10th… so the labelled exponents stay round.
      let step = niceStep(span: Double(decadeCount - 1), maxIntervals: maxIntervals)
      return decades(stride: max(1, Int(step?.value ?? 1)))
    }
    // Within a decade or two: the sparsest set of multiples that still gives four labels (loss
    // from 3 to 0.5 reads 0.5, 1, 2, 3), else the densest that fits.
    let multipleSets: [Set<Int>] = [[1, 2, 5], [1, 2, 3, 5], [1, 2, 3, 4, 5, 6, 8], Set(1...9)]
    let fitting = multipleSets.map { set in candidates.filter { set.contains($0.multiple) } }
      .filter { $0.count <= maxIntervals + 1 }
    if let chosen = fitting.first(where: { $0.count >= 4 }) ?? fitting.last, chosen.count >= 3 {
      let ticks = chosen.map {
        Tick(
          value: Double($0.multiple) * power10($0.exponent),
          label: logLabel($0.multiple, $0.exponent))
      }
      let minor = candidates.filter { candidate in
        !chosen.contains { $0 == candidate }
      }.map { Double($0.multiple) * power10($0.exponent) }
      return (ticks, minor)
    }
    // Too short an axis for more: two decades still beat linear ticks on a log axis.
    if decadeCount == 2 { return decades(stride: 1) }
    // Less than about half a decade: plain linear steps, unevenly spaced on a log axis but with
    // enough values to read off.
    return (linear(lower: lower, upper: upper, maxIntervals: maxIntervals), [])
  }

  /// "0.001", "0.05", "20", "1e-4", "2e6": decimals near 1, powers of ten further out.
  static func logLabel(_ multiple: Int, _ exponent: Int) -> String {
    if (-3...5).contains(exponent) {
      let value = Double(multiple) * power10(exponent)
      return Format.fixed(value, decimals: max(0, -exponent))
    }
    return String(multiple) + "e" + String(exponent)
  }
}

import Foundation
import Manifest
import Models

/// The numbers `summary` prints and `expect:` bounds, from a compiled plan.
public struct PlanCounts: Sendable, Equatable, Codable {
  public var total: Int
  public var trainable: Int
  public var compressedTotal: Int
  /// Wrapped nodes.
  public var wrapped: Int
  /// The wrapped nodes' base parameters over every Linear and Conv2d parameter of the model.
  public var coverage: Double

  enum CodingKeys: String, CodingKey {
    case total, trainable, wrapped, coverage
    case compressedTotal = "compressed_total"
  }

  public init(_ rewrite: Rewrite) {
    let summary = rewrite.plan.summary(title: "")
    total = summary.total
    trainable = summary.trainable
    compressedTotal = summary.compressedTotal
    let wrappedNames = Set(rewrite.actions.filter { $0.kind == .wrapped }.map(\.node))
    wrapped = wrappedNames.count
    let layers = rewrite.original.nodes.filter { $0.kind == .linear || $0.kind == .conv2d }
    let all = layers.reduce(0) { $0 + $1.parameters.reduce(0) { $0 + $1.count } }
    let covered = layers.filter { wrappedNames.contains($0.name) }.reduce(0) {
      $0 + $1.parameters.reduce(0) { $0 + $1.count }
    }
    coverage = all == 0 ? 0 : Double(covered) / Double(all)
  }

  public func value(of quantity: Expectation.Quantity) -> Double {
    switch quantity {
    case .trainable: return Double(trainable)
    case .total: return Double(total)
    case .compressedTotal: return Double(compressedTotal)
    case .wrapped: return Double(wrapped)
    case .coverage: return coverage
    }
  }
}

/// Checks of a compiled plan against what the manifest declares (`expect:`).
public enum PlanReview {
  /// One error per expectation the plan breaks, at the expectation, with the actual value.
  /// `ranksDecided` false (validate, plan): budgeted ranks are only caps, so trainable and
  /// compressed_total are checked by `apply`, once the weights have decided the ranks.
  public static func expectationDiagnostics(
    _ manifest: Manifest, _ rewrite: Rewrite, ranksDecided: Bool
  ) -> [Diagnostic] {
    let counts = PlanCounts(rewrite)
    let budgeted = rewrite.actions.contains { $0.budgeted }
    var result: [Diagnostic] = []
    for expectation in manifest.expectations {
      if budgeted && !ranksDecided
        && [.trainable, .compressedTotal].contains(expectation.quantity)
      {
        continue
      }
      let actual = counts.value(of: expectation.quantity)
      guard !expectation.holds(for: actual) else { continue }
      let shown =
        expectation.quantity == .coverage
        ? String(format: "%.4f", actual) : grouped(Int(actual))
      result.append(
        Diagnostic(
          location: expectation.location, severity: .error,
          message:
            "expect.\(expectation.quantity.rawValue) \(expectation.text) does not hold: the plan has \(shown)",
          fix:
            "if the plan is right, write \(expectation.quantity.rawValue): \(expectation.quantity == .coverage ? String(format: "\"%.4f\"", actual) : String(Int(actual)))"
        ))
    }
    return result
  }

  public static func grouped(_ value: Int) -> String {
    let digits = String(value.magnitude)
    var result = ""
    for (offset, character) in digits.enumerated() {
      if offset > 0 && (digits.count - offset) % 3 == 0 { result.append(",") }
      result.append(character)
    }
    return (value < 0 ? "-" : "") + result
  }
}

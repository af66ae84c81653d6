import Foundation

/// One `expect:` entry: a count or share of the compiled plan and the bound the manifest
/// declares for it, checked by `validate` and `apply`.
public struct Expectation: Sendable, Equatable {
  public enum Quantity: String, Sendable, CaseIterable {
    case trainable
    case total
    case compressedTotal = "compressed_total"
    case wrapped
    case coverage
  }

  public enum Comparison: String, Sendable, CaseIterable {
    case equal = "=="
    case atLeast = ">="
    case atMost = "<="
    case greater = ">"
    case less = "<"
  }

  public var quantity: Quantity
  public var comparison: Comparison
  public var bound: Double
  /// The value's.
  public var location: SourceLocation

  public init(
    quantity: Quantity, comparison: Comparison, bound: Double, location: SourceLocation
  ) {
    self.quantity = quantity
    self.comparison = comparison
    self.bound = bound
    self.location = location
  }

  public func holds(for actual: Double) -> Bool {
    switch comparison {
    case .equal: return actual == bound
    case .atLeast: return actual >= bound
    case .atMost: return actual <= bound
    case .greater: return actual > bound
    case .less: return actual < bound
    }
  }

  /// The expectation as a manifest would write it ("== 141440", ">= 0.9").
  public var text: String {
    let number =
      quantity == .coverage ? String(bound) : String(Int(bound))
    return "\(comparison.rawValue) \(number)"
  }
}

extension DecodingContext {
  /// `expect:`: counts are whole numbers (a bare number means ==), coverage a share in [0, 1];
  /// either may be a string with a comparison (">= 0.9", "<= 200000").
  mutating func expectations(_ node: YAMLNode, owner: SourceLocation) throws(Invalid)
    -> [Expectation]
  {
    guard
      let fields = fields(
        of: node, path: "expect", owner: owner, allowed: ManifestKeys.expect,
        aliases: ["params": "total", "parameters": "total", "trainable_params": "trainable"])
    else { throw Invalid() }
    var result: [Expectation] = []
    var failed = false
    for quantity in Expectation.Quantity.allCases {
      guard let value = fields[quantity.rawValue] else { continue }
      if let expectation = expectation(value, quantity) {
        result.append(expectation)
      } else {
        failed = true
      }
    }
    if failed { throw Invalid() }
    return result.sorted { $0.location < $1.location }
  }

  private mutating func expectation(_ node: YAMLNode, _ quantity: Expectation.Quantity)
    -> Expectation?
  {
    let name = "expect.\(quantity.rawValue)"
    let isShare = quantity == .coverage
    let (count, atLeast) = quantity == .wrapped ? ("36", ">= 30") : ("141440", ">= 100000")
    let example =
      isShare
      ? "for example: \(name): \">= 0.9\"" : "for example: \(name): \(count) or \"\(atLeast)\""
    var comparison = Expectation.Comparison.equal
    var bound: Double
    switch (node.kind, node.resolved) {
    case (.scalar, .int(let value)?):
      bound = Double(value)
    case (.scalar, .double(let value)?) where value.isFinite:
      bound = value
    case (.scalar(let text, _), .string?):
      var rest = Substring(text).drop { $0 == " " }
      // Two-character operators first, so ">=" is not read as ">" and "=".
      if let found = Expectation.Comparison.allCases.sorted(by: {
        $0.rawValue.count > $1.rawValue.count
      }).first(where: { rest.hasPrefix($0.rawValue) }) {
        comparison = found
        rest = rest.dropFirst(found.rawValue.count)
      }
      let digits = String(rest).trimmingCharacters(in: .whitespaces).filter {
        $0 != "," && $0 != "_"
      }
      guard let number = Double(digits), number.isFinite, digits.first?.isNumber == true
      else {
        error(
          "\(name) must be \(isShare ? "a share" : "a count") or a comparison such as \"\(isShare ? ">= 0.9" : atLeast)\", not \(describe(node))",
          at: node.location, fix: "use ==, >=, <=, > or < followed by a number")
        return nil
      }
      bound = number
    default:
      error(
        "\(name) must be \(isShare ? "a share" : "a count") or a comparison string, not \(describe(node))",
        at: node.location, fix: example)
      return nil
    }
    if isShare {
      guard (0...1).contains(bound) else {
        error(
          "\(name) is a share of the Linear and Conv2d parameters, from 0 to 1, not \(node.scalarText ?? String(bound))",
          at: node.location, fix: "for example: \(name): \">= 0.9\"")
        return nil
      }
    } else {
      guard bound == bound.rounded(), bound >= 0, bound < 1e15 else {
        error(
          "\(name) counts \(quantity == .wrapped ? "nodes" : "parameters"): a whole number, not \(node.scalarText ?? String(bound))",
          at: node.location, fix: example)
        return nil
      }
    }
    return Expectation(
      quantity: quantity, comparison: comparison, bound: bound, location: node.location)
  }
}

import Plumbing

/// The keys every mapping of format 1 accepts, shared by the decoder and the schema so that the
/// two cannot drift apart.
enum ManifestKeys {
  static let top = ["surgeon", "name", "model", "surgery", "train", "output", "expect"]
  static let model = ["family", "checkpoint", "preset", "weights", "config", "head", "seed"]
  static let head = ["classes"]
  static let rules = ["lora", "freeze", "train"]
  static let lora = [
    "layers", "exclude", "blocks", "rank", "alpha", "init", "bias_c", "conv_form", "decay",
    "noise", "budget", "calibration", "refit",
  ]
  static let budget = ["share", "floor", "by"]
  static let calibration = ["batches"]
  static let distill = [
    "teacher", "temperature", "logits", "features", "hidden_states", "attention", "augment",
    "unlabeled",
  ]
  static let hiddenStates = ["layers", "weight"]
  static let decay = ["shape", "start", "end"]
  static let noise = ["stats", "clear_below", "scale", "spectral_cap"]
  static let train = [
    "task", "data", "steps", "batch_size", "optimizer", "eval_every", "seed", "distill",
  ]
  static let data = ["train", "test", "labels", "split", "max_length"]
  static let table = ["format", "path", "text", "label"]
  static let images = ["format", "images", "labels"]
  static let split = ["validation", "test", "group_by", "seed", "part"]
  static let optimizer = ["name", "lr", "weight_decay", "warmup"]
  static let output = ["dir", "compress", "onnx", "checkpoint_every"]
  static let expect = ["trainable", "total", "compressed_total", "wrapped", "coverage"]
  static let augment = [
    "edits", "rate", "copies", "seed", "thesaurus", "pad", "noise", "batch_size", "weight",
  ]
  static let unlabeled = ["format", "path", "text", "group_by", "batch_size", "weight"]
}

/// A value that failed to decode; the diagnostic has been recorded already.
struct Invalid: Error {}

/// The diagnostics of one decode, and the typed readers of YAML scalars that record them.
struct DecodingContext {
  let file: String
  var diagnostics: [Diagnostic] = []

  init(file: String) { self.file = file }

  var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }

  mutating func error(_ message: String, at location: SourceLocation, fix: String? = nil) {
    diagnostics.append(Diagnostic(location: location, severity: .error, message: message, fix: fix))
  }

  mutating func warning(_ message: String, at location: SourceLocation, fix: String? = nil) {
    diagnostics.append(
      Diagnostic(location: location, severity: .warning, message: message, fix: fix))
  }

  /// Diagnostics in file order, each reported once (an anchor used twice yields one finding).
  var sortedDiagnostics: [Diagnostic] {
    var seen = Set<Diagnostic>()
    let unique = diagnostics.filter { seen.insert($0).inserted }
    return unique.enumerated().sorted { lhs, rhs in
      lhs.element.location == rhs.element.location
        ? lhs.offset < rhs.offset : lhs.element.location < rhs.element.location
    }.map(\.element)
  }
}

/// The entries of one mapping, checked for unknown and duplicate keys, with `<<` merges applied.
struct Fields {
  /// Dotted path used in messages ("train.data.split"); nil at the top level.
  let path: String?
  /// Where a missing key is reported: the key that owns this mapping, or the mapping itself.
  let owner: SourceLocation
  private(set) var entries: [String: (key: YAMLNode, value: YAMLNode)] = [:]

  init(path: String?, owner: SourceLocation) {
    self.path = path
    self.owner = owner
  }

  subscript(key: String) -> YAMLNode? { entries[key]?.value }

  func keyLocation(_ key: String) -> SourceLocation? { entries[key]?.key.location }

  fileprivate mutating func insert(key: String, node: YAMLNode, value: YAMLNode) {
    entries[key] = (node, value)
  }
}

extension DecodingContext {
  /// The fields of `node`, which must be a mapping of string keys among `allowed`.
  ///
  /// Unknown keys are reported at the key with a did-you-mean, duplicates at their second
  /// occurrence; both are left out, so each problem is reported once. `aliases` maps common
  /// wrong names to the right ones ("learning_rate" → "lr").
  mutating func fields(
    of node: YAMLNode, path: String?, owner: SourceLocation, allowed: [String],
    aliases: [String: String] = [:], typeName: String? = nil
  ) -> Fields? {
    guard case .mapping = node.kind else {
      let subject = typeName ?? path ?? "a manifest"
      let verb = typeName == nil && path == nil ? "is" : "must be"
      error(
        "\(subject) \(verb) a mapping of keys, not \(describe(node))", at: node.location,
        fix: path == nil ? "start the file with 'surgeon: 1'" : nil)
      return nil
    }
    var fields = Fields(path: path, owner: owner)
    var explicit: [String: SourceLocation] = [:]
    var merged: [(key: YAMLNode, value: YAMLNode)] = []
    guard case .mapping(let entries) = node.kind else { return nil }
    for entry in entries {
      if isMergeKey(entry.key) {
        merged += mergeEntries(of: entry.value, depth: 0)
        continue
      }
      guard let key = keyText(entry.key) else { continue }
      if let first = explicit[key] {
        error("duplicate key '\(key)' (first at \(first.lineColumn))", at: entry.key.location)
        continue
      }
      explicit[key] = entry.key.location
      guard allowed.contains(key) else {
        reportUnknownKey(key, at: entry.key.location, in: path, allowed: allowed, aliases: aliases)
        continue
      }
      fields.insert(key: key, node: entry.key, value: entry.value)
    }
    // Explicit keys win over merged ones; among merges the first source wins (YAML 1.1).
    for entry in merged {
      guard let key = keyText(entry.key), explicit[key] == nil else { continue }
      explicit[key] = entry.key.location
      guard allowed.contains(key) else {
        reportUnknownKey(key, at: entry.key.location, in: path, allowed: allowed, aliases: aliases)
        continue
      }
      fields.insert(key: key, node: entry.key, value: entry.value)
    }
    return fields
  }

  private func isMergeKey(_ node: YAMLNode) -> Bool {
    guard case .scalar("<<", .plain) = node.kind else { return false }
    return node.tag == nil || node.tag == "tag:yaml.org,2002:merge"
  }

  /// The entries a `<<: *anchor` (or `<<: [*a, *b]`) brings in, nested merges included.
  private mutating func mergeEntries(of node: YAMLNode, depth: Int) -> [(
    key: YAMLNode, value: YAMLNode
  )] {
    switch node.kind {
    case .mapping(let entries):
      var explicit: [(key: YAMLNode, value: YAMLNode)] = []
      var nested: [(key: YAMLNode, value: YAMLNode)] = []
      for entry in entries {
        if isMergeKey(entry.key) {
          if depth < 64 { nested += mergeEntries(of: entry.value, depth: depth + 1) }
        } else {
          explicit.append(entry)
        }
      }
      return explicit + nested
    case .sequence(let items)
    where items.allSatisfy({ if case .mapping = $0.kind { true } else { false } }):
      return items.flatMap { mergeEntries(of: $0, depth: depth + 1) }
    default:
      error(
        "'<<' merges a mapping, not \(describe(node))", at: node.location,
        fix: "write '<<: *anchor' with the anchor of a mapping")
      return []
    }
  }

  /// A mapping key as text; a list or mapping used as a key is an error.
  private mutating func keyText(_ node: YAMLNode) -> String? {
    guard case .scalar(let text, _) = node.kind else {
      error("a key must be a name, not \(describe(node))", at: node.location)
      return nil
    }
    return text
  }

  private mutating func reportUnknownKey(
    _ key: String, at location: SourceLocation, in path: String?, allowed: [String],
    aliases: [String: String]
  ) {
    let subject = path.map { "unknown key '\(key)' in \($0)" } ?? "unknown top-level key '\(key)'"
    let suggestion = aliases[key] ?? closestName(to: key, in: allowed, closeness: .typo)
    if let suggestion {
      error("\(subject) (did you mean '\(suggestion)'?)", at: location)
    } else {
      error(
        subject, at: location,
        fix: "\(path ?? "the top level") takes \(allowed.joined(separator: ", "))")
    }
  }

  /// Reports a key the section needs and does not have, at the section's owner.
  mutating func missing(_ key: String, in fields: Fields, example: String) {
    let place = fields.path.map { " in \($0)" } ?? ""
    error("missing required key '\(key)'\(place)", at: fields.owner, fix: "add '\(example)'")
  }
}

// MARK: - Scalars

/// How YAML would type a plain scalar: the resolution format 1 uses everywhere.
enum ResolvedScalar: Equatable {
  case null
  case bool(Bool)
  case int(Int)
  /// A decimal integer too large for Int.
  case bigInt
  case double(Double)
  case string(String)
}

extension YAMLNode {
  /// The scalar's type: plain scalars by their text, quoted ones and `!!str` as strings.
  var resolved: ResolvedScalar? {
    guard case .scalar(let text, let style) = kind else { return nil }
    switch tag {
    case "tag:yaml.org,2002:str", "!": return .string(text)
    case "tag:yaml.org,2002:null": return .null
    case "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float":
      return YAMLNode.resolvePlain(text)
    case nil: return style == .plain ? YAMLNode.resolvePlain(text) : .string(text)
    default: return .string(text)
    }
  }

  static func resolvePlain(_ text: String) -> ResolvedScalar {
    switch text {
    case "", "~", "null", "Null", "NULL": return .null
    case "true", "True": return .bool(true)
    case "false", "False": return .bool(false)
    default: break
    }
    if isDecimalInteger(text) {
      guard let value = Int(text) else { return .bigInt }
      return .int(value)
    }
    if isDecimalFloat(text), let value = Double(text) { return .double(value) }
    return .string(text)
  }

  /// An optional sign and decimal digits: the only integer spelling format 1 reads.
  static func isDecimalInteger(_ text: String) -> Bool {
    var digits = Substring(text)
    if digits.first == "-" || digits.first == "+" { digits = digits.dropFirst() }
    return !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
  }

  /// `0.5`, `1.0e-3`, `1e-3`, `.5`, `5.`: decimal floats with an optional exponent.
  static func isDecimalFloat(_ text: String) -> Bool {
    var rest = Substring(text)
    if rest.first == "-" || rest.first == "+" { rest = rest.dropFirst() }
    let mantissa = rest.prefix { $0 != "e" && $0 != "E" }
    let exponent = rest.dropFirst(mantissa.count)
    let parts = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count <= 2, parts.contains(where: { !$0.isEmpty }),
      parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } })
    else { return false }
    guard !exponent.isEmpty else { return true }
    var power = exponent.dropFirst()
    if power.first == "-" || power.first == "+" { power = power.dropFirst() }
    return !power.isEmpty && power.allSatisfy { $0.isASCII && $0.isNumber }
  }
}

/// How a node reads in a message: "'abc'", "the string '16'", "a list", "an empty value".
func describe(_ node: YAMLNode) -> String {
  switch node.kind {
  case .mapping: return "a mapping"
  case .sequence: return "a list"
  case .scalar(let text, let style):
    var shown = String(text.prefix { $0 != "\n" && $0 != "\r" }.prefix(40))
    if shown.count < text.count { shown += "…" }
    if style != .plain || node.tag == "tag:yaml.org,2002:str" { return "the string '\(shown)'" }
    if node.resolved == .null { return text.isEmpty ? "an empty value" : "null" }
    return "'\(shown)'"
  }
}

/// A fix for a quoted number where a number belongs.
private func quotedNumberFix(_ node: YAMLNode) -> String? {
  guard case .scalar(let text, let style) = node.kind, style != .plain else { return nil }
  switch YAMLNode.resolvePlain(text) {
  case .int, .double, .bool: return "remove the quotes"
  default: return nil
  }
}

extension DecodingContext {
  /// A decimal integer.
  mutating func integer(_ node: YAMLNode, _ name: String) throws(Invalid) -> Int {
    switch node.resolved {
    case .int(let value): return value
    case .bigInt:
      error("\(name) is too large: \(node.scalarText ?? "")", at: node.location)
    default:
      error(
        "\(name) must be an integer, not \(describe(node))", at: node.location,
        fix: quotedNumberFix(node))
    }
    throw Invalid()
  }

  /// A decimal integer in `range`, reported as "NAME must be from A to B, not V".
  mutating func integer(
    _ node: YAMLNode, _ name: String, in range: ClosedRange<Int>
  ) throws(Invalid) -> Int {
    let value = try integer(node, name)
    guard range.contains(value) else {
      let allowed =
        range.upperBound == Int.max
        ? "at least \(range.lowerBound)" : "from \(range.lowerBound) to \(range.upperBound)"
      let fix =
        range.upperBound == Int.max
        ? "use \(range.lowerBound) or more"
        : "use a value from \(range.lowerBound) to \(range.upperBound)"
      error("\(name) must be \(allowed), not \(value)", at: node.location, fix: fix)
      throw Invalid()
    }
    return value
  }

  /// A finite number; integers are accepted where numbers are expected.
  mutating func number(_ node: YAMLNode, _ name: String) throws(Invalid) -> Double {
    switch node.resolved {
    case .int(let value): return Double(value)
    case .double(let value) where value.isFinite: return value
    case .double, .bigInt:
      error("\(name) is out of range: \(node.scalarText ?? "")", at: node.location)
    default:
      error(
        "\(name) must be a number, not \(describe(node))", at: node.location,
        fix: quotedNumberFix(node))
    }
    throw Invalid()
  }

  /// A number inside an interval; `interval` is its text for messages ("in [0, 1)", "> 0").
  mutating func number(
    _ node: YAMLNode, _ name: String, _ interval: String, _ accepts: (Double) -> Bool
  ) throws(Invalid) -> Double {
    let value = try number(node, name)
    guard accepts(value) else {
      error(
        "\(name) must be \(interval), not \(node.scalarText ?? String(value))", at: node.location,
        fix: "use a number \(interval)")
      throw Invalid()
    }
    return value
  }

  mutating func boolean(_ node: YAMLNode, _ name: String) throws(Invalid) -> Bool {
    guard case .bool(let value) = node.resolved else {
      error("\(name) must be true or false, not \(describe(node))", at: node.location)
      throw Invalid()
    }
    return value
  }

  /// Any non-null scalar as text: `name: 123` and `labels: [0, 1]` are strings here.
  mutating func string(_ node: YAMLNode, _ name: String) throws(Invalid) -> String {
    guard case .scalar(let text, _) = node.kind, node.resolved != .null else {
      error("\(name) must be a string, not \(describe(node))", at: node.location)
      throw Invalid()
    }
    return text
  }

  /// A non-empty string without control characters (paths, column names, selectors).
  mutating func name(_ node: YAMLNode, _ name: String) throws(Invalid) -> String {
    let text = try string(node, name)
    if text.isEmpty {
      error("\(name) must not be empty", at: node.location)
      throw Invalid()
    }
    if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
      error("\(name) contains a control character", at: node.location, fix: "remove it")
      throw Invalid()
    }
    return text
  }

  /// One of an enumeration's raw values, with a did-you-mean for a near miss.
  mutating func choice<Choice: RawRepresentable & CaseIterable>(
    _ node: YAMLNode, _ name: String, as type: Choice.Type = Choice.self
  ) throws(Invalid) -> Choice where Choice.RawValue == String {
    let names = Choice.allCases.map(\.rawValue)
    if case .scalar(let text, _) = node.kind, let value = Choice(rawValue: text) { return value }
    let options = listing(names, conjunction: "or")
    var message = "\(name) must be \(options), not \(describe(node))"
    if let text = node.scalarText,
      let suggestion = closestName(to: text, in: names, closeness: .typo)
    {
      message += " (did you mean '\(suggestion)'?)"
    }
    error(message, at: node.location)
    throw Invalid()
  }

  /// Selectors: one string or a non-empty list of strings.
  mutating func selectors(_ node: YAMLNode, _ name: String) throws(Invalid) -> [Located<String>] {
    switch node.kind {
    case .scalar:
      return [Located(try self.name(node, name), at: node.location)]
    case .sequence(let items):
      guard !items.isEmpty else {
        error("\(name) needs at least one selector", at: node.location)
        throw Invalid()
      }
      var result: [Located<String>] = []
      var failed = false
      for item in items {
        do throws(Invalid) {
          if case .scalar = item.kind {
            result.append(Located(try self.name(item, "a selector"), at: item.location))
          } else {
            error("a selector must be a string, not \(describe(item))", at: item.location)
            failed = true
          }
        } catch {
          failed = true
        }
      }
      if failed { throw Invalid() }
      return result
    case .mapping:
      error(
        "\(name) must be a selector or a list of selectors, not a mapping", at: node.location,
        fix: "write \(name): [query, value]")
      throw Invalid()
    }
  }
}

// MARK: - Suggestions

/// "a, b or c".
func listing(_ words: [String], conjunction: String) -> String {
  guard words.count > 1 else { return words.first ?? "" }
  return words.dropLast().joined(separator: ", ") + " \(conjunction) " + (words.last ?? "")
}

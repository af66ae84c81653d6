import Foundation
import Models
import Plumbing

/// A selector that cannot be parsed or matches no node: what is wrong, and how to fix it, so
/// the manifest checker can print both at the selector's file position.
public struct SelectorError: Error, Sendable, Equatable, CustomStringConvertible {
  public var message: String
  public var fix: String?

  public init(message: String, fix: String? = nil) {
    self.message = message
    self.fix = fix
  }

  /// The message and its fix in the manifest errors' form, `what is wrong; how to fix it`.
  public var description: String {
    guard let fix else { return message }
    return message + "; " + fix
  }
}

/// One selector of a manifest (docs/manifest.md, "Selectors"), parsed once so that matching many
/// nodes does not re-parse globs or recompile regular expressions.
///
/// A node is matched if any reading of the text applies: a role, a dotted name or suffix on
/// dot boundaries, a glob (`*` one segment, `**` any number), a `/regex/` (whole name), or one of
/// the Keras/keras-hub layer names the original research notes used.
public struct NodeSelector: Sendable, Equatable {
  public let text: String
  private let form: Form

  /// Parses `text`; an empty selector, a malformed glob or an invalid `/regex/` is an error.
  public init(_ text: String) throws(SelectorError) {
    self.text = text
    form = try Form(parsing: text)
  }

  /// Two selectors are equal when their texts are: the parsed form follows from the text.
  public static func == (lhs: NodeSelector, rhs: NodeSelector) -> Bool {
    lhs.text == rhs.text
  }

  /// Whether this selector picks `node`. `nodes` is the whole graph `node` belongs to, needed
  /// for `head` / `logits` (the graph's last Linear, when it is a classifier head).
  public func matches(_ node: GraphNode, among nodes: [GraphNode]) -> Bool {
    switch form {
    case .plain(let suffix, let alias):
      if NodeSelector.name(node.name, hasDottedSuffix: suffix) { return true }
      return alias.map { $0.matches(node, among: nodes) } ?? false
    case .glob(let segments):
      let name = node.name.split(separator: ".", omittingEmptySubsequences: false)
      return Glob.matches(segments[...], name[...])
    case .regex(let box):
      let name = node.name
      let range = NSRange(name.startIndex..<name.endIndex, in: name)
      return box.expression.firstMatch(in: name, options: [], range: range) != nil
    }
  }

  /// The PEFT rule: the whole name, or a suffix that starts right after a dot.
  static func name(_ name: String, hasDottedSuffix suffix: String) -> Bool {
    name == suffix || name.hasSuffix("." + suffix)
  }
}

/// The indices (into `nodes`, in node order) of the nodes that any of `selectors` picks, kept
/// only when their block is in `blocks` (when given; nodes outside any block then drop out),
/// minus those any of `exclude` picks.
///
/// Every selector of either list must match some node of the model (before `blocks` and
/// `exclude` apply): a selector that matches nothing is almost always a typo, so it is an error
/// naming the closest node names. An exclude that removes nothing selected is fine.
public func selectNodes(
  _ selectors: [String], exclude: [String] = [], blocks: Set<Int>? = nil, in nodes: [GraphNode]
) throws(SelectorError) -> [Int] {
  let included = try parsedSelectors(selectors, in: nodes)
  let excluded = try parsedSelectors(exclude, in: nodes)
  var result: [Int] = []
  for (index, node) in nodes.enumerated() {
    guard included.contains(where: { $0.matches(node, among: nodes) }) else { continue }
    if let blocks {
      guard let block = node.block, blocks.contains(block) else { continue }
    }
    guard !excluded.contains(where: { $0.matches(node, among: nodes) }) else { continue }
    result.append(index)
  }
  return result
}

/// The error for one selector, so the caller can report it at that selector's file position:
/// the parse error when it is invalid, the "matches no node" error when it picks nothing, nil
/// when it matches some node.
public func unmatchedSelector(_ selector: String, in nodes: [GraphNode]) -> SelectorError? {
  do {
    _ = try parsedSelectors([selector], in: nodes)
    return nil
  } catch {
    return error
  }
}

/// Parses every selector and checks that each matches some node.
private func parsedSelectors(_ texts: [String], in nodes: [GraphNode]) throws(SelectorError)
  -> [NodeSelector]
{
  var result: [NodeSelector] = []
  for text in texts {
    let selector = try NodeSelector(text)
    guard nodes.contains(where: { selector.matches($0, among: nodes) }) else {
      throw noMatchError(text, in: nodes)
    }
    result.append(selector)
  }
  return result
}

/// "matches no node", with the three node names nearest to the selector.
private func noMatchError(_ text: String, in nodes: [GraphNode]) -> SelectorError {
  var fix =
    "use a role (query, key, value, attention_output, ffn_intermediate, …), "
    + "a node name or dotted suffix, a glob (* one segment, ** any) or a /regex/"
  // Globs match whole names, so `encoder.layer.*.…` misses a `bert.`-prefixed checkpoint.
  if text.contains("*"), !text.hasPrefix("/"), let anywhere = try? NodeSelector("**." + text),
    nodes.contains(where: { anywhere.matches($0, among: nodes) })
  {
    fix = "globs match whole names: write '**.\(text)' to allow any prefix"
  }
  guard !nodes.isEmpty else {
    return SelectorError(message: "selector '\(text)' matches no node; the model has no nodes")
  }
  // A regular expression's slashes are no part of any name.
  let probe = text.hasPrefix("/") ? text.trimmingCharacters(in: ["/"]) : text
  let closest = nearestNames(to: probe, in: nodes.map(\.name), count: 3)
  return SelectorError(
    message: "selector '\(text)' matches no node; closest: "
      + closest.joined(separator: ", "),
    fix: fix)
}

// MARK: - Parsed forms

extension NodeSelector {
  fileprivate enum Form: Sendable {
    /// A name or dotted suffix, plus what a role or Keras name means besides.
    case plain(suffix: String, alias: Alias?)
    case glob([Glob.Segment])
    case regex(RegexBox)

    init(parsing text: String) throws(SelectorError) {
      guard !text.isEmpty, !text.allSatisfy(\.isWhitespace) else {
        throw SelectorError(
          message: "empty selector",
          fix: "name a role (query, key, …), a node name or suffix, a glob or a /regex/")
      }
      if text.hasPrefix("/") {
        self = .regex(try RegexBox(parsing: text))
      } else if text.contains("*") {
        self = .glob(try Glob.parse(text))
      } else {
        self = .plain(suffix: text, alias: Alias(text))
      }
    }
  }

  /// What a role name or a Keras/keras-hub layer name picks besides its literal suffix reading.
  fileprivate enum Alias: Sendable {
    case role(NodeRole)
    /// `classifier`: BERT's classifier and every Linear of a VGG classifier (fc and head).
    case classifier
    /// `head`, `logits`: the graph's last Linear when it is a classifier head.
    case head
    /// `transformer_layer_N`: every node of transformer block N.
    case transformerBlock(Int)
    /// A Keras embedding name: the Hugging Face node name suffix it stands for.
    case suffix(String)

    private static let keras: [String: Alias] = [
      "token_embedding": .suffix("embeddings.word_embeddings"),
      "position_embedding": .suffix("embeddings.position_embeddings"),
      "segment_embedding": .suffix("embeddings.token_type_embeddings"),
      "embeddings_layer_norm": .suffix("embeddings.LayerNorm"),
      "_query_dense": .role(.query),
      "_key_dense": .role(.key),
      "_value_dense": .role(.value),
      "_attention_output_dense": .role(.attentionOutput),
      "_self_attention_layer_norm": .role(.attentionNorm),
      "_feedforward_intermediate_dense": .role(.ffnIntermediate),
      "_feedforward_output_dense": .role(.ffnOutput),
      "_feedforward_layer_norm": .role(.ffnNorm),
      "pooled_dense": .role(.pooler),
      "logits": .head,
    ]

    private static let transformerLayerPrefix = "transformer_layer_"

    init?(_ text: String) {
      if text == "head" {
        self = .head
      } else if text == "classifier" {
        self = .classifier
      } else if let role = NodeRole(rawValue: text) {
        self = .role(role)
      } else if let alias = Alias.keras[text] {
        self = alias
      } else if let block = Alias.transformerLayerIndex(text) {
        self = .transformerBlock(block)
      } else {
        return nil
      }
    }

    /// N of `transformer_layer_N` (ASCII digits only, so `transformer_layer_+1` is no alias).
    private static func transformerLayerIndex(_ text: String) -> Int? {
      guard text.hasPrefix(transformerLayerPrefix) else { return nil }
      let digits = text.dropFirst(transformerLayerPrefix.count)
      guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
      return Int(digits)
    }

    private static let transformerRoles: Set<NodeRole> = [
      .query, .key, .value, .attentionOutput, .attentionNorm, .ffnIntermediate, .ffnOutput,
      .ffnNorm,
    ]

    func matches(_ node: GraphNode, among nodes: [GraphNode]) -> Bool {
      switch self {
      case .role(let role):
        return node.role == role
      case .classifier:
        return node.role == .classifier || node.role == .fc || node.role == .head
      case .head:
        guard node.kind == .linear, node.role == .head || node.role == .classifier else {
          return false
        }
        return nodes.last(where: { $0.kind == .linear })?.name == node.name
      case .transformerBlock(let block):
        // VGG blocks count convolutions: a transformer layer name picks transformer nodes only.
        return node.block == block && Alias.transformerRoles.contains(node.role)
      case .suffix(let suffix):
        return NodeSelector.name(node.name, hasDottedSuffix: suffix)
      }
    }
  }

  /// A compiled whole-name regular expression. NSRegularExpression is immutable and documented
  /// as safe to share between threads.
  fileprivate struct RegexBox: @unchecked Sendable {
    let expression: NSRegularExpression

    init(parsing text: String) throws(SelectorError) {
      guard text.count >= 2, text.hasSuffix("/") else {
        throw SelectorError(
          message: "selector '\(text)' starts a /regex/ but has no closing '/'",
          fix: "write a regular expression between slashes, e.g. /encoder\\.layer\\.[0-2]\\..*/")
      }
      let pattern = String(text.dropFirst().dropLast())
      guard !pattern.isEmpty else {
        throw SelectorError(
          message: "empty regular expression //",
          fix: "write a pattern between the slashes, e.g. /.*query/")
      }
      // Compiled alone first, so that an unbalanced pattern such as `a)(b` is not made valid by
      // the anchoring group around it.
      guard (try? NSRegularExpression(pattern: pattern)) != nil,
        let anchored = try? NSRegularExpression(pattern: "\\A(?:" + pattern + ")\\z")
      else {
        throw SelectorError(
          message: "invalid regular expression /\(pattern)/: \(RegexBox.reason(pattern))",
          fix: "fix the pattern (ICU syntax; it must match whole node names)")
      }
      expression = anchored
    }

    /// Why a pattern does not compile. NSRegularExpression on Linux gives no reason, so the
    /// standard library's parser (close to ICU's syntax) is asked for one.
    private static func reason(_ pattern: String) -> String {
      do {
        _ = try Regex(pattern)
      } catch {
        return String(describing: error)
      }
      return "not valid ICU regular-expression syntax"
    }
  }
}

// MARK: - Globs

/// Globs over dotted names: `*` is one segment (or, inside a segment, any run of characters
/// but a dot), `**` any number of whole segments, including none.
enum Glob {
  enum Segment: Sendable, Equatable {
    case anySegments
    /// One segment; its `*`s match any run of characters within it.
    case pattern([Character])
  }

  static func parse(_ text: String) throws(SelectorError) -> [Segment] {
    var result: [Segment] = []
    for part in text.split(separator: ".", omittingEmptySubsequences: false) {
      if part == "**" {
        result.append(.anySegments)
      } else if part.isEmpty {
        throw SelectorError(
          message: "glob '\(text)' has an empty name segment",
          fix: "separate segments with single dots, e.g. encoder.layer.*.intermediate.dense")
      } else if part.contains("**") {
        throw SelectorError(
          message: "glob '\(text)': '**' must be a whole segment",
          fix: "write '**' between dots (e.g. **.query), or '*' for part of a segment")
      } else {
        result.append(.pattern(Array(part)))
      }
    }
    return result
  }

  static func matches(_ pattern: ArraySlice<Segment>, _ name: ArraySlice<Substring>) -> Bool {
    guard let first = pattern.first else { return name.isEmpty }
    switch first {
    case .anySegments:
      // Zero segments, or one more and try again.
      if matches(pattern.dropFirst(), name) { return true }
      return !name.isEmpty && matches(pattern, name.dropFirst())
    case .pattern(let characters):
      guard let segment = name.first, segmentMatches(characters[...], Array(segment)[...]) else {
        return false
      }
      return matches(pattern.dropFirst(), name.dropFirst())
    }
  }

  /// `*` within a segment: any run of characters (the segment holds no dots).
  static func segmentMatches(_ pattern: ArraySlice<Character>, _ text: ArraySlice<Character>)
    -> Bool
  {
    guard let first = pattern.first else { return text.isEmpty }
    if first == "*" {
      let rest = pattern.drop(while: { $0 == "*" })
      var tail = text
      while true {
        if segmentMatches(rest, tail) { return true }
        guard !tail.isEmpty else { return false }
        tail = tail.dropFirst()
      }
    }
    guard let character = text.first, character == first else { return false }
    return segmentMatches(pattern.dropFirst(), text.dropFirst())
  }
}

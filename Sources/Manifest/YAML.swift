import CYAML

/// libyaml's version string (the linked library, not the header).
public var yamlLibraryVersion: String {
  String(cString: yaml_get_version_string())
}

/// How a scalar was written; quoting decides whether `16` is a number or a string.
public enum ScalarStyle: String, Sendable, Equatable, Hashable {
  case plain
  case singleQuoted = "single-quoted"
  case doubleQuoted = "double-quoted"
  case literal
  case folded
}

/// One node of a YAML document, with the position libyaml reported for its first character.
///
/// Aliases are already resolved: an `*alias` is a copy of its anchor's node (arrays share their
/// storage, so a copy is cheap), keeping the anchor's location.
public struct YAMLNode: Sendable {
  public enum Kind: Sendable {
    case scalar(String, style: ScalarStyle)
    /// Entries in document order; duplicate keys are kept (the decoder reports them).
    case mapping([(key: YAMLNode, value: YAMLNode)])
    case sequence([YAMLNode])
  }

  public var kind: Kind
  /// The explicit tag, expanded (`!!str` is "tag:yaml.org,2002:str"); nil when none was written.
  public var tag: String?
  public var location: SourceLocation

  public init(_ kind: Kind, tag: String? = nil, location: SourceLocation) {
    self.kind = kind
    self.tag = tag
    self.location = location
  }

  /// The text of a scalar; nil for a mapping or sequence.
  public var scalarText: String? {
    if case .scalar(let text, _) = kind { return text }
    return nil
  }
}

/// The bounds that keep a hostile or mistaken input from costing more than a manifest should.
public struct YAMLLimits: Sendable, Equatable {
  /// Input size in bytes; checked before libyaml sees the input.
  public var maxBytes: Int
  /// Open mappings and sequences at once, counting those an alias brings in.
  public var maxDepth: Int
  /// Nodes in the document with every alias expanded (what a billion-laughs bomb inflates).
  public var maxNodes: Int

  public init(maxBytes: Int = 1 << 20, maxDepth: Int = 64, maxNodes: Int = 10_000) {
    self.maxBytes = maxBytes
    self.maxDepth = maxDepth
    self.maxNodes = maxNodes
  }
}

/// Builds `YAMLNode` trees with libyaml's event API, turning every problem into a `Diagnostic`.
public enum YAMLParser {
  /// The root node of the single document in `text` (nil on any error) and the diagnostics.
  public static func parse(
    _ text: String, file: String, limits: YAMLLimits = YAMLLimits()
  ) -> (root: YAMLNode?, diagnostics: [Diagnostic]) {
    parse(bytes: Array(text.utf8), file: file, limits: limits)
  }

  /// As `parse(_:file:limits:)` for raw bytes, which libyaml checks to be UTF-8.
  public static func parse(
    bytes: [UInt8], file: String, limits: YAMLLimits = YAMLLimits()
  ) -> (root: YAMLNode?, diagnostics: [Diagnostic]) {
    let start = SourceLocation(file: file, line: 1, column: 1)
    func failure(_ message: String, at location: SourceLocation = start, fix: String? = nil) -> (
      root: YAMLNode?, diagnostics: [Diagnostic]
    ) {
      (nil, [Diagnostic(location: location, severity: .error, message: message, fix: fix)])
    }
    if bytes.count > limits.maxBytes {
      return failure(
        "manifest is \(bytes.count) bytes; the limit is \(limits.maxBytes) bytes",
        fix: "a manifest is a short text file; is this the right file?")
    }
    if let nul = bytes.firstIndex(of: 0) {
      return failure(
        "manifest contains a NUL byte", at: location(ofByte: nul, in: bytes, file: file),
        fix: "a manifest is UTF-8 text; is this a binary file?")
    }
    if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
      return failure("manifest is empty", fix: "start it with 'surgeon: 1'")
    }
    var builder = TreeBuilder(file: file, bytes: bytes, limits: limits)
    builder.run()
    return (builder.diagnostics.isEmpty ? builder.root : nil, builder.diagnostics)
  }

  /// Line and column of byte `offset`, counting columns in Unicode scalars as libyaml does
  /// (which does not count a leading byte-order mark).
  static func location(ofByte offset: Int, in bytes: [UInt8], file: String) -> SourceLocation {
    var line = 1
    var column = 1
    let start = bytes.starts(with: utf8ByteOrderMark) ? utf8ByteOrderMark.count : 0
    for byte in bytes[min(start, offset)..<min(offset, bytes.count)] {
      if byte == 0x0A {
        line += 1
        column = 1
      } else if byte & 0xC0 != 0x80 {
        column += 1
      }
    }
    return SourceLocation(file: file, line: line, column: column)
  }
}

private let utf8ByteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

/// The event loop: an explicit stack of open collections, so depth costs heap, never call stack.
private struct TreeBuilder {
  /// An open mapping or sequence; a mapping's children alternate key, value.
  struct Frame {
    var isMapping: Bool
    var location: SourceLocation
    var tag: String?
    var anchor: String?
    var children: [YAMLNode] = []
    /// Nodes in this subtree with aliases expanded, itself included.
    var size = 1
    /// The tallest child's height (a scalar has height 1).
    var childHeight = 0
  }

  /// A completed anchored node and what an alias to it costs.
  struct Anchored {
    var node: YAMLNode
    var size: Int
    var height: Int
  }

  let file: String
  let bytes: [UInt8]
  let limits: YAMLLimits
  var stack: [Frame] = []
  var anchors: [String: Anchored] = [:]
  var nodeCount = 0
  var documentCount = 0
  var root: YAMLNode?
  var diagnostics: [Diagnostic] = []

  init(file: String, bytes: [UInt8], limits: YAMLLimits) {
    self.file = file
    self.bytes = bytes
    self.limits = limits
  }

  mutating func fail(_ message: String, at location: SourceLocation, fix: String? = nil) {
    diagnostics.append(Diagnostic(location: location, severity: .error, message: message, fix: fix))
  }

  func location(_ mark: yaml_mark_t) -> SourceLocation {
    SourceLocation(file: file, line: Int(mark.line) + 1, column: Int(mark.column) + 1)
  }

  mutating func run() {
    var parser = yaml_parser_t()
    guard yaml_parser_initialize(&parser) == 1 else {
      fail(
        "libyaml could not allocate a parser", at: SourceLocation(file: file, line: 1, column: 1))
      return
    }
    defer { yaml_parser_delete(&parser) }
    let input = bytes
    input.withUnsafeBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return }
      yaml_parser_set_input_string(&parser, base, buffer.count)
      // UTF-8 only: a UTF-16 byte-order mark must not silently switch encodings. A UTF-8 one
      // is left to libyaml's detection, which skips it.
      if !bytes.starts(with: utf8ByteOrderMark) {
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
      }
      var event = yaml_event_t()
      while true {
        guard yaml_parser_parse(&parser, &event) == 1 else {
          reportSyntaxError(parser)
          return
        }
        let keepGoing = handle(event)
        yaml_event_delete(&event)
        if !keepGoing { return }
      }
    }
  }

  /// Consumes one event; false ends the loop (end of stream or an error that stops the parse).
  mutating func handle(_ event: yaml_event_t) -> Bool {
    let here = location(event.start_mark)
    switch event.type {
    case YAML_DOCUMENT_START_EVENT:
      documentCount += 1
      if documentCount > 1 {
        fail(
          "a manifest is one YAML document", at: here, fix: "remove the '---' separator")
        return false
      }
    case YAML_SCALAR_EVENT:
      let scalar = event.data.scalar
      let text = String(
        decoding: UnsafeBufferPointer(start: scalar.value, count: Int(scalar.length)),
        as: UTF8.self)
      let tag = string(scalar.tag)
      let node = YAMLNode(.scalar(text, style: style(scalar.style)), tag: tag, location: here)
      guard countNode(at: here), supports(tag, at: here) else { return false }
      complete(node, size: 1, height: 1, anchor: string(scalar.anchor))
    case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
      let isMapping = event.type == YAML_MAPPING_START_EVENT
      let anchor = string(
        isMapping ? event.data.mapping_start.anchor : event.data.sequence_start.anchor)
      let tag = string(isMapping ? event.data.mapping_start.tag : event.data.sequence_start.tag)
      if stack.count + 1 > limits.maxDepth {
        fail(
          "nesting is deeper than \(limits.maxDepth) levels", at: here,
          fix: "a manifest needs only a few levels; is this the right file?")
        return false
      }
      guard countNode(at: here), supports(tag, at: here) else { return false }
      stack.append(Frame(isMapping: isMapping, location: here, tag: tag, anchor: anchor))
    case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
      guard let frame = stack.popLast() else { return true }
      let kind: YAMLNode.Kind
      if frame.isMapping {
        var entries: [(key: YAMLNode, value: YAMLNode)] = []
        entries.reserveCapacity(frame.children.count / 2)
        var index = 0
        while index + 1 < frame.children.count {
          entries.append((key: frame.children[index], value: frame.children[index + 1]))
          index += 2
        }
        kind = .mapping(entries)
      } else {
        kind = .sequence(frame.children)
      }
      let node = YAMLNode(kind, tag: frame.tag, location: frame.location)
      complete(node, size: frame.size, height: frame.childHeight + 1, anchor: frame.anchor)
    case YAML_ALIAS_EVENT:
      let name = string(event.data.alias.anchor) ?? ""
      return alias(name, at: here)
    case YAML_STREAM_END_EVENT:
      if documentCount == 0 {
        fail(
          "manifest is empty", at: SourceLocation(file: file, line: 1, column: 1),
          fix: "start it with 'surgeon: 1'")
      }
      return false
    default:
      break
    }
    return true
  }

  /// The core schema's tags and "!" are understood; anything else (a local `!foo`, `!!binary`)
  /// would be silently misread, so it is an error.
  mutating func supports(_ tag: String?, at location: SourceLocation) -> Bool {
    guard let tag else { return true }
    let core = "tag:yaml.org,2002:"
    let known = ["str", "int", "float", "bool", "null", "map", "seq", "merge"]
    if tag == "!" || (tag.hasPrefix(core) && known.contains(String(tag.dropFirst(core.count)))) {
      return true
    }
    let shown = tag.hasPrefix(core) ? "!!" + tag.dropFirst(core.count) : tag
    fail(
      "unsupported YAML tag '\(shown)'", at: location,
      fix: "remove the tag; a manifest uses plain values")
    return false
  }

  /// Counts one more node of the expanded document; false (with an error) past the limit.
  mutating func countNode(at location: SourceLocation) -> Bool {
    nodeCount += 1
    if nodeCount > limits.maxNodes {
      fail(
        "manifest has more than \(limits.maxNodes) nodes", at: location,
        fix: "a manifest needs far fewer; is this the right file?")
      return false
    }
    return true
  }

  /// Inserts the anchored node, refusing aliases that would inflate the document past the limits.
  mutating func alias(_ name: String, at location: SourceLocation) -> Bool {
    guard let anchored = anchors[name] else {
      if stack.contains(where: { $0.anchor == name }) {
        fail(
          "alias '*\(name)' refers to a node that contains it", at: location,
          fix: "a manifest cannot be recursive; copy the value instead")
      } else {
        fail(
          "unknown alias '*\(name)'", at: location,
          fix: "define the anchor '&\(name)' before this alias")
      }
      return false
    }
    nodeCount += anchored.size
    if nodeCount > limits.maxNodes {
      fail(
        "alias '*\(name)' expands the manifest past \(limits.maxNodes) nodes (an alias bomb?)",
        at: location, fix: "use fewer aliases, or aliases of smaller nodes")
      return false
    }
    if stack.count + anchored.height > limits.maxDepth {
      fail(
        "alias '*\(name)' nests the manifest deeper than \(limits.maxDepth) levels", at: location,
        fix: "use an alias of a smaller node")
      return false
    }
    complete(anchored.node, size: anchored.size, height: anchored.height, anchor: nil)
    return true
  }

  /// Hands a finished node to its parent (or makes it the root) and records its anchor.
  mutating func complete(_ node: YAMLNode, size: Int, height: Int, anchor: String?) {
    if let anchor {
      anchors[anchor] = Anchored(node: node, size: size, height: height)
    }
    guard !stack.isEmpty else {
      root = node
      return
    }
    stack[stack.count - 1].children.append(node)
    stack[stack.count - 1].size += size
    stack[stack.count - 1].childHeight = max(stack[stack.count - 1].childHeight, height)
  }

  func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
    pointer.map { String(cString: $0) }
  }

  func style(_ style: yaml_scalar_style_t) -> ScalarStyle {
    switch style {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE: return .singleQuoted
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE: return .doubleQuoted
    case YAML_LITERAL_SCALAR_STYLE: return .literal
    case YAML_FOLDED_SCALAR_STYLE: return .folded
    default: return .plain
    }
  }

  /// libyaml's problem and context as one diagnostic at the problem mark, with a hint.
  mutating func reportSyntaxError(_ parser: yaml_parser_t) {
    let problem = parser.problem.map { String(cString: $0) } ?? "unknown problem"
    if parser.error == YAML_READER_ERROR {
      let at = YAMLParser.location(ofByte: Int(parser.problem_offset), in: bytes, file: file)
      if problem.contains("UTF-8") || problem.contains("utf-8") {
        let value = Int(parser.problem_value)
        let byte = value >= 0 ? " (byte 0x\(String(value, radix: 16, uppercase: true)))" : ""
        fail(
          "manifest is not valid UTF-8: \(problem)\(byte)", at: at,
          fix: "save the file as UTF-8 text")
      } else {
        let value = Int(parser.problem_value)
        let hex = String(value, radix: 16, uppercase: true)
        let code =
          value >= 0 ? " (U+\(String(repeating: "0", count: max(0, 4 - hex.count)))\(hex))" : ""
        fail(
          "YAML syntax error: \(problem)\(code)", at: at,
          fix: "remove the character; a manifest is plain text")
      }
      return
    }
    let at = location(parser.problem_mark)
    var message = "YAML syntax error: \(problem)"
    if let context = parser.context.map({ String(cString: $0) }), context != problem {
      let contextAt = location(parser.context_mark)
      message += contextAt == at ? " (\(context))" : " (\(context) at \(contextAt.lineColumn))"
    }
    let context = parser.context.map { String(cString: $0) }
    fail(message, at: at, fix: hint(problem: problem, context: context, at: parser.problem_mark))
  }

  /// A fix for the mistakes people make most; nil when libyaml's message is all we know.
  func hint(problem: String, context: String?, at mark: yaml_mark_t) -> String? {
    let index = Int(mark.index)
    let character: UInt8? = index < bytes.count ? bytes[index] : nil
    if problem.contains("tab") || character == 0x09 {
      return "indent with spaces, not tabs"
    }
    if context == "while scanning a quoted scalar" {
      return "close the quote"
    }
    switch problem {
    case "mapping values are not allowed in this context":
      return "quote a value that contains ': ', or put the key on its own line"
    case "did not find expected key":
      return "check this line's indentation against the keys above it"
    case "did not find expected ',' or ']'":
      return "close the list with ']' (or separate its items with ',')"
    case "did not find expected ',' or '}'":
      return "close the mapping with '}' (or separate its entries with ',')"
    case "did not find expected '-' indicator":
      return "align the list items"
    case "found undefined tag handle":
      return "remove the tag"
    default:
      return nil
    }
  }
}

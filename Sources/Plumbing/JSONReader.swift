/// A JSON value as read: objects keep their members in file order (duplicates included, when the
/// reader lets them through), numbers keep their text so integers are exact and a non-integer can
/// be named in a message as it was written.
public indirect enum ParsedJSON: Sendable, Equatable {
  case object([Member])
  case array([ParsedJSON])
  case string(String)
  case number(String, isInteger: Bool)
  case bool(Bool)
  case null

  /// One `"key": value` pair of an object.
  public struct Member: Sendable, Equatable {
    public var key: String
    public var value: ParsedJSON

    public init(key: String, value: ParsedJSON) {
      self.key = key
      self.value = value
    }
  }

  /// "an object", "a string", …, for messages.
  public var kind: String {
    switch self {
    case .object: "an object"
    case .array: "an array"
    case .string: "a string"
    case .number: "a number"
    case .bool: "a boolean"
    case .null: "null"
    }
  }

  /// The value the writer would have written this from: the last of duplicate keys wins, an
  /// integer that fits `Int` is an integer, any other number a `Double`.
  public var value: JSONValue {
    switch self {
    case .object(let members):
      var object: [String: JSONValue] = [:]
      for member in members { object[member.key] = member.value.value }
      return .object(object)
    case .array(let elements): return .array(elements.map(\.value))
    case .string(let text): return .string(text)
    case .number(let text, let isInteger):
      if isInteger, let integer = Int(text) { return .integer(integer) }
      return .number(Double(text) ?? .nan)
    case .bool(let flag): return .bool(flag)
    case .null: return .null
    }
  }
}

/// Why bytes are not the JSON asked for, and the byte offset (from the start of the buffer the
/// reader was given) where reading stopped.
public struct JSONSyntaxError: Error, Sendable, Equatable {
  public var offset: Int
  public var problem: String

  public init(offset: Int, problem: String) {
    self.offset = offset
    self.problem = problem
  }
}

/// A strict RFC 8259 JSON reader over UTF-8 bytes, the one every file format of the package
/// reads JSON with (safetensors headers, JSON Lines tables).
///
/// Hand-written rather than `JSONSerialization` so that integers are exact, duplicate keys can
/// be refused, nesting depth is bounded (no stack overflow on hostile input) and every failure
/// carries a byte offset.
public struct JSONReader {
  /// What the reader accepts beyond the grammar.
  public struct Options: Sendable {
    /// Deeper nesting is refused rather than risking the stack.
    public var maximumDepth: Int
    /// Whether an object may repeat a key (the members keep both; the last one wins in `value`).
    public var allowsDuplicateKeys: Bool
    /// What the input is called in "found the end of …" ("the header", "the line").
    public var inputName: String

    public init(maximumDepth: Int = 128, allowsDuplicateKeys: Bool = false, inputName: String) {
      self.maximumDepth = maximumDepth
      self.allowsDuplicateKeys = allowsDuplicateKeys
      self.inputName = inputName
    }
  }

  private let bytes: UnsafeRawBufferPointer
  private let end: Int
  private let options: Options
  private var position: Int
  private var depth = 0

  private init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>, options: Options) {
    self.bytes = bytes
    self.end = range.upperBound
    self.position = range.lowerBound
    self.options = options
  }

  /// The one value `bytes` hold, with nothing but whitespace around it.
  public static func parse(
    _ bytes: UnsafeRawBufferPointer, options: Options
  ) throws(JSONSyntaxError) -> ParsedJSON {
    let (value, valueEnd) = try parseValue(in: bytes, range: 0..<bytes.count, options: options)
    var reader = JSONReader(bytes, range: valueEnd..<bytes.count, options: options)
    reader.skipWhitespace()
    guard reader.position == bytes.count else {
      throw reader.failure("unexpected \(reader.describeCurrent()) after the JSON value")
    }
    return value
  }

  /// The value at the start of `range` (after whitespace) and the offset just past it; what
  /// follows is the caller's to check.
  public static func parseValue(
    in bytes: UnsafeRawBufferPointer, range: Range<Int>, options: Options
  ) throws(JSONSyntaxError) -> (value: ParsedJSON, end: Int) {
    var reader = JSONReader(bytes, range: range, options: options)
    reader.skipWhitespace()
    let value = try reader.parseValue()
    return (value, reader.position)
  }

  /// What a value starting with `byte` would be ("an object", "a number", …), for refusing the
  /// wrong kind before reading it; "nothing" at the end of the input.
  public static func kind(ofValueStartingWith byte: UInt8?) -> String {
    guard let byte else { return "nothing" }
    switch byte {
    case UInt8(ascii: "{"): return "an object"
    case UInt8(ascii: "["): return "an array"
    case UInt8(ascii: "\""): return "a string"
    case UInt8(ascii: "t"), UInt8(ascii: "f"): return "a boolean"
    case UInt8(ascii: "n"): return "null"
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return "a number"
    default: return "text that is not JSON"
    }
  }

  /// A byte as a reader would want to see it in a message.
  public static func describe(byte: UInt8) -> String {
    (0x21...0x7E).contains(byte)
      ? "'\(Character(Unicode.Scalar(byte)))'"
      : "byte 0x" + String(byte, radix: 16, uppercase: true)
  }

  private var current: UInt8? { position < end ? bytes[position] : nil }

  private func failure(_ problem: String, at offset: Int? = nil) -> JSONSyntaxError {
    JSONSyntaxError(offset: offset ?? position, problem: problem)
  }

  private func describeCurrent() -> String {
    current.map { Self.describe(byte: $0) } ?? "the end of \(options.inputName)"
  }

  private mutating func skipWhitespace() {
    while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
      position += 1
    }
  }

  private mutating func parseValue() throws(JSONSyntaxError) -> ParsedJSON {
    guard let byte = current else {
      throw failure("expected a value, found the end of \(options.inputName)")
    }
    switch byte {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t") where parseLiteral("true"): return .bool(true)
    case UInt8(ascii: "f") where parseLiteral("false"): return .bool(false)
    case UInt8(ascii: "n") where parseLiteral("null"): return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
    default:
      throw failure(
        "expected a value (string, number, object, array, true, false or null), found "
          + describeCurrent())
    }
  }

  private mutating func enterContainer() throws(JSONSyntaxError) {
    depth += 1
    guard depth <= options.maximumDepth else {
      throw failure("nesting deeper than \(options.maximumDepth) levels")
    }
    position += 1
  }

  private mutating func parseObject() throws(JSONSyntaxError) -> ParsedJSON {
    try enterContainer()
    defer { depth -= 1 }
    var members: [ParsedJSON.Member] = []
    var keys = Set<String>()
    skipWhitespace()
    if current == UInt8(ascii: "}") {
      position += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard current == UInt8(ascii: "\"") else {
        throw failure("expected a field name in double quotes, found \(describeCurrent())")
      }
      let keyOffset = position
      let key = try parseString()
      guard options.allowsDuplicateKeys || keys.insert(key).inserted else {
        throw failure("duplicate key \"\(key)\"", at: keyOffset)
      }
      skipWhitespace()
      guard current == UInt8(ascii: ":") else {
        throw failure("expected ':' after the field name, found \(describeCurrent())")
      }
      position += 1
      skipWhitespace()
      members.append(ParsedJSON.Member(key: key, value: try parseValue()))
      skipWhitespace()
      switch current {
      case UInt8(ascii: ","): position += 1
      case UInt8(ascii: "}"):
        position += 1
        return .object(members)
      default: throw failure("expected ',' or '}' in the object, found \(describeCurrent())")
      }
    }
  }

  private mutating func parseArray() throws(JSONSyntaxError) -> ParsedJSON {
    try enterContainer()
    defer { depth -= 1 }
    var elements: [ParsedJSON] = []
    skipWhitespace()
    if current == UInt8(ascii: "]") {
      position += 1
      return .array(elements)
    }
    while true {
      skipWhitespace()
      elements.append(try parseValue())
      skipWhitespace()
      switch current {
      case UInt8(ascii: ","): position += 1
      case UInt8(ascii: "]"):
        position += 1
        return .array(elements)
      default: throw failure("expected ',' or ']' in the array, found \(describeCurrent())")
      }
    }
  }

  /// Consumes `literal` when it is next; false (nothing consumed) when it is not.
  private mutating func parseLiteral(_ literal: StaticString) -> Bool {
    let text = UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
    guard end - position >= text.count,
      bytes[position..<(position + text.count)].elementsEqual(text)
    else { return false }
    position += text.count
    return true
  }

  private mutating func parseNumber() throws(JSONSyntaxError) -> ParsedJSON {
    let start = position
    var isInteger = true
    func isDigit(_ byte: UInt8?) -> Bool {
      byte.map { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ?? false
    }
    if current == UInt8(ascii: "-") { position += 1 }
    guard isDigit(current) else { throw failure("expected a digit, found \(describeCurrent())") }
    if current == UInt8(ascii: "0") {
      position += 1
      if isDigit(current) { throw failure("a number has a leading zero") }
    } else {
      while isDigit(current) { position += 1 }
    }
    if current == UInt8(ascii: ".") {
      isInteger = false
      position += 1
      guard isDigit(current) else {
        throw failure("expected a digit after '.', found \(describeCurrent())")
      }
      while isDigit(current) { position += 1 }
    }
    if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
      isInteger = false
      position += 1
      if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
      guard isDigit(current) else {
        throw failure("expected an exponent digit, found \(describeCurrent())")
      }
      while isDigit(current) { position += 1 }
    }
    let text = String(
      decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    return .number(text, isInteger: isInteger)
  }

  private mutating func parseString() throws(JSONSyntaxError) -> String {
    let start = position
    position += 1
    var utf8: [UInt8] = []
    while true {
      guard let byte = current else {
        throw failure("a string is not closed before the end of \(options.inputName)", at: start)
      }
      switch byte {
      case UInt8(ascii: "\""):
        position += 1
        return String(decoding: utf8, as: UTF8.self)
      case UInt8(ascii: "\\"):
        let escapeOffset = position
        position += 1
        guard let escaped = current else {
          throw failure(
            "a string is not closed before the end of \(options.inputName)", at: start)
        }
        position += 1
        switch escaped {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escaped)
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
          let scalar = try parseUnicodeEscape(startingAt: escapeOffset)
          UTF8.encode(scalar) { utf8.append($0) }
        default:
          throw failure(
            "invalid escape: backslash followed by \(Self.describe(byte: escaped)) is an "
              + "unknown escape", at: escapeOffset)
        }
      case 0x00..<0x20:
        throw failure(
          "unescaped control character \(Self.describe(byte: byte)) in a string; escape it "
            + "(\\n, \\t, \\u0001)")
      default:
        utf8.append(byte)
        position += 1
      }
    }
  }

  /// The scalar of `\uXXXX` (the `\u` already consumed), joining a UTF-16 surrogate pair.
  private mutating func parseUnicodeEscape(
    startingAt offset: Int
  ) throws(JSONSyntaxError) -> Unicode.Scalar {
    let first = try parseHexQuad()
    let hex = String(first, radix: 16)
    var value = first
    if (0xD800...0xDBFF).contains(first) {
      let unpaired = "unpaired surrogate \\u\(hex): a high surrogate without its low surrogate"
      guard end - position >= 2, bytes[position] == UInt8(ascii: "\\"),
        bytes[position + 1] == UInt8(ascii: "u")
      else { throw failure(unpaired, at: offset) }
      position += 2
      let second = try parseHexQuad()
      guard (0xDC00...0xDFFF).contains(second) else { throw failure(unpaired, at: offset) }
      value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
    } else if (0xDC00...0xDFFF).contains(first) {
      throw failure("unpaired surrogate \\u\(hex): a lone low surrogate", at: offset)
    }
    guard let scalar = Unicode.Scalar(value) else {
      throw failure("invalid code point in \\u escape", at: offset)
    }
    return scalar
  }

  private mutating func parseHexQuad() throws(JSONSyntaxError) -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard let byte = current, let digit = Self.hexValue(byte) else {
        throw failure("expected 4 hex digits after \\u, found \(describeCurrent())")
      }
      value = value << 4 | digit
      position += 1
    }
    return value
  }

  private static func hexValue(_ byte: UInt8) -> UInt32? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
  }
}

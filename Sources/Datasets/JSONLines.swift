/// A JSON value of a field the reader asked for; other fields are only validated and skipped.
enum JSONField {
  case string(String)
  /// An integer literal, as written (JSON has no leading zeros or "+", so this is its decimal
  /// form).
  case integer(String)
  /// Anything else, described for the error ("a number with a fraction", "an array", …).
  case other(String)
}

/// A JSON syntax error at a byte offset within a line.
struct JSONSyntaxError: Error {
  var offset: Int
  var problem: String
}

/// A recursive-descent JSON scanner over one line's bytes (RFC 8259), decoding only the strings
/// and numbers that are asked for.
struct JSONLineScanner {
  let bytes: UnsafeBufferPointer<UInt8>
  let end: Int
  var index: Int

  /// Deeper nesting than this is refused rather than risking the stack.
  static let maximumDepth = 512

  init(_ bytes: UnsafeBufferPointer<UInt8>, start: Int, end: Int) {
    self.bytes = bytes
    self.end = end
    index = start
  }

  private func fail(_ problem: String) -> JSONSyntaxError {
    JSONSyntaxError(offset: index, problem: problem)
  }

  private var found: String {
    guard index < end else { return "the end of the line" }
    let byte = bytes[index]
    return byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "a byte"
  }

  mutating func skipWhitespace() {
    while index < end {
      switch bytes[index] {
      case 0x20, 0x09, 0x0A, 0x0D: index += 1
      default: return
      }
    }
  }

  var atEnd: Bool { index >= end }

  /// What the value at `index` is, for "expected an object, found …".
  var kindAhead: String {
    guard index < end else { return "nothing" }
    switch bytes[index] {
    case UInt8(ascii: "{"): return "an object"
    case UInt8(ascii: "["): return "an array"
    case UInt8(ascii: "\""): return "a string"
    case UInt8(ascii: "t"), UInt8(ascii: "f"): return "a boolean"
    case UInt8(ascii: "n"): return "null"
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return "a number"
    default: return "text that is not JSON"
    }
  }

  private mutating func expect(_ byte: UInt8, _ what: String) throws(JSONSyntaxError) {
    guard index < end && bytes[index] == byte else {
      throw fail("expected \(what), found \(found)")
    }
    index += 1
  }

  /// Scans an object's members, calling `member` with each decoded key; `member` must consume
  /// the value (with `field()` or `skipValue`).
  mutating func scanObject(
    depth: Int, member: (String, inout JSONLineScanner) throws(JSONSyntaxError) -> Void
  ) throws(JSONSyntaxError) {
    guard depth < Self.maximumDepth else {
      throw fail("nesting deeper than \(Self.maximumDepth) levels")
    }
    try expect(UInt8(ascii: "{"), "'{'")
    skipWhitespace()
    if index < end && bytes[index] == UInt8(ascii: "}") {
      index += 1
      return
    }
    while true {
      skipWhitespace()
      guard index < end && bytes[index] == UInt8(ascii: "\"") else {
        throw fail("expected a field name in double quotes, found \(found)")
      }
      let key = try string()
      skipWhitespace()
      try expect(UInt8(ascii: ":"), "':' after the field name")
      skipWhitespace()
      try member(key, &self)
      skipWhitespace()
      guard index < end else { throw fail("expected ',' or '}' in the object, found \(found)") }
      if bytes[index] == UInt8(ascii: ",") {
        index += 1
        continue
      }
      try expect(UInt8(ascii: "}"), "',' or '}' in the object")
      return
    }
  }

  /// Skips any value, checking its syntax.
  mutating func skipValue(depth: Int) throws(JSONSyntaxError) {
    guard index < end else { throw fail("expected a value, found the end of the line") }
    switch bytes[index] {
    case UInt8(ascii: "{"):
      try scanObject(depth: depth + 1) { _, scanner throws(JSONSyntaxError) in
        try scanner.skipValue(depth: depth + 1)
      }
    case UInt8(ascii: "["):
      guard depth + 1 < Self.maximumDepth else {
        throw fail("nesting deeper than \(Self.maximumDepth) levels")
      }
      index += 1
      skipWhitespace()
      if index < end && bytes[index] == UInt8(ascii: "]") {
        index += 1
        return
      }
      while true {
        skipWhitespace()
        try skipValue(depth: depth + 1)
        skipWhitespace()
        guard index < end else { throw fail("expected ',' or ']' in the array, found \(found)") }
        if bytes[index] == UInt8(ascii: ",") {
          index += 1
          continue
        }
        try expect(UInt8(ascii: "]"), "',' or ']' in the array")
        return
      }
    case UInt8(ascii: "\""):
      _ = try string()
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
      _ = try number()
    default:
      try literal()
    }
  }

  /// Decodes the value of a requested field.
  mutating func field(depth: Int) throws(JSONSyntaxError) -> JSONField {
    guard index < end else { throw fail("expected a value, found the end of the line") }
    switch bytes[index] {
    case UInt8(ascii: "\""):
      return .string(try string())
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
      let (text, isInteger) = try number()
      return isInteger ? .integer(text) : .other("the non-integer number \(text)")
    default:
      let kind = kindAhead
      try skipValue(depth: depth)
      return .other(kind)
    }
  }

  private mutating func literal() throws(JSONSyntaxError) {
    for word in ["true", "false", "null"] {
      let utf8 = Array(word.utf8)
      if index + utf8.count <= end
        && utf8.indices.allSatisfy({ bytes[index + $0] == utf8[$0] })
      {
        index += utf8.count
        return
      }
    }
    throw fail(
      "expected a value (string, number, object, array, true, false or null), found \(found)")
  }

  /// A number per RFC 8259's grammar; returns its text and whether it is an integer.
  private mutating func number() throws(JSONSyntaxError) -> (String, Bool) {
    let start = index
    let zero = UInt8(ascii: "0")
    let nine = UInt8(ascii: "9")
    func digits(_ scanner: inout JSONLineScanner) -> Int {
      let first = scanner.index
      while scanner.index < scanner.end && (zero...nine).contains(scanner.bytes[scanner.index]) {
        scanner.index += 1
      }
      return scanner.index - first
    }
    if bytes[index] == UInt8(ascii: "-") { index += 1 }
    guard index < end && (zero...nine).contains(bytes[index]) else {
      throw fail("expected a digit, found \(found)")
    }
    if bytes[index] == zero {
      index += 1
      if index < end && (zero...nine).contains(bytes[index]) {
        throw fail("a number has a leading zero")
      }
    } else {
      _ = digits(&self)
    }
    var isInteger = true
    if index < end && bytes[index] == UInt8(ascii: ".") {
      isInteger = false
      index += 1
      guard digits(&self) > 0 else { throw fail("expected a digit after '.', found \(found)") }
    }
    if index < end && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
      isInteger = false
      index += 1
      if index < end && (bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-")) {
        index += 1
      }
      guard digits(&self) > 0 else { throw fail("expected an exponent digit, found \(found)") }
    }
    let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    return (text, isInteger)
  }

  /// A string at `index` (the opening quote), with escapes decoded.
  mutating func string() throws(JSONSyntaxError) -> String {
    index += 1
    let start = index
    // Fast path: no escapes, one copy.
    while index < end {
      let byte = bytes[index]
      if byte == UInt8(ascii: "\"") {
        let text = String(
          decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        index += 1
        return text
      }
      if byte == UInt8(ascii: "\\") { break }
      if byte < 0x20 {
        throw fail("a control character inside a string; escape it (\\n, \\t, \\u0001)")
      }
      index += 1
    }
    var decoded = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
    while index < end {
      let byte = bytes[index]
      if byte == UInt8(ascii: "\"") {
        index += 1
        return String(decoding: decoded, as: UTF8.self)
      }
      if byte < 0x20 {
        throw fail("a control character inside a string; escape it (\\n, \\t, \\u0001)")
      }
      guard byte == UInt8(ascii: "\\") else {
        decoded.append(byte)
        index += 1
        continue
      }
      index += 1
      guard index < end else { break }
      let escape = bytes[index]
      index += 1
      switch escape {
      case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escape)
      case UInt8(ascii: "b"): decoded.append(0x08)
      case UInt8(ascii: "f"): decoded.append(0x0C)
      case UInt8(ascii: "n"): decoded.append(0x0A)
      case UInt8(ascii: "r"): decoded.append(0x0D)
      case UInt8(ascii: "t"): decoded.append(0x09)
      case UInt8(ascii: "u"):
        var value = try hexQuad()
        if (0xD800...0xDBFF).contains(value) {
          guard
            index + 1 < end && bytes[index] == UInt8(ascii: "\\")
              && bytes[index + 1] == UInt8(ascii: "u")
          else { throw fail("a \\u escape of a high surrogate without its low surrogate") }
          index += 2
          let low = try hexQuad()
          guard (0xDC00...0xDFFF).contains(low) else {
            throw fail("a \\u escape of a high surrogate without its low surrogate")
          }
          value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(value) {
          throw fail("a \\u escape of a lone low surrogate")
        }
        // Surrogates are excluded above, so the value is a scalar.
        if let scalar = Unicode.Scalar(value) { UTF8.encode(scalar) { decoded.append($0) } }
      default:
        index -= 1
        throw fail("unknown escape: backslash followed by \(found) in a string")
      }
    }
    throw fail("a string is not closed before the end of the line")
  }

  private mutating func hexQuad() throws(JSONSyntaxError) -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard index < end else { throw fail("expected 4 hex digits after \\u") }
      let byte = bytes[index]
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
      default: throw fail("expected 4 hex digits after \\u, found \(found)")
      }
      value = value << 4 | UInt32(digit)
      index += 1
    }
    return value
  }
}

/// Reads JSON Lines: one object per line, blank lines skipped.
func readJSONLines(
  _ bytes: UnsafeBufferPointer<UInt8>, columns: RequestedColumns, file: String
) throws(DatasetError) -> RawTable {
  var table = RawTable()
  if columns.group != nil { table.groups = [] }
  var lineStart = 0
  var line = 0
  var sawContent = false
  while lineStart < bytes.count {
    line += 1
    var lineEnd = lineStart
    while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
    defer { lineStart = lineEnd + 1 }
    var scanner = JSONLineScanner(bytes, start: lineStart, end: lineEnd)
    scanner.skipWhitespace()
    if scanner.atEnd { continue }
    sawContent = true

    var text: JSONField?
    var label: JSONField?
    var group: JSONField?
    var keys: [String] = []
    do throws(JSONSyntaxError) {
      guard scanner.kindAhead == "an object" else {
        throw JSONSyntaxError(
          offset: scanner.index, problem: "the line holds \(scanner.kindAhead), not a JSON object")
      }
      try scanner.scanObject(depth: 0) { key, scanner throws(JSONSyntaxError) in
        keys.append(key)
        // Later duplicates win, as in most JSON readers.
        if key == columns.text {
          text = try scanner.field(depth: 1)
          if key == columns.label { label = text }
          if key == columns.group { group = text }
        } else if key == columns.label {
          label = try scanner.field(depth: 1)
          if key == columns.group { group = label }
        } else if key == columns.group {
          group = try scanner.field(depth: 1)
        } else {
          try scanner.skipValue(depth: 1)
        }
      }
      scanner.skipWhitespace()
      guard scanner.atEnd else {
        throw JSONSyntaxError(
          offset: scanner.index, problem: "text follows the JSON object on the same line")
      }
    } catch {
      throw DatasetError(
        file: file, location: "line \(line)",
        problem: "invalid JSON at column \(error.offset - lineStart + 1): \(error.problem)",
        fix: "write one JSON object per line, like {\"\(columns.text)\": \"…\", "
          + "\"\(columns.label ?? "label")\": \"…\"}")
    }

    let place = HeaderPlace(line: line, file: file, kind: "field", container: "the object")
    let row = table.texts.count + 1
    func wrongType(_ name: String, _ found: String, expected: String) -> DatasetError {
      DatasetError(
        file: file, location: "line \(line)",
        problem: "field '\(name)' of row \(row) is \(found), expected \(expected)",
        fix: "write \(expected) there")
    }
    switch text {
    case nil: throw place.missing(columns.text, role: "text", in: keys)
    case .string(let value)?: table.texts.append(value)
    case .integer(let value)?:
      throw wrongType(columns.text, "the number \(value)", expected: "a string")
    case .other(let kind)?: throw wrongType(columns.text, kind, expected: "a string")
    }
    // With an optional label, the first object says whether the file has labels.
    if columns.label == nil || (columns.labelIsOptional && table.texts.count == 1 && label == nil) {
      table.hasLabels = false
    }
    if table.hasLabels, let labelName = columns.label {
      switch label {
      case nil: throw place.missing(labelName, role: "label", in: keys)
      case .string(let value)?, .integer(let value)?:
        guard !value.isEmpty else {
          throw DatasetError(
            file: file, location: "line \(line)",
            problem: "row \(row) has an empty label in field '\(labelName)'",
            fix: "fill in the label or remove the line")
        }
        table.labels.append(value)
      case .other(let kind)?:
        throw wrongType(labelName, kind, expected: "a string or an integer")
      }
    }
    if let groupName = columns.group {
      switch group {
      case nil: throw place.missing(groupName, role: "group_by", in: keys)
      case .string(let value)?, .integer(let value)?: table.groups?.append(value)
      case .other(let kind)?: throw wrongType(groupName, kind, expected: "a string or an integer")
      }
    }
    table.lines.append(line)
  }
  guard sawContent else {
    throw DatasetError(
      file: file, problem: "the file is empty",
      fix: "a JSON Lines table holds one object per line, like {\"\(columns.text)\": \"…\", "
        + "\"\(columns.label ?? "label")\": \"…\"}")
  }
  return table
}

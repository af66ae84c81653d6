import Plumbing

/// A field's value as the reader wants it: a string, an integer as written (JSON has no leading
/// zeros or "+", so the text is its decimal form), or anything else, described for the error
/// ("the non-integer number 1.5", "an array", …).
private enum JSONField {
  case string(String)
  case integer(String)
  case other(String)

  init(_ value: ParsedJSON) {
    switch value {
    case .string(let text): self = .string(text)
    case .number(let text, let isInteger):
      self = isInteger ? .integer(text) : .other("the non-integer number \(text)")
    default: self = .other(value.kind)
    }
  }
}

/// Nesting deeper than this is refused rather than risking the stack.
private let maximumDepth = 512

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
    var start = lineStart
    while start < lineEnd, [0x20, 0x09, 0x0D].contains(bytes[start]) { start += 1 }
    if start == lineEnd { continue }
    sawContent = true

    var text: JSONField?
    var label: JSONField?
    var group: JSONField?
    var keys: [String] = []
    do throws(JSONSyntaxError) {
      let kind = JSONReader.kind(ofValueStartingWith: bytes[start])
      guard kind == "an object" else {
        throw JSONSyntaxError(offset: start, problem: "the line holds \(kind), not a JSON object")
      }
      let options = JSONReader.Options(
        maximumDepth: maximumDepth, allowsDuplicateKeys: true, inputName: "the line")
      let (object, end) = try JSONReader.parseValue(
        in: UnsafeRawBufferPointer(bytes), range: start..<lineEnd, options: options)
      guard case .object(let members) = object else { preconditionFailure("checked above") }
      // Later duplicates win, as in most JSON readers.
      for member in members {
        keys.append(member.key)
        let field = JSONField(member.value)
        if member.key == columns.text { text = field }
        if member.key == columns.label { label = field }
        if member.key == columns.group { group = field }
      }
      var after = end
      while after < lineEnd, [0x20, 0x09, 0x0D].contains(bytes[after]) { after += 1 }
      guard after == lineEnd else {
        throw JSONSyntaxError(
          offset: after, problem: "text follows the JSON object on the same line")
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

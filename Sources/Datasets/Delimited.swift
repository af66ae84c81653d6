import Models
import Plumbing

/// One field of a delimited record: the byte range of its content (inside the quotes, when quoted).
struct FieldSpan {
  var start: Int
  var end: Int
  /// A quoted field with `""` inside: decoding must turn each pair into one quote.
  var hasEscapedQuotes: Bool
}

/// An RFC 4180 record scanner over raw bytes: fields separated by `delimiter`, records ended by
/// LF, CRLF or a lone CR, fields optionally quoted with `"` (`""` inside stands for one quote;
/// delimiters and line ends inside quotes are content). A quote inside an unquoted field is kept
/// as content, as most writers produce such files. Blank lines are skipped.
struct DelimitedScanner {
  let bytes: UnsafeBufferPointer<UInt8>
  let count: Int
  let delimiter: UInt8
  let file: String
  private(set) var index = 0
  /// The line `index` is on (1-based).
  private(set) var line = 1

  private static let quote = UInt8(ascii: "\"")
  private static let lineFeed = UInt8(ascii: "\n")
  private static let carriageReturn = UInt8(ascii: "\r")

  init(_ bytes: UnsafeBufferPointer<UInt8>, delimiter: UInt8, file: String) {
    self.bytes = bytes
    count = bytes.count
    self.delimiter = delimiter
    self.file = file
  }

  /// Consumes the line end at `index` (LF, CRLF or CR).
  private mutating func skipLineEnd() {
    if bytes[index] == Self.carriageReturn && index + 1 < count && bytes[index + 1] == Self.lineFeed
    {
      index += 2
    } else {
      index += 1
    }
    line += 1
  }

  /// Scans the next record into `fields`; returns the line it starts on, or nil at the end.
  mutating func nextRecord(into fields: inout [FieldSpan]) throws(DatasetError) -> Int? {
    fields.removeAll(keepingCapacity: true)
    while index < count && (bytes[index] == Self.lineFeed || bytes[index] == Self.carriageReturn) {
      skipLineEnd()
    }
    guard index < count else { return nil }
    let recordLine = line
    while true {
      if index < count && bytes[index] == Self.quote {
        try scanQuotedField(into: &fields)
      } else {
        let start = index
        while index < count {
          let byte = bytes[index]
          if byte == delimiter || byte == Self.lineFeed || byte == Self.carriageReturn { break }
          index += 1
        }
        fields.append(FieldSpan(start: start, end: index, hasEscapedQuotes: false))
      }
      guard index < count else { return recordLine }
      let byte = bytes[index]
      if byte == delimiter {
        index += 1
        continue
      }
      if byte == Self.lineFeed || byte == Self.carriageReturn {
        skipLineEnd()
        return recordLine
      }
      let shown = byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "a byte"
      throw DatasetError(
        file: file, location: "line \(line)",
        problem: "\(shown) follows the closing quote of field \(fields.count) of the record "
          + "starting on line \(recordLine)",
        fix: "write a quote inside a quoted field as two quotes (\"\"), and end the field "
          + "right after its closing quote")
    }
  }

  /// Scans a quoted field starting at the opening quote at `index`.
  private mutating func scanQuotedField(into fields: inout [FieldSpan]) throws(DatasetError) {
    let openingLine = line
    let openingOffset = index
    index += 1
    let start = index
    var escaped = false
    while index < count {
      let byte = bytes[index]
      if byte == Self.quote {
        if index + 1 < count && bytes[index + 1] == Self.quote {
          escaped = true
          index += 2
          continue
        }
        fields.append(FieldSpan(start: start, end: index, hasEscapedQuotes: escaped))
        index += 1
        return
      }
      if byte == Self.lineFeed {
        line += 1
      } else if byte == Self.carriageReturn
        && !(index + 1 < count && bytes[index + 1] == Self.lineFeed)
      {
        line += 1
      }
      index += 1
    }
    throw DatasetError(
      file: file, location: "line \(openingLine)",
      problem: "the quote opened here (byte offset \(openingOffset)) is never closed",
      fix: "close the quoted field with \"; a quote inside it is written as two quotes (\"\")")
  }

  /// The text of a field.
  func string(_ field: FieldSpan) -> String {
    let content = UnsafeBufferPointer(rebasing: bytes[field.start..<field.end])
    guard field.hasEscapedQuotes else { return String(decoding: content, as: UTF8.self) }
    var unescaped: [UInt8] = []
    unescaped.reserveCapacity(content.count)
    var index = 0
    while index < content.count {
      let byte = content[index]
      unescaped.append(byte)
      // Inside a quoted field every quote is doubled; keep one of each pair.
      index += byte == Self.quote ? 2 : 1
    }
    return String(decoding: unescaped, as: UTF8.self)
  }
}

/// Reads a CSV or TSV table: header row first, then one record per row.
func readDelimited(
  _ bytes: UnsafeBufferPointer<UInt8>, delimiter: UInt8, columns: RequestedColumns, file: String
) throws(DatasetError) -> RawTable {
  var scanner = DelimitedScanner(bytes, delimiter: delimiter, file: file)
  let formatName = delimiter == UInt8(ascii: "\t") ? "TSV" : "CSV"
  var fields: [FieldSpan] = []
  guard let headerLine = try scanner.nextRecord(into: &fields) else {
    throw DatasetError(
      file: file, problem: "the file is empty",
      fix: "a \(formatName) table starts with a header row naming its columns, "
        + "then one row per example")
  }
  let header = fields.map { scanner.string($0) }
  let place = HeaderPlace(line: headerLine, file: file, kind: "column", container: "the header")
  let textIndex = try place.index(of: columns.text, role: "text", in: header)
  // No label column asked for (unlabeled text), or an optional one the header lacks (prediction
  // input): the rows are read without labels.
  let labelIndex: Int? = try columns.label.flatMap { name throws(DatasetError) -> Int? in
    columns.labelIsOptional && !header.contains(name)
      ? nil : try place.index(of: name, role: "label", in: header)
  }
  let groupIndex = try columns.group.map { name throws(DatasetError) in
    try place.index(of: name, role: "group_by", in: header)
  }

  var table = RawTable()
  table.hasLabels = labelIndex != nil
  if groupIndex != nil { table.groups = [] }
  while let recordLine = try scanner.nextRecord(into: &fields) {
    let row = table.texts.count + 1
    guard fields.count == header.count else {
      let separator = delimiter == UInt8(ascii: "\t") ? "a tab" : "a comma"
      throw DatasetError(
        file: file, location: "line \(recordLine)",
        problem: "row \(row) has \(fields.count) field\(fields.count == 1 ? "" : "s"), expected "
          + "\(header.count) (the header's columns)",
        fix: "quote fields that contain \(separator) or a line break (\"like, this\"), "
          + "and give every row one value per column")
    }
    if let labelIndex {
      let label = scanner.string(fields[labelIndex])
      guard !label.isEmpty else {
        throw DatasetError(
          file: file, location: "line \(recordLine)",
          problem: "row \(row) has an empty label in column '\(columns.label ?? "")'",
          fix: "fill in the label or remove the row")
      }
      table.labels.append(label)
    }
    table.texts.append(scanner.string(fields[textIndex]))
    if let groupIndex { table.groups?.append(scanner.string(fields[groupIndex])) }
    table.lines.append(recordLine)
  }
  guard !table.texts.isEmpty else {
    throw DatasetError(
      file: file, location: "line \(headerLine)",
      problem: "the file has a header but no rows",
      fix: "add one row per example below the header")
  }
  return table
}

/// Finds requested names among a header's columns (or a JSON object's fields), with errors that
/// list what is there and suggest the closest name.
struct HeaderPlace {
  var line: Int
  var file: String
  /// "column" or "field".
  var kind: String
  /// "the header" or "the object".
  var container: String

  func index(of name: String, role: String, in names: [String]) throws(DatasetError) -> Int {
    let matches = names.indices.filter { names[$0] == name }
    if matches.count > 1 {
      throw DatasetError(
        file: file, location: "line \(line)",
        problem: "\(kind) '\(name)' (the \(role) \(kind)) appears \(matches.count) times in "
          + "\(container), at positions \(matches.map { String($0 + 1) }.joined(separator: ", "))",
        fix: "rename the duplicates so that '\(name)' is unambiguous")
    }
    if let only = matches.first { return only }
    throw missing(name, role: role, in: names)
  }

  func missing(_ name: String, role: String, in names: [String]) -> DatasetError {
    let suggestion = closestName(to: name, in: names)
    return DatasetError(
      file: file, location: "line \(line)",
      problem: "no \(kind) '\(name)' (the \(role) \(kind)) in \(container); "
        + "\(kind)s: \(names.isEmpty ? "none" : quotedList(names))",
      fix: suggestion.map { "did you mean '\($0)'?" }
        ?? "name one of the \(kind)s above as the \(role) \(kind)")
  }
}

import Models
import Plumbing

/// The layout of a text-classification table.
public enum TableFormat: String, Sendable {
  /// RFC 4180 comma-separated values with a header row.
  case csv
  /// Tab-separated values, quoted as in CSV, with a header row.
  case tsv
  /// One JSON object per line.
  case jsonl
}

/// Labelled texts as the trainer consumes them: parallel arrays, labels already class ids.
public struct LabeledTexts: Sendable {
  public var texts: [String]
  /// Class ids: indices into `labelNames`.
  public var labels: [Int32]
  /// The class names, index = class id.
  public var labelNames: [String]
  /// The group column's values (for grouped splits), when one was asked for.
  public var groups: [String]?

  public init(texts: [String], labels: [Int32], labelNames: [String], groups: [String]? = nil) {
    self.texts = texts
    self.labels = labels
    self.labelNames = labelNames
    self.groups = groups
  }

  public var count: Int { texts.count }
}

/// Texts to classify, with the labels the table gives (nil when it has no label column).
public struct TextRows: Sendable {
  public var texts: [String]
  /// The label column's values as written.
  public var labels: [String]?
  /// The line each row starts on (for messages about a row).
  public var lines: [Int]
}

/// Reads CSV, TSV and JSONL tables of labelled texts.
public enum TableReader {
  /// Reads the text, label (and optionally group) column of every row of `path`.
  ///
  /// The file must be UTF-8 (a leading byte-order mark is skipped). Empty texts are kept; a row
  /// without a label is an error.
  ///
  /// - Parameter labels: the label order (index = class id); nil = the sorted unique values
  ///   (numerically when every value is an integer, so "2" comes before "10"). A label not in
  ///   `labels` is an error naming the row and the value.
  public static func read(
    path: String, format: TableFormat, textColumn: String, labelColumn: String,
    groupColumn: String? = nil, labels: [String]? = nil
  ) throws(DatasetError) -> LabeledTexts {
    let columns = RequestedColumns(text: textColumn, label: labelColumn, group: groupColumn)
    let table = try rawTable(path: path, format: format, columns: columns)
    return try classify(table, labels: labels, columns: columns, file: path)
  }

  /// Reads the text (and optionally group) column of every row of `path`: unlabeled text, as
  /// distillation's teacher labels it. A label column is neither needed nor read.
  public static func readTexts(
    path: String, format: TableFormat, textColumn: String, groupColumn: String? = nil
  ) throws(DatasetError) -> (texts: [String], groups: [String]?) {
    let table = try rawTable(
      path: path, format: format,
      columns: RequestedColumns(text: textColumn, label: nil, group: groupColumn))
    return (table.texts, table.groups)
  }

  private static func rawTable(
    path: String, format: TableFormat, columns: RequestedColumns
  ) throws(DatasetError) -> RawTable {
    let buffer = try readFile(path, what: "the data file")
    // `bytes` points into `buffer`: keep it alive until the parse is done.
    defer { withExtendedLifetime(buffer) {} }
    var bytes = buffer.bytes
    var skipped = 0
    if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
      bytes = UnsafeBufferPointer(rebasing: bytes[3...])
      skipped = 3
    }
    try validateUTF8(bytes, skipped: skipped, file: path)
    switch format {
    case .csv:
      return try readDelimited(bytes, delimiter: UInt8(ascii: ","), columns: columns, file: path)
    case .tsv:
      return try readDelimited(bytes, delimiter: UInt8(ascii: "\t"), columns: columns, file: path)
    case .jsonl:
      return try readJSONLines(bytes, columns: columns, file: path)
    }
  }

  /// Reads the texts of `path` and, when the table has `labelColumn`, their labels as written:
  /// the input of a prediction, whose labels (if any) are names of the model's classes.
  ///
  /// - Parameter name: the file as messages call it (`<stdin>` for `/dev/stdin`).
  public static func readTexts(
    path: String, name: String? = nil, format: TableFormat, textColumn: String,
    labelColumn: String
  ) throws(DatasetError) -> TextRows {
    let shown = name ?? path
    do {
      let buffer = try readFile(path, what: "the input file")
      var bytes = buffer.bytes
      var skipped = 0
      if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF {
        bytes = UnsafeBufferPointer(rebasing: bytes[3...])
        skipped = 3
      }
      try validateUTF8(bytes, skipped: skipped, file: shown)
      let columns = RequestedColumns(
        text: textColumn, label: labelColumn, group: nil, labelIsOptional: true)
      let table: RawTable
      switch format {
      case .csv:
        table = try readDelimited(
          bytes, delimiter: UInt8(ascii: ","), columns: columns, file: shown)
      case .tsv:
        table = try readDelimited(
          bytes, delimiter: UInt8(ascii: "\t"), columns: columns, file: shown)
      case .jsonl:
        table = try readJSONLines(bytes, columns: columns, file: shown)
      }
      return TextRows(
        texts: table.texts, labels: table.hasLabels ? table.labels : nil, lines: table.lines)
    } catch {
      var renamed = error
      if renamed.file == path { renamed.file = shown }
      throw renamed
    }
  }

  /// Turns label strings into class ids, in the given order or the sorted default.
  private static func classify(
    _ table: RawTable, labels given: [String]?, columns: RequestedColumns, file: String
  ) throws(DatasetError) -> LabeledTexts {
    let names: [String]
    if let given {
      var seen = Set<String>()
      for name in given where !seen.insert(name).inserted {
        throw DatasetError(
          file: file, problem: "labels lists '\(name)' more than once",
          fix: "list each label once; its position is its class id")
      }
      names = given
    } else {
      names = sortedLabels(Set(table.labels))
    }
    var ids: [String: Int32] = [:]
    ids.reserveCapacity(names.count)
    for (index, name) in names.enumerated() { ids[name] = Int32(index) }

    var classIDs = [Int32](repeating: 0, count: table.labels.count)
    var used = Set<Int32>()
    for (row, label) in table.labels.enumerated() {
      guard let id = ids[label] else {
        let hint = closestName(to: label, in: names).map { " (did you mean '\($0)'?)" } ?? ""
        throw DatasetError(
          file: file, location: "line \(table.lines[row])",
          problem: "row \(row + 1) has label '\(label)', which is not in labels "
            + "[\(quotedList(names))]\(hint)",
          fix: "add '\(label)' to labels or correct the row")
      }
      classIDs[row] = id
      used.insert(id)
    }
    guard used.count >= 2 else {
      let only = used.first.map { " ('\(names[Int($0)])')" } ?? ""
      throw DatasetError(
        file: file,
        problem: "column '\(columns.label ?? "")' holds only one distinct label\(only) in "
          + "\(table.labels.count) rows; classification needs at least 2 classes",
        fix: "check that label names the class column")
    }
    return LabeledTexts(
      texts: table.texts, labels: classIDs, labelNames: names, groups: table.groups)
  }

  /// Integers in numeric order ("2" before "10"), anything else in string order.
  private static func sortedLabels(_ values: Set<String>) -> [String] {
    let numbers = values.map { Int($0) }
    if numbers.allSatisfy({ $0 != nil }) {
      return values.sorted { (Int($0) ?? 0, $0) < (Int($1) ?? 0, $1) }
    }
    return values.sorted()
  }
}

/// The column (or JSON field) names a read asks for.
struct RequestedColumns {
  var text: String
  /// nil: an unlabeled table (texts only).
  var label: String?
  var group: String?
  /// A table without the label column is read without labels (prediction input): CSV/TSV by
  /// the header, JSON Lines by the first object.
  var labelIsOptional = false
}

/// Rows as read, before labels become class ids.
struct RawTable {
  var texts: [String] = []
  /// Empty when the label column was optional and absent (`hasLabels` false).
  var labels: [String] = []
  var hasLabels = true
  var groups: [String]?
  /// The line each row starts on, for errors found after parsing.
  var lines: [Int] = []
}

import Foundation

/// Per-node parameter counts split by trainability: what `surgeon summary` prints.
///
/// It is computed from the nodes and the set of trained tensor names, the same set the
/// optimizer receives, so a printed count cannot disagree with what training updates.
public struct ParameterSummary: Sendable, Equatable {
  public struct Row: Sendable, Equatable {
    public var name: String
    public var type: String
    public var role: String
    public var parameters: Int
    public var trainable: Int
    public var nonTrainable: Int { parameters - trainable }
  }

  public var title: String
  public var rows: [Row]
  /// The parameter count once every wrapped layer is compressed (equal to `total` without
  /// wrapped layers).
  public var compressedTotal: Int

  public var total: Int { rows.reduce(0) { $0 + $1.parameters } }
  public var trainable: Int { rows.reduce(0) { $0 + $1.trainable } }
  public var nonTrainable: Int { total - trainable }

  /// `trainable` nil: every parameter is trained (full fine-tuning).
  public init(title: String, nodes: [GraphNode], trainable: Set<String>? = nil) {
    self.title = title
    rows = nodes.map { node in
      let trained = node.parameters.filter { trainable?.contains($0.name) ?? true }
      return Row(
        name: node.name, type: node.kind.rawValue, role: node.role.rawValue,
        parameters: node.parameterCount, trainable: trained.reduce(0) { $0 + $1.count })
    }
    compressedTotal = rows.reduce(0) { $0 + $1.parameters }
  }

  /// A Keras-`summary()`-style table.
  public func table() -> String {
    let headers = ["Node (type)", "Role", "Params", "Trainable", "Non-trainable"]
    let cells = rows.map { row in
      [
        "\(row.name) (\(row.type))", row.role, grouped(row.parameters), grouped(row.trainable),
        grouped(row.nonTrainable),
      ]
    }
    var widths = headers.map(\.count)
    for line in cells {
      for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) }
    }
    func line(_ left: String, _ middle: String, _ right: String) -> String {
      left + widths.map { String(repeating: "─", count: $0 + 2) }.joined(separator: middle) + right
    }
    func format(_ values: [String]) -> String {
      let padded = values.enumerated().map { index, value in
        let gap = String(repeating: " ", count: widths[index] - value.count)
        return index < 2 ? value + gap : gap + value
      }
      return "│ " + padded.joined(separator: " │ ") + " │"
    }
    var output = ["Model: \"\(title)\"", line("┌", "┬", "┐"), format(headers), line("├", "┼", "┤")]
    output += cells.map(format)
    output.append(line("└", "┴", "┘"))
    output.append(" Total params: \(grouped(total)) (\(byteSize(total)))")
    output.append(" Trainable params: \(grouped(trainable)) (\(byteSize(trainable)))")
    output.append(" Non-trainable params: \(grouped(nonTrainable)) (\(byteSize(nonTrainable)))")
    output.append(
      " Params after compression: \(grouped(compressedTotal)) (\(byteSize(compressedTotal)))")
    return output.joined(separator: "\n")
  }

  /// MANIFEST.md's JSON: totals, one object per node, and the compressed total.
  public func json() throws -> String {
    struct Node: Encodable {
      var name, type, role: String
      var params, trainable, nonTrainable: Int
      enum CodingKeys: String, CodingKey {
        case name, type, role, params, trainable
        case nonTrainable = "non_trainable"
      }
    }
    struct Document: Encodable {
      var total, trainable, nonTrainable: Int
      var nodes: [Node]
      var compressedTotal: Int
      enum CodingKeys: String, CodingKey {
        case total, trainable, nodes
        case nonTrainable = "non_trainable"
        case compressedTotal = "compressed_total"
      }
    }
    let document = Document(
      total: total, trainable: trainable, nonTrainable: nonTrainable,
      nodes: rows.map {
        Node(
          name: $0.name, type: $0.type, role: $0.role, params: $0.parameters,
          trainable: $0.trainable, nonTrainable: $0.nonTrainable)
      }, compressedTotal: compressedTotal)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return String(decoding: try encoder.encode(document), as: UTF8.self)
  }
}

/// `1234567` → `"1,234,567"`.
func grouped(_ value: Int) -> String {
  let digits = String(value.magnitude)
  var result = ""
  for (index, digit) in digits.enumerated() {
    if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
    result.append(digit)
  }
  return value < 0 ? "-" + result : result
}

/// The fp32 size of `parameters`, in binary units as Keras prints it.
func byteSize(_ parameters: Int) -> String {
  let bytes = Double(parameters * 4)
  let units = ["B", "KB", "MB", "GB"]
  var value = bytes
  var unit = 0
  while value >= 1024 && unit < units.count - 1 {
    value /= 1024
    unit += 1
  }
  return String(format: "%.2f", value) + " " + units[unit]
}

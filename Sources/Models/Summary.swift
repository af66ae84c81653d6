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
    /// The wrapped layer's cost before and after compression (nil: not wrapped).
    public var adapter: AdapterInfo?
    public var nonTrainable: Int { parameters - trainable }
    /// The row's parameters once compressed: a wrapped layer's `W`, `b` and adapter become the
    /// exported factors.
    public var compressedParameters: Int {
      guard let adapter else { return parameters }
      return parameters - adapter.baseParameters - adapter.adapterParameters
        + adapter.compressedParameters
    }
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
        parameters: node.parameterCount, trainable: trained.reduce(0) { $0 + $1.count },
        adapter: node.adapter)
    }
    compressedTotal = rows.reduce(0) { $0 + $1.compressedParameters }
  }

  /// One row per group of nodes sharing their first `depth` name segments (a numeric segment
  /// counts with the one before it: `encoder.layer.0` is two segments).
  public func groupedByBlock(depth: Int) -> ParameterSummary {
    var result = self
    var order: [String] = []
    var groups: [String: Row] = [:]
    for row in rows {
      var segments: [String] = []
      for part in row.name.split(separator: ".") {
        if let last = segments.last, part.allSatisfy(\.isNumber) {
          segments[segments.count - 1] = last + "." + part
        } else {
          segments.append(String(part))
        }
      }
      let key = segments.prefix(max(1, depth)).joined(separator: ".")
      if var group = groups[key] {
        group.parameters += row.parameters
        group.trainable += row.trainable
        if let info = row.adapter {
          var merged =
            group.adapter
            ?? AdapterInfo(
              rank: info.rank, form: info.form, baseParameters: 0, adapterParameters: 0,
              compressedParameters: 0, multiplyAddsBefore: 0, multiplyAddsAfter: 0)
          merged.baseParameters += info.baseParameters
          merged.adapterParameters += info.adapterParameters
          merged.compressedParameters += info.compressedParameters
          merged.multiplyAddsBefore += info.multiplyAddsBefore
          merged.multiplyAddsAfter += info.multiplyAddsAfter
          group.adapter = merged
        }
        group.type = group.type == row.type ? row.type : "Block"
        group.role = group.role == row.role ? row.role : "—"
        groups[key] = group
      } else {
        order.append(key)
        var group = row
        group.name = key
        groups[key] = group
      }
    }
    result.rows = order.compactMap { groups[$0] }
    return result
  }

  /// A Keras-`summary()`-style table.
  public func table() -> String {
    let wrapped = rows.contains { $0.adapter != nil }
    var headers = ["Node (type)", "Role", "Params", "Trainable", "Non-trainable"]
    if wrapped { headers += ["Params before → after", "MACs/token before → after"] }
    let cells = rows.map { row in
      let type = row.adapter.map { "\(row.type) + LoRA r\($0.rank)" } ?? row.type
      var line = [
        "\(row.name) (\(type))", row.role, grouped(row.parameters), grouped(row.trainable),
        grouped(row.nonTrainable),
      ]
      if wrapped {
        if let info = row.adapter {
          line += [
            "\(grouped(info.baseParameters)) → \(grouped(info.compressedParameters))",
            "\(grouped(info.multiplyAddsBefore)) → \(grouped(info.multiplyAddsAfter))",
          ]
        } else {
          line += ["", ""]
        }
      }
      return line
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

  /// docs/manifest.md's JSON: totals, one object per node, and the compressed total.
  public func json() throws -> String {
    struct Node: Encodable {
      var name, type, role: String
      var params, trainable, nonTrainable: Int
      var rank: Int?
      var compressedParams, macsBefore, macsAfter: Int?
      enum CodingKeys: String, CodingKey {
        case name, type, role, params, trainable, rank
        case nonTrainable = "non_trainable"
        case compressedParams = "compressed_params"
        case macsBefore = "macs_before"
        case macsAfter = "macs_after"
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
          trainable: $0.trainable, nonTrainable: $0.nonTrainable, rank: $0.adapter?.rank,
          compressedParams: $0.adapter == nil ? nil : $0.compressedParameters,
          macsBefore: $0.adapter?.multiplyAddsBefore, macsAfter: $0.adapter?.multiplyAddsAfter)
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

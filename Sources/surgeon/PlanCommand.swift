import Foundation
import Manifest
import Models
import Surgery

enum PlanCommand: Command {
  static let usage = """
    Usage: surgeon plan MANIFEST [--json] [--lock]

    What the manifest's surgery does, resolved against the model without reading a weight
    (config.json and the safetensors header, or a preset): every rule with its line and the
    nodes it selected; every node with the action that won, the rule that decided it and the
    earlier rules it overrode, and its adapter rank (a budgeted rank is decided at apply from
    the weights); the counts summary prints. When NAME.lock.json exists beside the manifest,
    the plan is compared with it.

    Options:
      --json   {"rules": [{index, line, kind, matched}], "nodes": [{name, action, rule,
               overrides, rank}], "counts": {...}}
      --lock   write NAME.lock.json beside the manifest (format version, model fingerprint,
               every node's action, rank and shapes, the counts); validate and apply then fail
               when the plan drifts from it

    Exit status: 0 planned, 1 an invalid manifest, a broken expect: or a drifted lock.
    """

  static let budgetedRank = "decided at apply from the weights"

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: [], flags: ["json", "lock"])
    guard parsed.positionals.count == 1 else {
      throw UsageError(message: "give exactly one MANIFEST")
    }
    let path = parsed.positionals[0]
    let (manifest, decodeDiagnostics) = ManifestDecoder.decode(contentsOf: path)
    var diagnostics = decodeDiagnostics
    var checked: (rewrite: Rewrite?, diagnostics: [Diagnostic]) = (nil, [])
    var origin = ""
    if let manifest {
      let producers = ManifestCheck.producers(near: [path])
      checked = ManifestCheck.rewrite(manifest, producers: producers)
      diagnostics += checked.diagnostics
      origin = describeOrigin(manifest)
    }
    guard let manifest, let rewrite = checked.rewrite,
      !diagnostics.contains(where: { $0.severity == .error })
    else {
      printError(render(diagnostics, as: .text))
      throw ExitStatus(code: 1)
    }
    diagnostics += ManifestCheck.review(
      manifest, rewrite, ranksDecided: false, lock: parsed.flag("lock") ? .update : .check)
    print(
      parsed.flag("json") ? try json(rewrite) : text(rewrite, manifest: manifest, origin: origin))
    if !diagnostics.isEmpty { printError(render(diagnostics, as: .text)) }
    if diagnostics.contains(where: { $0.severity == .error }) { throw ExitStatus(code: 1) }
    if parsed.flag("lock") {
      printError("wrote \(ScopeLock.path(forManifest: path))")
    }
  }

  private static func describeOrigin(_ manifest: Manifest) -> String {
    switch manifest.model.source.value {
    case .checkpoint(let directory):
      return "\(directory) (config.json and the safetensors header; no weights read)"
    case .preset(let name, _): return "preset \(name) (shapes only)"
    }
  }

  private static func rankText(_ action: NodeAction) -> String {
    guard let rank = action.rank else { return "-" }
    return action.budgeted ? "≤\(rank), \(budgetedRank)" : String(rank)
  }

  static func text(_ rewrite: Rewrite, manifest: Manifest, origin: String) -> String {
    var lines = ["plan of \(manifest.file): model \(origin)", "", "rules:"]
    for rule in rewrite.rules {
      lines.append(
        "  \(rule.index). \(rule.kind.rawValue) (line \(rule.location.line)): \(rule.matched.count) node\(rule.matched.count == 1 ? "" : "s")"
      )
      var line = "      "
      for (offset, name) in rule.matched.enumerated() {
        let item = name + (offset == rule.matched.count - 1 ? "" : ", ")
        if line.count + item.count > 100 && line.count > 6 {
          lines.append(String(line.dropLast()))
          line = "      "
        }
        line += item
      }
      if line.count > 6 { lines.append(line) }
    }
    if rewrite.rules.isEmpty { lines.append("  (none: the defaults decide every node)") }
    lines += ["", "nodes:"]
    let rows: [[String]] =
      [["node", "action", "rank", "rule", "overrides"]]
      + rewrite.actions.map { action in
        [
          action.node, action.kind.rawValue, rankText(action),
          action.rule.map { "\($0) (line \(rewrite.rules[$0 - 1].location.line))" } ?? "default",
          action.overrides.isEmpty
            ? "-" : action.overrides.map(String.init).joined(separator: ", "),
        ]
      }
    let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
      let cells = row.enumerated().map { column, cell in
        column == 4 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
      }
      lines.append("  " + cells.joined(separator: "  "))
    }
    let counts = PlanCounts(rewrite)
    lines += [
      "",
      "counts: total \(PlanReview.grouped(counts.total)), trainable \(PlanReview.grouped(counts.trainable)), non-trainable \(PlanReview.grouped(counts.total - counts.trainable)), compressed total \(PlanReview.grouped(counts.compressedTotal)), wrapped \(counts.wrapped) node\(counts.wrapped == 1 ? "" : "s"), coverage \(String(format: "%.4f", counts.coverage)) of the Linear/Conv2d parameters",
    ]
    if rewrite.actions.contains(where: \.budgeted) {
      lines.append(
        "(budgeted ranks are counted at their cap here; apply decides them from the weights)")
    }
    return lines.joined(separator: "\n")
  }

  static func json(_ rewrite: Rewrite) throws -> String {
    let rules: [[String: Any]] = rewrite.rules.map {
      [
        "index": $0.index, "line": $0.location.line, "kind": $0.kind.rawValue,
        "matched": $0.matched,
      ]
    }
    let nodes: [[String: Any]] = rewrite.actions.map { action in
      var node: [String: Any] = [
        "name": action.node, "action": action.kind.rawValue,
        "rule": action.rule.map { $0 as Any } ?? NSNull(), "overrides": action.overrides,
      ]
      if let rank = action.rank {
        node["rank"] = action.budgeted ? "≤\(rank), \(budgetedRank)" as Any : rank as Any
      } else {
        node["rank"] = NSNull()
      }
      return node
    }
    let counts = PlanCounts(rewrite)
    let object: [String: Any] = [
      "rules": rules, "nodes": nodes,
      "counts": [
        "total": counts.total, "trainable": counts.trainable,
        "non_trainable": counts.total - counts.trainable,
        "compressed_total": counts.compressedTotal, "wrapped": counts.wrapped,
        "coverage": counts.coverage,
      ],
    ]
    let data = try JSONSerialization.data(
      withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    return String(decoding: data, as: UTF8.self)
  }
}

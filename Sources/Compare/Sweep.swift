import Foundation
import Manifest
import Plumbing

/// A comparison: one base manifest run over a grid of methods × ranks × learning rates × seeds
/// (`surgeon compare SWEEP.yaml`; docs/compare.md).
public struct Sweep: Sendable {
  /// How each method's learning rate is chosen on the validation split.
  public enum Selection: String, Sendable, CaseIterable {
    /// Every learning rate runs at the first seed; the best by validation accuracy then runs at
    /// the other seeds (the cheap default).
    case firstSeed = "first_seed"
    /// Every learning rate runs at every seed; the best mean validation accuracy wins.
    case allSeeds = "all_seeds"
  }

  public struct Method: Sendable {
    public var name: String
    /// Merged into the base manifest (mappings key by key, anything else replaced).
    public var patch: YAMLNode?
    /// Ranks set into every `lora` rule (and rank budget); nil: the manifest's own.
    public var ranks: [Int]?
    /// As written, so cell names and derived manifests keep the user's spelling.
    public var learningRates: [String]
    /// This method's seeds; nil: the sweep's.
    public var seeds: [Int]?
    /// An earlier method whose first-seed run at its chosen learning rate is the teacher
    /// (`train.distill.teacher`); nil: none.
    public var teacher: String?
    /// True: the cell starts from the teacher's fine-tuned weights (`model.checkpoint`) instead
    /// of the base manifest's checkpoint, so compression begins from the fine-tuned model.
    public var startsFromTeacher = false
    /// The method this one's paired Δ is against (e.g. a 600-step row against a 600-step full
    /// fine-tuning); nil: the comparison's reference (`--reference`, else the first method).
    public var reference: String?
    /// The recipe this method changes one thing of (an ingredient row); the comparison pairs
    /// the two on the test set as well, so the table says what the change bought. nil: none.
    public var buildsOn: String?
    public var location: SourceLocation

    /// The ranks as optionals: `[nil]` when the method names none.
    public var rankChoices: [Int?] { ranks.map { $0.map(Optional.some) } ?? [nil] }
  }

  public var name: String
  public var base: String
  public var output: String
  /// Where each finished cell's record is kept (`CellRecord`), meant to be committed; nil: no
  /// records, so the results live only in `output`.
  public var records: String? = nil
  public var seeds: [Int]
  public var selection: Selection
  public var methods: [Method]
  public var file: String
}

/// One grid cell: a full `surgeon apply` of a derived manifest.
public struct Cell: Sendable, Hashable, Comparable {
  public var method: String
  public var rank: Int?
  public var learningRate: String
  public var seed: Int

  public init(method: String, rank: Int?, learningRate: String, seed: Int) {
    self.method = method
    self.rank = rank
    self.learningRate = learningRate
    self.seed = seed
  }

  /// The row a cell belongs to: the method and its rank (learning rate and seed vary within).
  public var row: RowKey { RowKey(method: method, rank: rank) }

  /// A file name: `decay-c_r8_lr3e-3_s0`.
  public var id: String {
    let rankPart = rank.map { "_r\($0)" } ?? ""
    let rate = learningRate.replacingOccurrences(of: ".0e", with: "e")
      .replacingOccurrences(of: "+", with: "")
    return "\(method)\(rankPart)_lr\(rate)_s\(seed)"
  }

  public static func < (lhs: Cell, rhs: Cell) -> Bool { lhs.id < rhs.id }
}

public struct RowKey: Sendable, Hashable, Comparable, CustomStringConvertible {
  public var method: String
  public var rank: Int?
  public init(method: String, rank: Int?) {
    self.method = method
    self.rank = rank
  }
  public var description: String { rank.map { "\(method) r\($0)" } ?? method }
  public static func < (lhs: RowKey, rhs: RowKey) -> Bool { lhs.description < rhs.description }
}

extension Sweep {
  /// The rows in the sweep file's order.
  public var rows: [RowKey] {
    methods.flatMap { method in
      method.rankChoices.map { RowKey(method: method.name, rank: $0) }
    }
  }

  public func method(named name: String) -> Method? { methods.first { $0.name == name } }

  /// The cells that choose the learning rates: every rate at the first seed (`first_seed`) or
  /// at every seed (`all_seeds`).
  public var selectionCells: [Cell] {
    methods.flatMap { method in
      let all = method.seeds ?? self.seeds
      let seeds = selection == .firstSeed ? Array(all.prefix(1)) : all
      return method.rankChoices.flatMap { rank in
        method.learningRates.flatMap { rate in
          seeds.map { Cell(method: method.name, rank: rank, learningRate: rate, seed: $0) }
        }
      }
    }
  }

  /// Every cell of the full grid (what `all_seeds` runs).
  public var allCells: [Cell] {
    methods.flatMap { method in
      method.rankChoices.flatMap { rank in
        method.learningRates.flatMap { rate in
          (method.seeds ?? seeds).map {
            Cell(method: method.name, rank: rank, learningRate: rate, seed: $0)
          }
        }
      }
    }
  }

  /// The cells that remain once the learning rates are chosen: each row's chosen rate at the
  /// seeds the selection did not already run.
  public func finalCells(chosen: [RowKey: String]) -> [Cell] {
    let ran = Set(selectionCells)
    return rows.flatMap { row -> [Cell] in
      guard let rate = chosen[row] else { return [] }
      return (method(named: row.method)?.seeds ?? seeds).map {
        Cell(method: row.method, rank: row.rank, learningRate: rate, seed: $0)
      }
      .filter { !ran.contains($0) }
    }
  }

  /// The cell's manifest: the base with the method's patch, the rank in every `lora` rule, the
  /// learning rate, the seed (model and training; the data split's seed stays the base's, so
  /// every cell sees the same validation and test examples) and its own name and output dir.
  public func derive(
    _ cell: Cell, base: YAMLNode, outputDirectory: String, teacherDirectory: String? = nil
  ) -> YAMLNode {
    var node = base
    let at = base.location
    let method = method(named: cell.method)
    if let patch = method?.patch { node = node.merged(with: patch) }
    if let teacherDirectory {
      node.set(
        ["train", "distill", "teacher"],
        to: YAMLNode(.scalar(teacherDirectory, style: .doubleQuoted), location: at))
      if method?.startsFromTeacher == true {
        // The teacher's directory replaces whatever the base loads the model from.
        if let model = node["model"] {
          node.set(["model"], to: model.removing(keys: ["preset", "weights", "config"]))
        }
        node.set(
          ["model", "checkpoint"],
          to: YAMLNode(.scalar(teacherDirectory, style: .doubleQuoted), location: at))
      }
    }
    if let rank = cell.rank, case .sequence(var rules)? = node["surgery"]?.kind {
      for index in rules.indices where rules[index]["lora"] != nil {
        rules[index].set(["lora", "rank"], to: .plain(String(rank), at: at))
      }
      node.set(["surgery"], to: YAMLNode(.sequence(rules), location: at))
    }
    node.set(["name"], to: .plain(cell.id, at: at))
    node.set(["train", "optimizer", "lr"], to: .plain(cell.learningRate, at: at))
    node.set(["train", "seed"], to: .plain(String(cell.seed), at: at))
    node.set(["model", "seed"], to: .plain(String(cell.seed), at: at))
    node.set(
      ["output", "dir"], to: YAMLNode(.scalar(outputDirectory, style: .doubleQuoted), location: at))
    return node
  }
}

/// Reads a sweep file, with `file:line:col` diagnostics like the manifest's.
public enum SweepDecoder {
  static let keys = [
    "sweep", "name", "base", "output", "records", "seeds", "lr_selection", "methods",
  ]
  static let methodKeys = [
    "name", "set", "rank", "lr", "seeds", "teacher", "start_from", "reference", "builds_on",
  ]

  public static func decode(contentsOf path: String) -> (sweep: Sweep?, diagnostics: [Diagnostic]) {
    guard let data = FileContents.read(path) else {
      return (
        nil,
        [
          Diagnostic(
            location: SourceLocation(file: path, line: 1, column: 1), severity: .error,
            message: "cannot read the sweep file", fix: "check the path")
        ]
      )
    }
    return decode(String(decoding: data, as: UTF8.self), file: path)
  }

  public static func decode(_ text: String, file: String) -> (
    sweep: Sweep?, diagnostics: [Diagnostic]
  ) {
    let (root, parseDiagnostics) = YAMLParser.parse(text, file: file)
    guard let root else { return (nil, parseDiagnostics) }
    var diagnostics: [Diagnostic] = []
    func error(_ message: String, _ location: SourceLocation, fix: String? = nil) {
      diagnostics.append(
        Diagnostic(location: location, severity: .error, message: message, fix: fix))
    }
    func fields(_ node: YAMLNode, allowed: [String], in context: String) -> [String: (
      key: YAMLNode, value: YAMLNode
    )] {
      guard case .mapping(let entries) = node.kind else {
        error("\(context) must be a mapping", node.location)
        return [:]
      }
      var result: [String: (key: YAMLNode, value: YAMLNode)] = [:]
      for entry in entries {
        guard let key = entry.key.scalarText else {
          error("keys of \(context) must be strings", entry.key.location)
          continue
        }
        if !allowed.contains(key) {
          let hint =
            closestName(to: key, in: allowed, closeness: .edits(atMost: 2)).map {
              " (did you mean '\($0)'?)"
            } ?? ""
          error(
            "unknown key '\(key)' in \(context)\(hint)", entry.key.location,
            fix: "the keys are \(allowed.joined(separator: ", "))")
        } else if result[key] != nil {
          error("duplicate key '\(key)' in \(context)", entry.key.location)
        }
        result[key] = entry
      }
      return result
    }
    func string(_ node: YAMLNode, _ what: String) -> String? {
      guard let text = node.scalarText, !text.isEmpty else {
        error("\(what) must be a string", node.location)
        return nil
      }
      return text
    }
    func list(_ node: YAMLNode) -> [YAMLNode] {
      if case .sequence(let items) = node.kind { return items }
      return [node]
    }
    func isName(_ text: String) -> Bool {
      !text.isEmpty && text.count <= 60
        && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-.".contains($0)) }
    }

    let top = fields(root, allowed: keys, in: "the sweep")
    let origin = root.location
    if let version = top["sweep"] {
      if version.value.scalarText != "1" {
        error(
          "unknown sweep format '\(version.value.scalarText ?? "?")'", version.value.location,
          fix: "write 'sweep: 1'")
      }
    } else {
      error("missing key 'sweep'", origin, fix: "start the file with 'sweep: 1'")
    }
    var name = ""
    if let entry = top["name"], let text = string(entry.value, "name") {
      if isName(text) {
        name = text
      } else {
        error(
          "name '\(text)' must be 1-60 of [A-Za-z0-9.-]", entry.value.location,
          fix: "it names the output directory checkpoints/<name>")
      }
    } else if top["name"] == nil {
      error("missing key 'name'", origin)
    }
    var base = ""
    if let entry = top["base"], let text = string(entry.value, "base") {
      base = text
    } else if top["base"] == nil {
      error("missing key 'base'", origin, fix: "name the base manifest: base: manifests/X.yaml")
    }
    let output = top["output"].flatMap { string($0.value, "output") } ?? "checkpoints/\(name)"
    let records = top["records"].flatMap { string($0.value, "records") }
    if let entry = top["records"], let records {
      // The records sit beside the run's own files, never among them (the point is that they
      // outlive the output directory).
      let trimmed = { (path: String) in path.hasSuffix("/") ? String(path.dropLast()) : path }
      let outputPath = trimmed(output)
      let recordsPath = trimmed(records)
      if recordsPath == outputPath || recordsPath.hasPrefix(outputPath + "/") {
        error(
          "records '\(records)' must not be inside the output directory '\(output)'",
          entry.value.location,
          fix:
            "give a directory you commit, e.g. records: docs/results/records/\(name.isEmpty ? "NAME" : name)"
        )
      }
    }
    func seedList(_ entry: (key: YAMLNode, value: YAMLNode)) -> [Int] {
      var seeds: [Int] = []
      for item in list(entry.value) {
        if let text = item.scalarText, let seed = Int(text), seed >= 0 {
          if seeds.contains(seed) {
            error("seed \(seed) is listed twice", item.location)
          }
          seeds.append(seed)
        } else {
          error("a seed must be a non-negative integer", item.location)
        }
      }
      if seeds.isEmpty { error("seeds must list at least one seed", entry.value.location) }
      return seeds
    }
    let seeds = top["seeds"].map(seedList) ?? [0]
    var selection = Sweep.Selection.firstSeed
    if let entry = top["lr_selection"] {
      if let text = entry.value.scalarText, let value = Sweep.Selection(rawValue: text) {
        selection = value
      } else {
        error(
          "lr_selection must be first_seed or all_seeds", entry.value.location,
          fix:
            "first_seed: every lr at the first seed, the best at the others; all_seeds: every lr at every seed"
        )
      }
    }
    var methods: [Sweep.Method] = []
    // `reference:` and `builds_on:` may name a later method: checked once every method is known.
    var references:
      [(
        method: String, key: String, value: YAMLNode, field: WritableKeyPath<Sweep.Method, String?>
      )] =
        []
    if let entry = top["methods"] {
      guard case .sequence(let items) = entry.value.kind, !items.isEmpty else {
        error("methods must be a non-empty list", entry.value.location)
        return (nil, parseDiagnostics + diagnostics)
      }
      for item in items {
        let method = fields(item, allowed: methodKeys, in: "a method")
        guard let nameEntry = method["name"] else {
          error("a method needs a name", item.location)
          continue
        }
        guard let methodName = string(nameEntry.value, "a method's name") else { continue }
        if !isName(methodName) || methodName.contains("_") {
          error(
            "method name '\(methodName)' must be 1-60 of [A-Za-z0-9.-]", nameEntry.value.location)
        }
        if methods.contains(where: { $0.name == methodName }) {
          error("method '\(methodName)' is defined twice", nameEntry.value.location)
        }
        var ranks: [Int]?
        if let rankEntry = method["rank"] {
          ranks = []
          for value in list(rankEntry.value) {
            if let text = value.scalarText, let rank = Int(text), rank >= 1 {
              ranks?.append(rank)
            } else {
              error("a rank must be a positive integer", value.location)
            }
          }
        }
        var rates: [String] = []
        if let rateEntry = method["lr"] {
          for value in list(rateEntry.value) {
            if let text = value.scalarText, let rate = Double(text), rate > 0, rate < 1 {
              rates.append(text)
            } else {
              error("a learning rate must be a number in (0, 1)", value.location)
            }
          }
        } else {
          error(
            "method '\(methodName)' needs lr: [...]", nameEntry.key.location,
            fix: "list the learning rates to choose from on the validation split")
        }
        var teacher: String?
        if let entry = method["teacher"] {
          if let text = entry.value.scalarText, methods.contains(where: { $0.name == text }) {
            teacher = text
          } else {
            error(
              "teacher must name a method listed before this one", entry.value.location,
              fix: "list the teacher's method (e.g. full fine-tuning) first")
          }
        }
        var startsFromTeacher = false
        if let entry = method["start_from"] {
          if entry.value.scalarText != "teacher" {
            error(
              "start_from can only be teacher", entry.value.location,
              fix: "write start_from: teacher, or remove it to start from the base checkpoint")
          } else if method["teacher"] == nil {
            error(
              "start_from: teacher needs a teacher", entry.key.location,
              fix: "name the method whose run to start from with teacher: METHOD")
          } else {
            startsFromTeacher = true
          }
        }
        let named: [(String, WritableKeyPath<Sweep.Method, String?>)] = [
          ("reference", \.reference), ("builds_on", \.buildsOn),
        ]
        for (key, field) in named {
          if let entry = method[key] { references.append((methodName, key, entry.value, field)) }
        }
        if let patch = method["set"], case .mapping = patch.value.kind {
        } else if let patch = method["set"] {
          error("set must be a mapping of manifest keys", patch.value.location)
        }
        methods.append(
          Sweep.Method(
            name: methodName, patch: method["set"]?.value, ranks: ranks, learningRates: rates,
            seeds: method["seeds"].map(seedList), teacher: teacher,
            startsFromTeacher: startsFromTeacher, location: nameEntry.value.location))
      }
      for (methodName, key, value, field) in references {
        let others = methods.map(\.name).filter { $0 != methodName }
        if let text = value.scalarText, others.contains(text),
          let index = methods.firstIndex(where: { $0.name == methodName })
        {
          methods[index][keyPath: field] = text
        } else {
          let hint =
            value.scalarText.flatMap {
              closestName(to: $0, in: others, closeness: .edits(atMost: 2))
            }.map { " (did you mean '\($0)'?)" }
            ?? ""
          error(
            "\(key) '\(value.scalarText ?? "?")' must name another method of this sweep\(hint)",
            value.location,
            fix: "the methods are \(others.joined(separator: ", "))")
        }
      }
    } else {
      error("missing key 'methods'", origin)
    }
    guard diagnostics.isEmpty else { return (nil, parseDiagnostics + diagnostics) }
    return (
      Sweep(
        name: name, base: base, output: output, records: records, seeds: seeds,
        selection: selection, methods: methods, file: file),
      parseDiagnostics
    )
  }
}

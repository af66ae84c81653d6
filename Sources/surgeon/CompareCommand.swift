import Compare
import Foundation
import Manifest
import Plumbing

enum CompareCommand: Command {
  static let usage = """
    Usage: surgeon compare SWEEP.yaml [--dry-run] [--table-only] [--reference METHOD]
                                      [--methods M1,M2,...]

    Runs a base manifest over a grid of methods × ranks × learning rates × seeds (each cell a
    full `surgeon apply` of a derived manifest into OUTPUT/cells/<cell>/), chooses every
    method's learning rate on the validation split (never the test split), and writes
    OUTPUT/comparison.md, comparison.json and figures/ (accuracy vs kept share of the wrapped
    weights, paired differences, learning curves, W-free accuracy during training). Every row's
    Δ to its reference is paired on the test examples: a 95% bootstrap interval and McNemar's
    p (cells need predictions.json, written by apply). Finished cells are skipped, so
    an interrupted comparison continues where it stopped; a cell whose derived manifest changed
    runs again. The sweep format is in docs/compare.md.

    Options:
      --dry-run      list the cells and where they go; run nothing
      --table-only   write the table and figures from the cells that finished; run nothing
      --reference M  the method the Δ column compares with (default: the first method; a
                     method's own `reference:` in the sweep file wins)
      --methods LIST run only these methods' cells (comma-separated); the others' finished
                     cells still make the table. Two processes with disjoint lists share one
                     sweep, e.g. on two machines or cores; a teacher must have finished first.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["reference", "methods"], flags: ["dry-run", "table-only"])
    guard parsed.positionals.count == 1 else {
      throw UsageError(message: "give exactly one SWEEP file")
    }
    let path = parsed.positionals[0]
    let (decoded, diagnostics) = SweepDecoder.decode(contentsOf: path)
    if !diagnostics.isEmpty { printError(render(diagnostics, as: .text)) }
    guard let sweep = decoded else { throw ExitStatus(code: 1) }
    let reference = parsed.value("reference") ?? sweep.methods[0].name
    guard sweep.method(named: reference) != nil else {
      throw UsageError(message: "--reference \(reference): no such method in \(path)")
    }

    var runnable = Set(sweep.methods.map(\.name))
    if let list = parsed.value("methods") {
      let names = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
      for name in names where sweep.method(named: name) == nil {
        throw UsageError(
          message:
            "--methods: no method \(name) in \(path) (it has \(sweep.methods.map(\.name).joined(separator: ", ")))"
        )
      }
      runnable = Set(names)
    }

    // The base manifest must decode on its own before anything runs.
    let (baseManifest, baseDiagnostics) = ManifestDecoder.decode(contentsOf: sweep.base)
    if baseManifest == nil {
      printError(render(baseDiagnostics, as: .text))
      throw CommandError(message: "\(path): error: the base manifest \(sweep.base) is invalid")
    }
    guard let baseText = try? String(contentsOfFile: sweep.base, encoding: .utf8),
      let baseNode = YAMLParser.parse(baseText, file: sweep.base).root
    else {
      throw CommandError(message: "\(path): error: cannot read the base manifest \(sweep.base)")
    }
    let output = URL(fileURLWithPath: sweep.output)
    let manifests = output.appendingPathComponent("manifests")
    let cells = output.appendingPathComponent("cells")

    func manifestPath(_ cell: Cell) -> String { sweep.output + "/manifests/\(cell.id).yaml" }
    func cellDirectory(_ cell: Cell) -> String { sweep.output + "/cells/\(cell.id)" }
    // A teacher is its method's first-seed run at the chosen learning rate (known once that
    // method's selection cells ran; before, a placeholder for the up-front check).
    var teachers: [String: String] = [:]
    func derivedText(_ cell: Cell) -> String {
      let teacher = sweep.method(named: cell.method)?.teacher.map {
        teachers[$0] ?? sweep.output + "/cells/\($0)-teacher"
      }
      return
        "# Derived by `surgeon compare \(path)` from \(sweep.base) (method \(cell.method)); do not edit.\n"
        + YAMLEmitter.emit(
          sweep.derive(
            cell, base: baseNode, outputDirectory: cellDirectory(cell), teacherDirectory: teacher))
    }

    // Every method's derived manifest must decode before any cell runs (one cell per method
    // stands for all: ranks, rates and seeds are plain numbers).
    var invalid = false
    for method in sweep.methods {
      guard let cell = sweep.selectionCells.first(where: { $0.method == method.name }) else {
        continue
      }
      let (manifest, cellDiagnostics) = ManifestDecoder.decode(
        text: derivedText(cell), file: manifestPath(cell))
      if manifest == nil {
        printError(render(cellDiagnostics, as: .text))
        printError(
          "\(path):\(method.location.lineColumn): error: method \(method.name) gives an invalid manifest (shown above as \(manifestPath(cell))); fix its set: block"
        )
        invalid = true
      }
    }
    if invalid { throw ExitStatus(code: 1) }

    if parsed.flag("dry-run") {
      print("selection cells (\(sweep.selectionCells.count)):")
      for cell in sweep.selectionCells { print("  \(cell.id) → \(cellDirectory(cell))") }
      print(
        "then each row's chosen lr at the remaining seeds (\(sweep.rows.count) rows × up to \(sweep.seeds.count - (sweep.selection == .firstSeed ? 1 : 0)) seeds)"
      )
      return
    }

    var results: [Cell: CellResult] = [:]
    func collect(_ cell: Cell) throws {
      if let result = try CellReader.read(
        cell, directory: URL(fileURLWithPath: cellDirectory(cell)))
      {
        results[cell] = result
      }
    }
    func runCell(_ cell: Cell) throws {
      let text = derivedText(cell)
      let manifestURL = URL(fileURLWithPath: manifestPath(cell))
      let directory = URL(fileURLWithPath: cellDirectory(cell))
      let previous = try? String(contentsOf: manifestURL, encoding: .utf8)
      let finished = FileManager.default.fileExists(
        atPath: directory.appendingPathComponent("results.json").path)
      // The first line (a comment naming the sweep file) does not count: a moved or copied
      // sweep file keeps its finished cells.
      func body(_ text: String?) -> Substring? {
        text.map { $0.drop { $0 != "\n" } }
      }
      let same = body(previous) == body(text)
      if same && finished {
        try collect(cell)
        return
      }
      if parsed.flag("table-only") || !runnable.contains(cell.method) { return }
      try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
      try FileManager.default.createDirectory(at: cells, withIntermediateDirectories: true)
      try DurableFile.write(Data(text.utf8), to: manifestURL)
      // The derived manifest must be valid before it runs (its errors name its own lines).
      let (manifest, cellDiagnostics) = ManifestDecoder.decode(contentsOf: manifestURL.path)
      guard manifest != nil else {
        printError(render(cellDiagnostics, as: .text))
        throw CommandError(
          message:
            "\(path):\(sweep.method(named: cell.method)!.location.lineColumn): error: method \(cell.method) gives an invalid manifest (\(manifestURL.path)); fix its set: block"
        )
      }
      var arguments = ["apply", manifestURL.path, "--progress", "none"]
      let hasState = FileManager.default.fileExists(
        atPath: directory.appendingPathComponent("state/state.json").path)
      if same && hasState && !finished {
        arguments.append("--resume")
      } else if FileManager.default.fileExists(atPath: directory.path) {
        arguments.append("--overwrite")
      }
      printError("compare: running \(cell.id)")
      let started = Date()
      let status = try runSubprocess(
        arguments, log: output.appendingPathComponent("cells/\(cell.id).log"))
      guard status == 0 else {
        throw CommandError(
          message:
            "\(cellDirectory(cell)): error: surgeon apply \(manifestURL.path) exited with \(status); see \(sweep.output)/cells/\(cell.id).log (rerun compare to retry)"
        )
      }
      try collect(cell)
      if let result = results[cell] {
        printError(
          String(
            format: "compare: %@ validation %.4f, test %.4f (%.0f s)", cell.id,
            result.validationAccuracy, result.testAccuracy, Date().timeIntervalSince(started)))
      }
    }

    // Method by method: its learning rates, then its chosen rate at the other seeds, so the
    // first methods' rows are complete early.
    for method in sweep.methods {
      if runnable.contains(method.name), !parsed.flag("table-only"), let teacher = method.teacher,
        teachers[teacher] == nil
      {
        throw CommandError(
          message:
            "\(path):\(method.location.lineColumn): error: method \(method.name) learns from \(teacher), whose learning-rate selection has not finished; run `surgeon compare \(path) --methods \(teacher)` first (or include it in --methods)"
        )
      }
      for cell in sweep.selectionCells where cell.method == method.name { try runCell(cell) }
      let chosen = Selection.chooseLearningRates(sweep, results: Array(results.values))
      for cell in sweep.finalCells(chosen: chosen) where cell.method == method.name {
        try runCell(cell)
      }
      // A teacher is known only once every rate of its method has run at the first seed.
      let selected = sweep.selectionCells.filter { $0.method == method.name }
      if selected.allSatisfy({ results[$0] != nil }),
        let row = sweep.rows.first(where: { $0.method == method.name }),
        let rate = chosen[row]
      {
        let seed = (method.seeds ?? sweep.seeds)[0]
        teachers[method.name] = cellDirectory(
          Cell(method: method.name, rank: row.rank, learningRate: rate, seed: seed))
      }
    }
    let chosen = Selection.chooseLearningRates(sweep, results: Array(results.values))

    let all = Array(results.values).sorted { $0.cell < $1.cell }
    let rows = Aggregation.rows(sweep, results: all, chosen: chosen, reference: reference)
    try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    let table =
      "# \(sweep.name): `surgeon compare \(path)`\n\n"
      + "Base manifest \(sweep.base); seeds \(sweep.seeds.map(String.init).joined(separator: ", ")); learning rates chosen by validation accuracy of the deployed model (\(sweep.selection.rawValue)); test accuracy of the deployed model (W-free where the method ends W-free).\n\n"
      + Aggregation.markdown(rows, reference: reference) + "\n" + Aggregation.pairedMethodNote
      + "\n"
    try DurableFile.write(Data(table.utf8), to: output.appendingPathComponent("comparison.md"))
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    struct CellRecord: Encodable {
      var id, method, lr: String
      var rank: Int?
      var seed: Int
      var validation, test, trainSeconds, keptShare: Double
      var deployed: Int
      var wFree: Bool
      enum CodingKeys: String, CodingKey {
        case id, method, lr, rank, seed, validation, test
        case trainSeconds = "train_seconds"
        case keptShare = "kept_share"
        case deployed = "deployed_params"
        case wFree = "w_free"
      }
    }
    struct Document: Encodable {
      var name, base, reference, selection: String
      var seeds: [Int]
      var rows: [ComparisonRow]
      var cells: [CellRecord]
    }
    let document = Document(
      name: sweep.name, base: sweep.base, reference: reference,
      selection: sweep.selection.rawValue, seeds: sweep.seeds, rows: rows,
      cells: all.map {
        CellRecord(
          id: $0.cell.id, method: $0.cell.method, lr: $0.cell.learningRate, rank: $0.cell.rank,
          seed: $0.cell.seed, validation: $0.validationAccuracy, test: $0.testAccuracy,
          trainSeconds: $0.trainSeconds, keptShare: $0.keptShare, deployed: $0.deployedParameters,
          wFree: $0.endsWFree)
      })
    try DurableFile.write(
      encoder.encode(document), to: output.appendingPathComponent("comparison.json"))
    let figures = output.appendingPathComponent("figures")
    try FileManager.default.createDirectory(at: figures, withIntermediateDirectories: true)
    for (name, svg) in ComparisonFigures.figures(rows, results: all, reference: reference) {
      try DurableFile.write(Data(svg.utf8), to: figures.appendingPathComponent(name))
    }
    print(Aggregation.markdown(rows, reference: reference), terminator: "")
    print("outputs: \(sweep.output)/ (comparison.md, comparison.json, figures/)")
  }

  /// Runs this same binary with `arguments`, its output appended to `log`; the exit status.
  static func runSubprocess(_ arguments: [String], log: URL) throws -> Int32 {
    let process = Process()
    process.executableURL =
      Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = arguments
    _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    let handle = try FileHandle(forWritingTo: log)
    defer { try? handle.close() }
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
  }
}

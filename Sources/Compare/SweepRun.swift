import Foundation
import Manifest
import Plumbing

/// One `surgeon compare` run of a sweep: the derived manifests checked up front, then method by
/// method its learning-rate cells and its chosen rate at the other seeds (each cell one `apply`,
/// resumed or skipped when it already ran), then the table, `comparison.json` and the figures.
/// The command line parses arguments, starts the cells' processes and prints the events.
public struct SweepRun {
  /// What the run reports as it goes.
  public enum Event: Sendable {
    /// Diagnostics of a manifest that failed to decode, rendered.
    case diagnostics(String)
    case cellStarted(id: String)
    case cellFinished(id: String, validation: Double, test: Double, seconds: Double)
    /// A teacher cell known only from its record is trained again, so that its students have
    /// its weights.
    case teacherRetraining(id: String)
    /// Another process has the cell now (`pid` claimed it, or holds its output lock): this run
    /// leaves it and goes on to the next.
    case cellBusy(id: String, pid: String)
    /// How the retrained teacher compares with its record: test accuracies and the test
    /// examples whose prediction changed (nil: no predictions to compare). The table keeps
    /// the record.
    case teacherRetrained(id: String, recorded: Double, retrained: Double, changed: Int?, of: Int?)
  }

  /// What `claim` answers for a cell's directory: taken by this process until `release` runs,
  /// or held by another process.
  public enum CellClaim {
    case taken(release: () -> Void)
    case held(pid: String)
  }

  public let sweep: Sweep
  /// The sweep file as the user named it (messages name it so).
  public let path: String
  /// The method every row is paired with.
  public let reference: String
  private let baseNode: YAMLNode

  /// Checks that the base manifest decodes on its own and reads it as YAML.
  public init(
    sweep: Sweep, path: String, reference: String, events: (Event) -> Void
  ) throws(UserError) {
    self.sweep = sweep
    self.path = path
    self.reference = reference
    let (baseManifest, baseDiagnostics) = ManifestDecoder.decode(contentsOf: sweep.base)
    if baseManifest == nil {
      events(.diagnostics(render(baseDiagnostics, as: .text)))
      throw UserError(file: path, problem: "the base manifest \(sweep.base) is invalid")
    }
    guard let baseText = try? String(contentsOfFile: sweep.base, encoding: .utf8),
      let node = YAMLParser.parse(baseText, file: sweep.base).root
    else {
      throw UserError(file: path, problem: "cannot read the base manifest \(sweep.base)")
    }
    baseNode = node
  }

  public func manifestPath(_ cell: Cell) -> String {
    sweep.output + "/manifests/\(cell.id).yaml"
  }

  public func cellDirectory(_ cell: Cell) -> String { sweep.output + "/cells/\(cell.id)" }

  /// Where the cell's record is kept; nil when the sweep keeps none.
  public func recordURL(_ cell: Cell) -> URL? {
    sweep.records.map { URL(fileURLWithPath: $0).appendingPathComponent("\(cell.id).json") }
  }

  /// The cell's record, when there is one of the manifest `text` (a record of another manifest
  /// is stale: the cell runs again and its new record replaces it).
  func matchingRecord(_ cell: Cell, text: String) throws -> CellRecord? {
    guard let url = recordURL(cell), let record = try CellRecord.read(url, cell: cell) else {
      return nil
    }
    return record.manifest == Self.manifestBody(text) ? record : nil
  }

  /// An input file whose fingerprint here differs from the one the records name.
  public struct InputMismatch: Sendable, Equatable {
    public var path: String
    public var here: FileFingerprint
    public var recorded: FileFingerprint
    /// The cells whose records name `recorded`, in the sweep's order.
    public var cells: [String]

    public init(path: String, here: FileFingerprint, recorded: FileFingerprint, cells: [String]) {
      self.path = path
      self.here = here
      self.recorded = recorded
      self.cells = cells
    }
  }

  /// Records made from input files other than the ones here (a base checkpoint retrained on
  /// another machine, a regenerated data file): one entry per file and recorded fingerprint.
  /// A record without `inputs` (kept before they were recorded) and a file that is not here
  /// pass, and files inside the sweep's output (teachers, which a new machine retrains) are
  /// not compared: the records stand for those.
  public func recordsFromOtherInputs() throws -> [InputMismatch] {
    var here: [String: FileFingerprint?] = [:]
    var mismatches: [InputMismatch] = []
    let inOutput = sweep.output.hasSuffix("/") ? sweep.output : sweep.output + "/"
    for cell in sweep.allCells {
      guard let url = recordURL(cell),
        let inputs = try CellRecord.read(url, cell: cell)?.result.inputs
      else { continue }
      for (path, recorded) in inputs.sorted(by: { $0.key < $1.key })
      where !path.hasPrefix(inOutput) {
        if here[path] == nil { here[path] = .some(FileFingerprint.of(path: path)) }
        guard let current = here[path]!, current != recorded else { continue }
        if let index = mismatches.firstIndex(where: { $0.path == path && $0.recorded == recorded })
        {
          mismatches[index].cells.append(cell.id)
        } else {
          mismatches.append(
            InputMismatch(path: path, here: current, recorded: recorded, cells: [cell.id]))
        }
      }
    }
    return mismatches
  }

  /// The error for `mismatches` (nil when there are none): mixing the records with cells run
  /// here would compare models grown from different inputs.
  public func inputsError(_ mismatches: [InputMismatch]) -> UserError? {
    guard !mismatches.isEmpty else { return nil }
    let lines = mismatches.map { mismatch in
      let cells =
        mismatch.cells.prefix(3).joined(separator: ", ")
        + (mismatch.cells.count > 3 ? " and \(mismatch.cells.count - 3) more" : "")
      return
        "\(mismatch.path) is \(mismatch.here) here, \(mismatch.recorded) in the records of \(cells)"
    }
    return UserError(
      file: sweep.records ?? path,
      problem:
        "records were made from other input files than the ones here:\n  "
        + lines.joined(separator: "\n  "),
      fix:
        "restore those files as the records' runs read them (a base checkpoint retrained here differs in its last bits), or move the records named aside to run those cells again here"
    )
  }

  /// Writes `result`'s record of the manifest `text` (callers write one only where no record
  /// of that manifest is kept: a kept record stays, and a retrained teacher does not rewrite
  /// its history).
  func keepRecord(_ result: CellResult, text: String) throws {
    guard let url = recordURL(result.cell) else { return }
    try FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try DurableFile.write(
      CellRecord(result: result, manifest: Self.manifestBody(text)).encoded(), to: url)
  }

  /// A derived manifest without its first line, the comment naming the sweep file.
  static func manifestBody(_ text: String) -> String { String(text.drop { $0 != "\n" }) }

  /// Teacher directories by method, from the teacher cells known so far.
  func teacherDirectories(_ teachers: [String: Cell]) -> [String: String] {
    teachers.mapValues(cellDirectory)
  }

  /// The manifest `cell` runs; `teachers` maps a teacher method to its cell directory (a
  /// placeholder before its selection has run).
  func derivedText(_ cell: Cell, teachers: [String: String]) -> String {
    let teacher = sweep.method(named: cell.method)?.teacher.map {
      teachers[$0] ?? sweep.output + "/cells/\($0)-teacher"
    }
    return
      "# Derived by `surgeon compare \(path)` from \(sweep.base) (method \(cell.method)); do not edit.\n"
      + YAMLEmitter.emit(
        sweep.derive(
          cell, base: baseNode, outputDirectory: cellDirectory(cell), teacherDirectory: teacher))
  }

  /// Every method's derived manifest must decode before any cell runs (one cell per method
  /// stands for all: ranks, rates and seeds are plain numbers). Reports each failure; false
  /// when there was one.
  public func derivedManifestsDecode(events: (Event) -> Void) -> Bool {
    var valid = true
    for method in sweep.methods {
      guard let cell = sweep.selectionCells.first(where: { $0.method == method.name }) else {
        continue
      }
      let (manifest, diagnostics) = ManifestDecoder.decode(
        text: derivedText(cell, teachers: [:]), file: manifestPath(cell))
      if manifest == nil {
        events(.diagnostics(render(diagnostics, as: .text)))
        events(
          .diagnostics(
            UserError(
              file: path, location: method.location.lineColumn,
              problem:
                "method \(method.name) gives an invalid manifest (shown above as \(manifestPath(cell)))",
              fix: "fix its set: block"
            ).description))
        valid = false
      }
    }
    return valid
  }

  /// Runs the cells of the methods in `runnable` that have not finished (none with
  /// `tableOnly`; with `seeds`, only cells of those seeds), collects every finished cell, and writes `comparison.md`,
  /// `comparison.json` and `figures/`. `apply(arguments, log)` runs one `surgeon apply` with its
  /// output appended to `log` and returns its exit status. `claim(directory)` takes a cell for
  /// this process before its `apply` starts, atomically, so that two processes sharing a
  /// method list never start the same cell (`apply` takes its own output lock only once its
  /// model is prepared, minutes later); a cell another process holds is left to it.
  public func run(
    methods runnable: Set<String>, seeds: Set<Int>? = nil, tableOnly: Bool,
    apply: ([String], URL) throws -> Int32,
    claim: (URL) -> CellClaim = { _ in .taken(release: {}) },
    events: (Event) -> Void
  ) throws -> [ComparisonRow] {
    let output = URL(fileURLWithPath: sweep.output)
    let manifests = output.appendingPathComponent("manifests")
    let cells = output.appendingPathComponent("cells")
    // A teacher is its method's first-seed run at the chosen learning rate (known once that
    // method's selection cells ran).
    var teachers: [String: Cell] = [:]
    var results: [Cell: CellResult] = [:]
    func finishedHere(_ cell: Cell, text: String) -> Bool {
      let previous = try? String(contentsOfFile: manifestPath(cell), encoding: .utf8)
      return Self.sameManifest(previous, text)
        && FileManager.default.fileExists(atPath: cellDirectory(cell) + "/results.json")
    }
    // Runs one `apply` of `cell` (resuming its saved state when the manifest is the same); its
    // result, nil when the run wrote none.
    func execute(_ cell: Cell, text: String) throws -> CellResult? {
      let manifestURL = URL(fileURLWithPath: manifestPath(cell))
      let directory = URL(fileURLWithPath: cellDirectory(cell))
      let previous = try? String(contentsOf: manifestURL, encoding: .utf8)
      let same = Self.sameManifest(previous, text)
      try FileManager.default.createDirectory(at: manifests, withIntermediateDirectories: true)
      try FileManager.default.createDirectory(at: cells, withIntermediateDirectories: true)
      try DurableFile.write(Data(text.utf8), to: manifestURL)
      // The derived manifest must be valid before it runs (its errors name its own lines).
      let (manifest, cellDiagnostics) = ManifestDecoder.decode(contentsOf: manifestURL.path)
      guard manifest != nil else {
        events(.diagnostics(render(cellDiagnostics, as: .text)))
        throw UserError(
          file: path, location: sweep.method(named: cell.method)?.location.lineColumn,
          problem: "method \(cell.method) gives an invalid manifest (\(manifestURL.path))",
          fix: "fix its set: block")
      }
      var arguments = ["apply", manifestURL.path, "--progress", "none"]
      let hasState = FileManager.default.fileExists(
        atPath: directory.appendingPathComponent("state/state.json").path)
      if same && hasState {
        arguments.append("--resume")
      } else if FileManager.default.fileExists(atPath: directory.path) {
        arguments.append("--overwrite")
      }
      events(.cellStarted(id: cell.id))
      let started = Date()
      let status = try apply(arguments, output.appendingPathComponent("cells/\(cell.id).log"))
      guard status == 0 else {
        throw UserError(
          file: cellDirectory(cell),
          problem:
            "surgeon apply \(manifestURL.path) exited with \(status); see \(sweep.output)/cells/\(cell.id).log (rerun compare to retry)"
        )
      }
      guard let result = try CellReader.read(cell, directory: directory) else { return nil }
      events(
        .cellFinished(
          id: cell.id, validation: result.validationAccuracy, test: result.testAccuracy,
          seconds: Date().timeIntervalSince(started)))
      return result
    }
    // A student needs its teacher's weights: a teacher known only from its record (another
    // machine ran it) is trained again from the same manifest, and the run says how closely it
    // reproduced the record. False when another process is retraining it now: the student
    // waits for a later run.
    func ensureTeacherWeights(for cell: Cell) throws -> Bool {
      guard let name = sweep.method(named: cell.method)?.teacher,
        let teacher = teachers[name]
      else { return true }
      let text = derivedText(teacher, teachers: teacherDirectories(teachers))
      guard !finishedHere(teacher, text: text), let record = results[teacher] else { return true }
      guard let release = take(teacher) else { return false }
      defer { release() }
      // Another process may have retrained it between the check and the claim.
      if finishedHere(teacher, text: text) { return true }
      events(.teacherRetraining(id: teacher.id))
      guard let retrained = try execute(teacher, text: text) else { return false }
      var changed: Int?
      var total: Int?
      if let old = record.predictions, let new = retrained.predictions,
        old.indices == new.indices
      {
        changed = zip(old.predicted, new.predicted).filter { $0 != $1 }.count
        total = old.indices.count
      }
      events(
        .teacherRetrained(
          id: teacher.id, recorded: record.testAccuracy, retrained: retrained.testAccuracy,
          changed: changed, of: total))
      return true
    }
    // Claims a cell for this run (its release), or reports that another process has it.
    func take(_ cell: Cell) -> (() -> Void)? {
      switch claim(URL(fileURLWithPath: cellDirectory(cell))) {
      case .taken(let release): return release
      case .held(let pid):
        events(.cellBusy(id: cell.id, pid: pid))
        return nil
      }
    }
    // Collects a cell finished in its directory, from the same manifest `text`, and keeps its
    // record; false when it has not finished.
    func collectFinished(_ cell: Cell, text: String) throws -> Bool {
      guard finishedHere(cell, text: text),
        let result = try CellReader.read(cell, directory: URL(fileURLWithPath: cellDirectory(cell)))
      else { return false }
      results[cell] = result
      try keepRecord(result, text: text)
      return true
    }
    func runCell(_ cell: Cell) throws {
      let text = derivedText(cell, teachers: teacherDirectories(teachers))
      if let record = try matchingRecord(cell, text: text) {
        results[cell] = record.result
        return
      }
      if try collectFinished(cell, text: text) { return }
      if tableOnly || !runnable.contains(cell.method) { return }
      if let seeds, !seeds.contains(cell.seed) { return }
      guard let release = take(cell) else { return }
      defer { release() }
      // Another process may have finished the cell between this run's check and its claim.
      if try collectFinished(cell, text: text) { return }
      guard try ensureTeacherWeights(for: cell) else { return }
      if let result = try execute(cell, text: text) {
        results[cell] = result
        try keepRecord(result, text: text)
      }
    }

    try traverse(
      before: { method, teachers in
        guard runnable.contains(method.name), !tableOnly, let teacher = method.teacher,
          teachers[teacher] == nil
        else { return }
        throw UserError(
          file: path, location: method.location.lineColumn,
          problem:
            "method \(method.name) learns from \(teacher), whose learning-rate selection has not finished",
          fix:
            "run `surgeon compare \(path) --methods \(teacher)` first (or include it in --methods)"
        )
      },
      visit: { cell, known in
        teachers = known
        try runCell(cell)
        return results[cell]
      })
    let chosen = Selection.chooseLearningRates(sweep, results: Array(results.values))
    if !tableOnly {
      // Seeds past the selection wait for the chosen rate (a selection cell not run, failed
      // or running in another process): say so instead of running nothing.
      let selectionSeeds = Set(sweep.selectionCells.map { "\($0.method) \($0.seed)" })
      for method in sweep.methods where runnable.contains(method.name) {
        let waiting = (method.seeds ?? sweep.seeds).filter {
          (seeds?.contains($0) ?? true) && !selectionSeeds.contains("\(method.name) \($0)")
        }
        guard !waiting.isEmpty, !selectionFinished(method.name, results) else { continue }
        let first = (method.seeds ?? sweep.seeds)[0]
        events(
          .diagnostics(
            "\(path): warning: \(method.name) at seed \(waiting.map(String.init).joined(separator: ", ")) waits for its learning rate, chosen once its seed-\(first) cells finish; nothing ran for it; run `surgeon compare \(path) --methods \(method.name) --seeds \(first)` first"
          ))
      }
    }
    let all = Array(results.values).sorted { $0.cell < $1.cell }
    let rows = Aggregation.rows(sweep, results: all, chosen: chosen, reference: reference)
    try write(rows, results: all, to: output)
    return rows
  }

  /// Whether a cell's derived manifest is the one it ran. The first line (a comment naming the
  /// sweep file) does not count: a moved or copied sweep file keeps its finished cells.
  static func sameManifest(_ previous: String?, _ current: String) -> Bool {
    guard let previous else { return false }
    return previous.drop { $0 != "\n" } == current.drop { $0 != "\n" }
  }

  /// Whether every learning-rate cell of `method` has a result.
  private func selectionFinished(_ method: String, _ results: [Cell: CellResult]) -> Bool {
    sweep.selectionCells.allSatisfy { $0.method != method || results[$0] != nil }
  }

  /// Visits the cells in the order `run` runs them: method by method, its learning rates,
  /// then its chosen rate at the other seeds (known once its selection cells have results), so
  /// the first methods' rows are complete early. `before` sees each method and the teachers
  /// known so far (a method's first-seed cell at its chosen rate); `visit` each cell, returning
  /// its result when it has one.
  private func traverse(
    before: (Sweep.Method, [String: Cell]) throws -> Void,
    visit: (Cell, [String: Cell]) throws -> CellResult?
  ) throws {
    var teachers: [String: Cell] = [:]
    var results: [Cell: CellResult] = [:]
    for method in sweep.methods {
      try before(method, teachers)
      for cell in sweep.selectionCells where cell.method == method.name {
        results[cell] = try visit(cell, teachers)
      }
      // The other seeds wait for every selection cell: a rate chosen while one is still
      // running (in another process) could be the wrong one.
      guard selectionFinished(method.name, results) else { continue }
      let chosen = Selection.chooseLearningRates(sweep, results: Array(results.values))
      for cell in sweep.finalCells(chosen: chosen) where cell.method == method.name {
        results[cell] = try visit(cell, teachers)
      }
      if let row = sweep.rows.first(where: { $0.method == method.name }),
        let rate = chosen[row]
      {
        let seed = (method.seeds ?? sweep.seeds)[0]
        teachers[method.name] = Cell(
          method: method.name, rank: row.rank, learningRate: rate, seed: seed)
      }
    }
  }

  /// Where each cell stands, without running or writing anything: `--dry-run`. Cells at a
  /// method's chosen rate are listed once its selection cells have finished; `undecided` names
  /// the methods still choosing.
  public func status() throws -> (cells: [CellStatus], undecided: [String]) {
    var statuses: [CellStatus] = []
    try traverse(
      before: { _, _ in },
      visit: { cell, teachers in
        let directory = URL(fileURLWithPath: cellDirectory(cell))
        let previous = try? String(contentsOfFile: manifestPath(cell), encoding: .utf8)
        let text = derivedText(cell, teachers: teacherDirectories(teachers))
        let same = Self.sameManifest(previous, text)
        let steps = ManifestDecoder.decode(text: text, file: manifestPath(cell)).0?.train?.steps
          .value
        let record = try matchingRecord(cell, text: text)
        if let result = try record?.result
          ?? (same ? CellReader.read(cell, directory: directory) : nil)
        {
          statuses.append(
            CellStatus(
              cell: cell, state: .finished(test: result.testAccuracy), steps: steps,
              trainSeconds: result.trainSeconds, recorded: record != nil))
          return result
        }
        let state: CellStatus.State
        if same, let step = Self.savedStep(in: directory) {
          state = .partial(step: step, of: steps)
        } else if FileManager.default.fileExists(atPath: directory.path) {
          state = same ? .started : .stale
        } else {
          state = .pending
        }
        statuses.append(CellStatus(cell: cell, state: state, steps: steps))
        return nil
      })
    let listed = Set(statuses.map(\.cell.method))
    let finalMethods = Set(
      statuses.filter { !sweep.selectionCells.contains($0.cell) }.map(\.cell.method))
    let undecided = sweep.methods.map(\.name).filter {
      listed.contains($0) && !finalMethods.contains($0)
        && (sweep.method(named: $0).map { ($0.seeds ?? sweep.seeds).count > 1 } ?? false)
    }
    return (statuses, undecided)
  }

  /// The step a cell's saved state reached (`state/state.json`).
  static func savedStep(in directory: URL) -> Int? {
    let url = directory.appendingPathComponent("state/state.json")
    guard let data = FileContents.read(url.path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return nil }
    return object["step"] as? Int
  }

  /// The second table of `comparison.md`, when some method builds on another.
  private func changesSection(_ rows: [ComparisonRow]) -> String {
    let table = Aggregation.changesMarkdown(rows)
    guard !table.isEmpty else { return "" }
    return "\n## What each change bought\n\nEach method with `builds_on:` against the recipe it "
      + "changes, paired on the test examples of the seeds both ran (the same interval and test "
      + "as above).\n\n" + table
  }

  /// The builds line of `comparison.md`, when the cells name their builds.
  private func buildsSection(_ results: [CellResult]) -> String {
    let note = Aggregation.buildsNote(results)
    return note.isEmpty ? "" : "\n" + note
  }

  /// `comparison.md`, `comparison.json` and `figures/` in `output`.
  private func write(_ rows: [ComparisonRow], results all: [CellResult], to output: URL) throws {
    try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    let table =
      "# \(sweep.name): `surgeon compare \(path)`\n\n"
      + "Base manifest \(sweep.base); seeds \(sweep.seeds.map(String.init).joined(separator: ", ")); learning rates chosen by validation accuracy of the deployed model (\(sweep.selection.rawValue)); test accuracy of the deployed model (W-free where the method ends W-free).\n\n"
      + Aggregation.markdown(rows, reference: reference) + "\n" + Aggregation.pairedMethodNote
      + "\n" + changesSection(rows) + buildsSection(all)
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
      var build: String?
      enum CodingKeys: String, CodingKey {
        case id, method, lr, rank, seed, validation, test, build
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
          wFree: $0.endsWFree, build: $0.build)
      })
    try DurableFile.write(
      encoder.encode(document), to: output.appendingPathComponent("comparison.json"))
    let figures = output.appendingPathComponent("figures")
    try FileManager.default.createDirectory(at: figures, withIntermediateDirectories: true)
    for (name, svg) in ComparisonFigures.figures(rows, results: all, reference: reference) {
      try DurableFile.write(Data(svg.utf8), to: figures.appendingPathComponent(name))
    }
  }
}

/// Where one cell of a sweep stands (`surgeon compare --dry-run`).
public struct CellStatus: Sendable, Equatable {
  public enum State: Sendable, Equatable {
    /// Ran to the end under the manifest the sweep derives now.
    case finished(test: Double)
    /// Saved state at `step` of its run's steps (nil: unknown): the next `compare` resumes it.
    case partial(step: Int, of: Int?)
    /// Its directory exists, with no saved state yet: the next `compare` reruns it from the
    /// start (`--overwrite`).
    case started
    /// Its directory holds a run of another manifest: the next `compare` reruns it from the
    /// start (`--overwrite`).
    case stale
    case pending
  }

  public var cell: Cell
  public var state: State
  /// The cell's training steps (its derived manifest's `train.steps`); nil: not given there.
  public var steps: Int? = nil
  /// A finished cell's training time (results.json's `train_seconds`).
  public var trainSeconds: Double? = nil
  /// A finished cell whose result comes from its record (`records:`), whether or not its
  /// output directory is still here.
  public var recorded = false

  public init(
    cell: Cell, state: State, steps: Int? = nil, trainSeconds: Double? = nil,
    recorded: Bool = false
  ) {
    self.cell = cell
    self.state = state
    self.steps = steps
    self.trainSeconds = trainSeconds
    self.recorded = recorded
  }

  /// The training the unfinished cells still need, estimated from the finished ones: each
  /// method's mean seconds per step (the median over methods for a method with none finished)
  /// times the steps a cell has left (a partial cell resumes at its saved step). Evaluation,
  /// calibration and start-up are not in `train_seconds`, so this is a lower bound of one core's
  /// time when the cells ran that way. `unestimated`: cells with no step count or no finished
  /// cell to go by.
  public static func remainingTraining(_ statuses: [CellStatus]) -> (
    cells: Int, seconds: Double, unestimated: Int
  ) {
    var rates: [String: [Double]] = [:]
    for status in statuses {
      guard case .finished = status.state, let seconds = status.trainSeconds, seconds > 0,
        let steps = status.steps, steps > 0
      else { continue }
      rates[status.cell.method, default: []].append(seconds / Double(steps))
    }
    let methodRates = rates.mapValues { $0.reduce(0, +) / Double($0.count) }
    let sorted = methodRates.values.sorted()
    let median = sorted.isEmpty ? nil : sorted[sorted.count / 2]
    var cells = 0
    var seconds = 0.0
    var unestimated = 0
    for status in statuses {
      let done: Int
      switch status.state {
      case .finished: continue
      case .partial(let step, _): done = step
      case .started, .stale, .pending: done = 0
      }
      cells += 1
      guard let steps = status.steps, let rate = methodRates[status.cell.method] ?? median else {
        unestimated += 1
        continue
      }
      seconds += Double(max(steps - done, 0)) * rate
    }
    return (cells, seconds, unestimated)
  }
}

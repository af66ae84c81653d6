import Compare
import Foundation
import Manifest
import Plumbing
import Training

enum CompareCommand: Command {
  static let usage = """
    Usage: surgeon compare SWEEP.yaml [--dry-run] [--table-only] [--reference METHOD]
                                      [--methods M1,M2,...] [--seeds S1,S2,...]

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
      --dry-run      where each cell stands (finished, partial: resumes, stale: reruns,
                     to run, running now); runs and writes nothing
      --table-only   write the table and figures from the cells that finished; run nothing
      --reference M  the method the Δ column compares with (default: the first method; a
                     method's own `reference:` in the sweep file wins)
      --methods LIST run only these methods' cells (comma-separated); the others' finished
                     cells still make the table. Two processes with disjoint lists share one
                     sweep, e.g. on two machines or cores; a teacher must have finished first.
      --seeds LIST   run only cells of these seeds (comma-separated), e.g. `--seeds 0` to screen
                     methods at the first seed (learning-rate selection included) before
                     spending the other seeds on the ones that look promising.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["reference", "methods", "seeds"], flags: ["dry-run", "table-only"])
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

    var seeds: Set<Int>? = nil
    if let list = parsed.value("seeds") {
      var chosen: Set<Int> = []
      for item in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
        guard let seed = Int(item) else {
          throw UsageError(
            message: "--seeds: \(item) is not a seed; give integers, e.g. --seeds 0,1")
        }
        let known = Set(sweep.methods.flatMap { $0.seeds ?? sweep.seeds })
        guard known.contains(seed) else {
          throw UsageError(
            message:
              "--seeds: no method of \(path) runs seed \(seed) (its seeds: \(known.sorted().map(String.init).joined(separator: ", ")))"
          )
        }
        chosen.insert(seed)
      }
      seeds = chosen
    }

    func show(_ event: SweepRun.Event) {
      switch event {
      case .diagnostics(let text): printError(text)
      case .cellStarted(let id): printError("compare: running \(id)")
      case .cellFinished(let id, let validation, let test, let seconds):
        printError(
          String(
            format: "compare: %@ validation %.4f, test %.4f (%.0f s)", id, validation, test,
            seconds))
      case .cellBusy(let id, let pid):
        printError("compare: \(id) is running in another process (pid \(pid)); going on without it")
      case .teacherRetraining(let id):
        printError(
          "compare: \(id) is known from its record only; training it again for its students' teacher weights"
        )
      case .teacherRetrained(let id, let recorded, let retrained, let changed, let total):
        let predictions =
          changed.map { changed in
            total.map { ", \(changed) of \($0) test predictions changed" } ?? ""
          } ?? ""
        printError(
          String(
            format: "compare: %@ retrained: test %.4f (its record %.4f)", id, retrained, recorded)
            + predictions + "; the table keeps the record")
      }
    }
    // The base manifest and every method's derived manifest must decode before anything runs.
    let sweepRun = try SweepRun(sweep: sweep, path: path, reference: reference, events: show)
    guard sweepRun.derivedManifestsDecode(events: show) else { throw ExitStatus(code: 1) }
    // Records of other input files (a base retrained elsewhere) must not mix with cells run
    // here; a table of records alone is still worth printing, with the warning.
    if let mismatch = sweepRun.inputsError(try sweepRun.recordsFromOtherInputs()) {
      guard parsed.flag("table-only") else { throw mismatch }
      printError(mismatch.rendered(severity: "warning"))
    }

    if parsed.flag("dry-run") {
      let (cells, undecided) = try sweepRun.status()
      let finished = cells.filter { if case .finished = $0.state { true } else { false } }.count
      print("cells (\(cells.count) known; \(finished) finished):")
      let width = cells.map(\.cell.id.count).max() ?? 0
      for status in cells {
        let id = status.cell.id.padding(toLength: width, withPad: " ", startingAt: 0)
        var state: String
        switch status.state {
        case .finished(let test):
          state =
            String(format: "finished  test %.4f", test) + (status.recorded ? " (recorded)" : "")
        case .partial(let step, let steps):
          state = "partial   step \(step) of \(steps.map(String.init) ?? "?"): resumes"
        case .started: state = "started   no saved state yet: reruns from the start"
        case .stale: state = "stale     another manifest ran here: reruns from the start"
        case .pending: state = "to run"
        }
        // A claimed cell may still be preparing its model (no directory yet).
        if let pid = OutputLock.claimant(
          of: URL(fileURLWithPath: sweepRun.cellDirectory(status.cell)))
        {
          state += " (running now, pid \(pid))"
        }
        print("  \(id)  \(state)")
      }
      if !undecided.isEmpty {
        print(
          "other seeds follow once these methods' learning-rate cells finish: \(undecided.joined(separator: ", "))"
        )
      }
      let left = CellStatus.remainingTraining(cells)
      if left.cells > 0 {
        let hours = left.seconds / 3600
        print(
          "left: \(left.cells) \(left.cells == 1 ? "cell" : "cells")"
            + (left.cells > left.unestimated
              ? String(
                format:
                  ", about %.1f h of training at the finished cells' speed (train_seconds per step; evaluations not counted)",
                hours) : "")
            + (left.unestimated > 0
              ? "; \(left.unestimated) not estimated (no finished cell to go by)" : "")
            + (undecided.isEmpty ? "" : "; more follow once the learning rates are chosen"))
      }
      print("outputs: \(sweep.output)/cells/ (nothing was run or written)")
      return
    }

    let rows = try sweepRun.run(
      methods: runnable, seeds: seeds, tableOnly: parsed.flag("table-only"), apply: runSubprocess,
      claim: { directory in
        switch OutputLock.claim(directory) {
        case .success(let claim): return .taken(release: { claim.release() })
        case .failure(let held): return .held(pid: held.pid)
        }
      }, events: show)
    print(Aggregation.markdown(rows, reference: reference), terminator: "")
    let changes = Aggregation.changesMarkdown(rows)
    if !changes.isEmpty {
      print("\nwhat each change bought (builds_on):\n" + changes, terminator: "")
    }
    print("outputs: \(sweep.output)/ (comparison.md, comparison.json, figures/)")
  }

  /// Runs this same binary with `arguments`, its output appended to `log`; the exit status.
  static func runSubprocess(_ arguments: [String], log: URL) throws -> Int32 {
    let process = Process()
    process.executableURL =
      Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = arguments
    // Appended, never truncated: a resumed cell keeps its earlier attempts' output, and a
    // second process that races for a running cell cannot wipe that cell's log.
    if !FileManager.default.fileExists(atPath: log.path) {
      _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    }
    let handle = try FileHandle(forWritingTo: log)
    defer { try? handle.close() }
    try handle.seekToEnd()
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
  }
}

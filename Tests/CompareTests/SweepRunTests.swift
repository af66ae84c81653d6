import Compare
import Foundation
import Plumbing
import XCTest

/// `SweepRun` as a library, with the cells' `apply` stood in for by a closure: what it refuses
/// before running anything, what it reports, and which cells it asks to run.
final class SweepRunTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-sweep-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    addTeardownBlock { [directory] in try? FileManager.default.removeItem(at: directory!) }
    try """
    surgeon: 1
    name: base
    model: {family: bert, preset: bert-tiny, weights: random, head: {classes: 2}}
    surgery:
      - lora: {layers: [query, value], rank: 2, bias_c: zeros, decay: {start: 0.1, end: 0.6}}
    train:
      task: text-classification
      data:
        train: {format: csv, path: tiny.csv, text: text, label: label}
      steps: 4
    output: {dir: checkpoints/base, compress: true}

    """.write(to: file("base.yaml"), atomically: true, encoding: .utf8)
  }

  private func file(_ name: String) -> URL { directory.appendingPathComponent(name) }

  /// A sweep of `full` (two rates) and `kd`, which learns from `full`.
  private func sweepRun(events: (SweepRun.Event) -> Void = { _ in }) throws -> SweepRun {
    let text = """
      sweep: 1
      name: tiny
      base: \(file("base.yaml").path)
      output: \(file("out").path)
      seeds: [0, 1]
      methods:
        - name: full
          lr: [1.0e-3, 3.0e-3]
          set: {surgery: [], output: {compress: false}}
        - name: kd
          teacher: full
          lr: [1.0e-2]
          set: {train: {distill: {temperature: 2, logits: 0.5}}}

      """
    let (sweep, diagnostics) = SweepDecoder.decode(text, file: "sweep.yaml")
    return try SweepRun(
      sweep: try XCTUnwrap(sweep, "\(diagnostics)"), path: "sweep.yaml", reference: "full",
      events: events)
  }

  func testAStudentWhoseTeacherHasNotRunIsRefusedBeforeAnyCell() throws {
    let run = try sweepRun()
    XCTAssertTrue(run.derivedManifestsDecode(events: { _ in }))
    var calls = 0
    XCTAssertThrowsError(
      try run.run(
        methods: ["kd"], tableOnly: false,
        apply: { _, _ in
          calls += 1
          return 0
        }, events: { _ in })
    ) { error in
      XCTAssertEqual(
        "\(error)",
        "sweep.yaml:10:11: error: method kd learns from full, whose learning-rate selection has not finished; run `surgeon compare sweep.yaml --methods full` first (or include it in --methods)"
      )
    }
    XCTAssertEqual(calls, 0)
  }

  func testCellsRunInOrderAndAFailedCellStopsTheRunNamingItsLog() throws {
    var events: [String] = []
    let run = try sweepRun()
    var arguments: [[String]] = []
    XCTAssertThrowsError(
      try run.run(
        methods: ["full"], tableOnly: false,
        apply: { args, log in
          arguments.append(args)
          XCTAssertTrue(log.path.hasSuffix("out/cells/full_lr1e-3_s0.log"), log.path)
          return 3
        },
        events: { event in
          if case .cellStarted(let id) = event { events.append(id) }
        })
    ) { error in
      let text = "\(error)"
      XCTAssertTrue(
        text.hasPrefix("\(self.file("out").path)/cells/full_lr1e-3_s0: error: surgeon apply "),
        text)
      XCTAssertTrue(text.contains("exited with 3; see "), text)
    }
    XCTAssertEqual(events, ["full_lr1e-3_s0"], "the first selection cell, then the stop")
    XCTAssertEqual(arguments.count, 1)
    XCTAssertEqual(arguments.first?.first, "apply")
    XCTAssertEqual(Array(arguments.first?.suffix(2) ?? []), ["--progress", "none"])
    // The derived manifest was written before the cell ran.
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: file("out/manifests/full_lr1e-3_s0.yaml").path))
  }

  func testSeedsLimitWhichCellsRun() throws {
    let run = try sweepRun()
    var started: [String] = []
    func cells(_ seeds: Set<Int>) throws -> [String] {
      started = []
      _ = try run.run(
        methods: ["full"], seeds: seeds, tableOnly: false, apply: { _, _ in 0 },
        events: { if case .cellStarted(let id) = $0 { started.append(id) } })
      return started
    }
    // Seed 0 is the selection seed: both learning rates run there, nothing at seed 1.
    XCTAssertEqual(try cells([0]), ["full_lr1e-3_s0", "full_lr3e-3_s0"])
    // Seed 1 alone: its cells need the chosen rate, which seed 0 has not given (no results);
    // the run says so.
    var warnings: [String] = []
    _ = try run.run(
      methods: ["full"], seeds: [1], tableOnly: false, apply: { _, _ in 0 },
      events: {
        if case .cellStarted(let id) = $0 { XCTFail("ran \(id)") }
        if case .diagnostics(let text) = $0 { warnings.append(text) }
      })
    XCTAssertEqual(
      warnings,
      [
        "sweep.yaml: warning: full at seed 1 waits for its learning rate, chosen once its seed-0 cells finish; nothing ran for it; run `surgeon compare sweep.yaml --methods full --seeds 0` first"
      ])
  }

  func testTableOnlyRunsNothingAndWritesTheOutputs() throws {
    let run = try sweepRun()
    let rows = try run.run(
      methods: ["full", "kd"], tableOnly: true,
      apply: { _, _ in
        XCTFail("table-only ran a cell")
        return 1
      }, events: { _ in })
    XCTAssertTrue(rows.allSatisfy { $0.seeds.isEmpty }, "no cell has finished")
    for name in ["comparison.md", "comparison.json"] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: file("out/\(name)").path), name)
    }
  }

  /// `--dry-run`'s status: which cells finished, which resume from saved state, which rerun
  /// from the start, and which methods still choose a learning rate; nothing is run or written.
  func testStatusSaysWhatFinishedWhatResumesAndWhatReruns() throws {
    let run = try sweepRun()
    var (cells, undecided) = try run.status()
    XCTAssertEqual(cells.map(\.cell.id), ["full_lr1e-3_s0", "full_lr3e-3_s0", "kd_lr1e-2_s0"])
    XCTAssertTrue(cells.allSatisfy { $0.state == .pending })
    XCTAssertEqual(undecided, ["full", "kd"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("out").path), "status wrote")

    // full's selection cells finish (3e-3 wins on validation); its seed-1 cell saves its
    // state at step 2 of 4 and fails.
    _ = try? run.run(
      methods: ["full"], tableOnly: false,
      apply: { arguments, _ in
        let id = URL(fileURLWithPath: arguments[1]).deletingPathExtension().lastPathComponent
        let cell = self.file("out/cells/\(id)")
        try FileManager.default.createDirectory(
          at: cell.appendingPathComponent("state"), withIntermediateDirectories: true)
        switch id {
        case "full_lr1e-3_s0":
          try #"{"test_accuracy": 0.6, "validation_accuracy": 0.6}"#.write(
            to: cell.appendingPathComponent("results.json"), atomically: true, encoding: .utf8)
        case "full_lr3e-3_s0":
          try #"{"test_accuracy": 0.7, "validation_accuracy": 0.8}"#.write(
            to: cell.appendingPathComponent("results.json"), atomically: true, encoding: .utf8)
        default:
          try #"{"step": 2}"#.write(
            to: cell.appendingPathComponent("state/state.json"), atomically: true,
            encoding: .utf8)
          return 1
        }
        return 0
      }, events: { _ in })
    // A directory no derived manifest of this sweep ran in.
    try FileManager.default.createDirectory(
      at: file("out/cells/kd_lr1e-2_s0"), withIntermediateDirectories: true)
    (cells, undecided) = try run.status()
    XCTAssertEqual(
      cells.map { "\($0.cell.id) \($0.state)" },
      [
        "full_lr1e-3_s0 finished(test: 0.6)", "full_lr3e-3_s0 finished(test: 0.7)",
        "full_lr3e-3_s1 partial(step: 2, of: Optional(4))", "kd_lr1e-2_s0 stale",
      ])
    XCTAssertEqual(undecided, ["kd"])
  }

  /// The training left, from the finished cells' seconds per step: a method's own mean, the
  /// median over methods for one with none finished, a partial cell's remaining steps only.
  func testRemainingTrainingIsEstimatedFromTheFinishedCells() {
    func cell(_ method: String, _ seed: Int) -> Cell {
      Cell(method: method, rank: nil, learningRate: "1e-3", seed: seed)
    }
    let statuses = [
      CellStatus(cell: cell("a", 0), state: .finished(test: 0.8), steps: 100, trainSeconds: 100),
      CellStatus(cell: cell("a", 1), state: .finished(test: 0.8), steps: 100, trainSeconds: 300),
      CellStatus(cell: cell("b", 0), state: .finished(test: 0.7), steps: 200, trainSeconds: 200),
      CellStatus(cell: cell("c", 0), state: .finished(test: 0.7), steps: 100, trainSeconds: 500),
      // a: 2 s per step; 150 of 200 steps left.
      CellStatus(cell: cell("a", 2), state: .partial(step: 50, of: 200), steps: 200),
      // b: 1 s per step, 300 steps.
      CellStatus(cell: cell("b", 1), state: .stale, steps: 300),
      // d has no finished cell: the median of 2, 1 and 5 s per step; 10 steps.
      CellStatus(cell: cell("d", 0), state: .pending, steps: 10),
      CellStatus(cell: cell("d", 1), state: .started, steps: nil),
    ]
    let left = CellStatus.remainingTraining(statuses)
    XCTAssertEqual(left.cells, 4)
    let expected: Double = 150 * 2 + 300 * 1 + 10 * 2
    XCTAssertEqual(left.seconds, expected, accuracy: 1e-9)
    XCTAssertEqual(left.unestimated, 1)
    // Nothing finished yet: nothing to go by.
    let none = CellStatus.remainingTraining(Array(statuses.suffix(2)))
    XCTAssertEqual(none.cells, 2)
    XCTAssertEqual(none.unestimated, 2)
    XCTAssertEqual(none.seconds, 0)
  }

  func testAnInvalidBaseManifestIsReportedAtTheSweep() throws {
    try "surgeon: 1\nname: base\n".write(to: file("base.yaml"), atomically: true, encoding: .utf8)
    var shown: [String] = []
    XCTAssertThrowsError(
      try sweepRun { if case .diagnostics(let text) = $0 { shown.append(text) } }
    ) { error in
      XCTAssertEqual(
        "\(error)", "sweep.yaml: error: the base manifest \(self.file("base.yaml").path) is invalid"
      )
    }
    XCTAssertTrue(shown.joined().contains("model"), shown.joined())
  }
}

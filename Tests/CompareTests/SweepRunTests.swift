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
  private func sweepRun(
    records: Bool = false, events: (SweepRun.Event) -> Void = { _ in }
  ) throws -> SweepRun {
    let text = """
      sweep: 1
      name: tiny
      base: \(file("base.yaml").path)
      output: \(file("out").path)
      \(records ? "records: \(file("records").path)" : "")
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
        "sweep.yaml:11:11: error: method kd learns from full, whose learning-rate selection has not finished; run `surgeon compare sweep.yaml --methods full` first (or include it in --methods)"
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

  /// A stand-in for `apply` that finishes the cell it is given: results.json (test accuracy
  /// `tests[id]`, validation 0.8 for 3e-3 and 0.6 otherwise) and predictions.json over four
  /// test examples, `predicted[id]` (default all right). Records the ids it ran.
  private func finishingApply(
    tests: [String: Double] = [:], predicted: [String: [Int]] = [:], ran: @escaping (String) -> Void
  ) -> ([String], URL) throws -> Int32 {
    { arguments, _ in
      let id = URL(fileURLWithPath: arguments[1]).deletingPathExtension().lastPathComponent
      ran(id)
      let cell = self.file("out/cells/\(id)")
      try FileManager.default.createDirectory(at: cell, withIntermediateDirectories: true)
      let validation = id.contains("3e-3") ? 0.8 : 0.6
      try
        #"{"test_accuracy": \#(tests[id] ?? 0.75), "validation_accuracy": \#(validation), "train_seconds": 2.5, "build": {"executable_crc32": "0badf00d"}}"#
        .write(to: cell.appendingPathComponent("results.json"), atomically: true, encoding: .utf8)
      let guesses = predicted[id] ?? [1, 0, 1, 0]
      try
        #"{"split": "test", "model": "as-trained", "indices": [0, 1, 2, 3], "labels": [1, 0, 1, 0], "predicted": \#(guesses)}"#
        .write(
          to: cell.appendingPathComponent("predictions.json"), atomically: true, encoding: .utf8)
      try
        #"{"type": "evaluation", "split": "validation", "step": 4, "accuracy": \#(validation), "exportedAccuracy": \#(validation)}"#
        .write(to: cell.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
      return 0
    }
  }

  /// With `records:`, every finished cell leaves a record, and a run on a machine where the
  /// output directory is gone reads them instead of training again: the same table, nothing run.
  func testRecordsOutliveTheOutputDirectory() throws {
    let run = try sweepRun(records: true)
    var ran: [String] = []
    let first = try run.run(
      methods: ["full"], tableOnly: false,
      apply: finishingApply(tests: ["full_lr3e-3_s1": 0.5]) { ran.append($0) }, events: { _ in })
    XCTAssertEqual(ran, ["full_lr1e-3_s0", "full_lr3e-3_s0", "full_lr3e-3_s1"])
    for id in ran {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: file("records/\(id).json").path),
        "no record of \(id)")
    }
    let recordText = try String(
      contentsOf: file("records/full_lr3e-3_s1.json"), encoding: .utf8)
    XCTAssertTrue(recordText.contains(#""test": 0.5"#), recordText)
    XCTAssertTrue(recordText.contains(#""build": "0badf00d""#), recordText)

    try FileManager.default.removeItem(at: file("out"))
    let (cells, _) = try run.status()
    XCTAssertEqual(
      cells.map { "\($0.cell.id) \($0.state) \($0.recorded)" },
      [
        "full_lr1e-3_s0 finished(test: 0.75) true", "full_lr3e-3_s0 finished(test: 0.75) true",
        "full_lr3e-3_s1 finished(test: 0.5) true", "kd_lr1e-2_s0 pending false",
      ])
    let again = try run.run(
      methods: ["full"], tableOnly: false,
      apply: { arguments, _ in
        XCTFail("ran \(arguments) although its record is kept")
        return 1
      }, events: { _ in })
    XCTAssertEqual(again.map(\.seeds), first.map(\.seeds))
    XCTAssertEqual(again.first?.test.mean, first.first?.test.mean)
    XCTAssertEqual(first.first?.test.mean ?? 0, 0.625, accuracy: 1e-12)
  }

  /// A student needs its teacher's weights, which a record does not keep: the teacher is
  /// trained again from its manifest first, the run says how close it came, and the table keeps
  /// the record.
  func testATeacherKnownOnlyFromItsRecordIsTrainedAgainBeforeItsStudent() throws {
    let run = try sweepRun(records: true)
    _ = try run.run(
      methods: ["full"], seeds: [0], tableOnly: false,
      apply: finishingApply(tests: ["full_lr3e-3_s0": 0.75]) { _ in }, events: { _ in })
    try FileManager.default.removeItem(at: file("out"))

    // Another process is retraining the teacher right now: the student waits.
    var busyTeacher: [String] = []
    _ = try run.run(
      methods: ["kd"], seeds: [0], tableOnly: false,
      apply: { arguments, _ in
        XCTFail("ran \(arguments) while the teacher was busy elsewhere")
        return 1
      },
      claim: {
        $0.lastPathComponent == "full_lr3e-3_s0" ? .held(pid: "77") : .taken(release: {})
      },
      events: { if case .cellBusy(let id, let pid) = $0 { busyTeacher.append("\(id) \(pid)") } })
    XCTAssertEqual(busyTeacher, ["full_lr3e-3_s0 77"])

    var ran: [String] = []
    var reports: [String] = []
    let rows = try run.run(
      methods: ["kd"], seeds: [0], tableOnly: false,
      apply: finishingApply(
        tests: ["full_lr3e-3_s0": 0.5], predicted: ["full_lr3e-3_s0": [1, 1, 0, 0]]
      ) { ran.append($0) },
      events: { event in
        if case .teacherRetraining(let id) = event { reports.append("retraining \(id)") }
        if case .teacherRetrained(let id, let recorded, let retrained, let changed, let total) =
          event
        {
          reports.append("\(id) \(recorded) \(retrained) \(changed ?? -1)/\(total ?? -1)")
        }
      })
    XCTAssertEqual(ran, ["full_lr3e-3_s0", "kd_lr1e-2_s0"], "the teacher first")
    XCTAssertEqual(reports, ["retraining full_lr3e-3_s0", "full_lr3e-3_s0 0.75 0.5 2/4"])
    XCTAssertEqual(rows.first { $0.method == "full" }?.test.mean, 0.75, "the record stays")
    let kept = try String(contentsOf: file("records/full_lr3e-3_s0.json"), encoding: .utf8)
    XCTAssertTrue(kept.contains(#""test": 0.75"#), kept)
    // Its weights are here now: the next student does not retrain it.
    ran = []
    _ = try run.run(
      methods: ["kd"], tableOnly: false, apply: finishingApply { ran.append($0) },
      events: { _ in })
    XCTAssertEqual(ran, ["kd_lr1e-2_s1"])
  }

  /// Two processes on the same methods: a cell another process is running now is left to it,
  /// and the run goes on with the next. The method's other seeds wait until every rate has a
  /// result: a rate chosen from the rates that finished so far could be the wrong one.
  func testACellAnotherProcessIsRunningIsLeftToIt() throws {
    let run = try sweepRun()
    var ran: [String] = []
    var reports: [String] = []
    _ = try run.run(
      methods: ["full"], tableOnly: false, apply: finishingApply { ran.append($0) },
      claim: {
        $0.lastPathComponent == "full_lr1e-3_s0" ? .held(pid: "4242") : .taken(release: {})
      },
      events: { event in
        if case .cellBusy(let id, let pid) = event { reports.append("\(id) \(pid)") }
        if case .diagnostics(let text) = event { reports.append(text) }
      })
    XCTAssertEqual(ran, ["full_lr3e-3_s0"], "no seed-1 cell at a rate chosen from one of two")
    XCTAssertEqual(
      reports,
      [
        "full_lr1e-3_s0 4242",
        "sweep.yaml: warning: full at seed 1 waits for its learning rate, chosen once its seed-0 cells finish; nothing ran for it; run `surgeon compare sweep.yaml --methods full --seeds 0` first",
      ])
    XCTAssertEqual(try run.status().undecided, ["full", "kd"])
  }

  /// Two processes check a cell, find it unfinished and claim it one after the other: the
  /// second takes its claim only once the first has finished the cell, and must not run it
  /// again (over the finished one). Every cell is claimed before it runs and released after.
  func testACellAnotherProcessFinishedBeforeThisOneClaimedItIsNotRunAgain() throws {
    let run = try sweepRun()
    var ran: [String] = []
    var claims: [String] = []
    var otherProcess = true
    _ = try run.run(
      methods: ["full"], seeds: [0], tableOnly: false,
      apply: finishingApply { ran.append("here \($0)") },
      claim: { directory in
        claims.append("claim \(directory.lastPathComponent)")
        if otherProcess {
          otherProcess = false
          // The other process held the claim and ran the seed-0 cells to their end.
          _ = try? run.run(
            methods: ["full"], seeds: [0], tableOnly: false,
            apply: finishingApply { ran.append("there \($0)") }, events: { _ in })
        }
        let name = directory.lastPathComponent
        return .taken(release: { claims.append("release \(name)") })
      }, events: { _ in })
    XCTAssertEqual(ran.filter { $0.hasPrefix("here") }, [], "\(ran)")
    XCTAssertEqual(ran.count, 2, "the other process ran both seed-0 cells: \(ran)")
    XCTAssertEqual(claims.count, 2, "one claim, then the rest was finished: \(claims)")
    XCTAssertTrue(claims[1].hasPrefix("release"), "\(claims)")

    // A cell this process runs is claimed before its apply and released after it.
    var order: [String] = []
    _ = try run.run(
      methods: ["full"], seeds: [1], tableOnly: false,
      apply: finishingApply { order.append("apply \($0)") },
      claim: { directory in
        let name = directory.lastPathComponent
        order.append("claim \(name)")
        return .taken(release: { order.append("release \(name)") })
      }, events: { _ in })
    XCTAssertEqual(
      order.filter { $0.hasSuffix("_s1") },
      ["claim full_lr3e-3_s1", "apply full_lr3e-3_s1", "release full_lr3e-3_s1"])
  }

  /// A record of another manifest is stale (the cell runs again and its record is replaced);
  /// a file that is no record of the cell is an error naming it.
  func testStaleAndBrokenRecords() throws {
    let run = try sweepRun(records: true)
    try FileManager.default.createDirectory(
      at: file("records"), withIntermediateDirectories: true)
    let stale = CellRecord(
      result: CellResult(
        cell: Cell(method: "full", rank: nil, learningRate: "1.0e-3", seed: 0),
        validationAccuracy: 0.1, testAccuracy: 0.1),
      manifest: "another manifest\n")
    try stale.encoded().write(to: file("records/full_lr1e-3_s0.json"))
    var ran: [String] = []
    _ = try run.run(
      methods: ["full"], seeds: [0], tableOnly: false, apply: finishingApply { ran.append($0) },
      events: { _ in })
    XCTAssertEqual(ran, ["full_lr1e-3_s0", "full_lr3e-3_s0"])
    let replaced = try XCTUnwrap(
      CellRecord.read(
        file("records/full_lr1e-3_s0.json"),
        cell: Cell(method: "full", rank: nil, learningRate: "1.0e-3", seed: 0)))
    XCTAssertEqual(replaced.result.testAccuracy, 0.75)

    try "{\"record\": 1, \"id\": \"kd_lr1e-2_s0\"}".write(
      to: file("records/full_lr3e-3_s0.json"), atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try run.status()) { error in
      XCTAssertEqual(
        "\(error)",
        "\(self.file("records/full_lr3e-3_s0.json").path): error: it records cell 'kd_lr1e-2_s0', not 'full_lr3e-3_s0'; restore it from version control, or delete it to rerun the cell"
      )
    }
  }

  /// Everything the comparison reads survives the record: accuracies, counts, curves, losses,
  /// predictions, the build; a validation accuracy that was not a number stays one.
  func testACellRecordKeepsWhatTheComparisonReads() throws {
    let cell = Cell(method: "svd", rank: 8, learningRate: "3.0e-4", seed: 2)
    let result = CellResult(
      cell: cell, validationAccuracy: .nan, testAccuracy: 0.8125, trainSeconds: 12.5,
      endsWFree: true, stuckAtChance: true, deployedParameters: 1234, keptShare: 0.125,
      curve: [(100, 0.5, 0.25), (200, 0.75, 0.625)], losses: [(1, 0.69), (2, 0.5)],
      predictions: CellPredictions(
        model: "w-free", indices: [3, 1], labels: [0, 1], predicted: [0, 0]),
      build: "0badf00d",
      inputs: ["data/x.csv": FileFingerprint(crc32: "3610a686", bytes: 5)])
    let url = file("record.json")
    try CellRecord(result: result, manifest: "surgeon: 1\nname: \"x\"\n").encoded().write(to: url)
    let read = try XCTUnwrap(CellRecord.read(url, cell: cell))
    XCTAssertEqual(read.manifest, "surgeon: 1\nname: \"x\"\n")
    let back = read.result
    XCTAssertTrue(back.validationAccuracy.isNaN)
    XCTAssertEqual(back.testAccuracy, 0.8125)
    XCTAssertEqual(back.trainSeconds, 12.5)
    XCTAssertTrue(back.endsWFree)
    XCTAssertTrue(back.stuckAtChance)
    XCTAssertEqual(back.deployedParameters, 1234)
    XCTAssertEqual(back.keptShare, 0.125)
    XCTAssertEqual(
      back.curve.map { "\($0.step) \($0.accuracy) \($0.wFree)" },
      ["100 0.5 0.25", "200 0.75 0.625"])
    XCTAssertEqual(back.losses.map { "\($0.step) \($0.loss)" }, ["1 0.69", "2 0.5"])
    XCTAssertEqual(back.predictions, result.predictions)
    XCTAssertEqual(back.build, "0badf00d")
    XCTAssertEqual(back.inputs, result.inputs)
    XCTAssertNil(try CellRecord.read(file("missing.json"), cell: cell))
  }

  /// A record names the input files its run read; one whose files differ from the ones here
  /// (a base retrained on another machine) is found before anything runs, while files that
  /// are not here, files inside the sweep's output and records without inputs pass.
  func testRecordsOfOtherInputFilesAreFound() throws {
    let run = try sweepRun(records: true)
    try FileManager.default.createDirectory(
      at: file("records"), withIntermediateDirectories: true)
    let base = file("weights.bin").path
    try Data("hello".utf8).write(to: URL(fileURLWithPath: base))
    let hello = try XCTUnwrap(FileFingerprint.of(path: base))
    let other = FileFingerprint(crc32: "00000000", bytes: 5)
    func record(_ cell: Cell, _ inputs: [String: FileFingerprint]?) throws {
      try CellRecord(
        result: CellResult(
          cell: cell, validationAccuracy: 0.5, testAccuracy: 0.5, inputs: inputs),
        manifest: "m\n"
      ).encoded().write(to: file("records/\(cell.id).json"))
    }
    let cells = [
      Cell(method: "full", rank: nil, learningRate: "1.0e-3", seed: 0),
      Cell(method: "full", rank: nil, learningRate: "3.0e-3", seed: 0),
      Cell(method: "full", rank: nil, learningRate: "1.0e-3", seed: 1),
      Cell(method: "kd", rank: nil, learningRate: "1.0e-2", seed: 0),
    ]
    try record(cells[0], [base: hello, file("missing.csv").path: other])
    try record(cells[1], nil)
    try record(cells[2], [file("out/cells/full-teacher/model.safetensors").path: other])
    try record(cells[3], [base: hello])
    XCTAssertEqual(try run.recordsFromOtherInputs(), [])
    XCTAssertNil(run.inputsError([]))

    // The base changes: both records that name it are found, in the sweep's order.
    try Data("hellO".utf8).write(to: URL(fileURLWithPath: base))
    let changed = try XCTUnwrap(FileFingerprint.of(path: base))
    let mismatches = try run.recordsFromOtherInputs()
    XCTAssertEqual(
      mismatches,
      [
        SweepRun.InputMismatch(
          path: base, here: changed, recorded: hello, cells: ["full_lr1e-3_s0", "kd_lr1e-2_s0"])
      ])
    let error = try XCTUnwrap(run.inputsError(mismatches))
    XCTAssertEqual(
      "\(error)",
      "\(file("records").path): error: records were made from other input files than the ones here:\n"
        + "  \(base) is CRC-32 \(changed.crc32), 5 bytes here, CRC-32 \(hello.crc32), 5 bytes in the records of full_lr1e-3_s0, kd_lr1e-2_s0; "
        + "restore those files as the records' runs read them (a base checkpoint retrained here differs in its last bits), or move the records named aside to run those cells again here"
    )
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

import Foundation
import Models
import Tensor
import XCTest

/// `surgeon compare` end to end: a 2-cell sweep on the tiny BERT fixture, its table, figures and
/// resumability, and a distillation cell taught by the first method's run.
final class CompareCommandTests: XCTestCase {

  private var workspace: URL!

  override func setUpWithError() throws {
    workspace = try makeTinyBertWorkspace(
      prefix: "surgeon-compare", seed: 1, rows: 80, extraWords: 4, groups: false)
    try """
    surgeon: 1
    name: base
    model: {family: bert, checkpoint: checkpoints/tiny-bert}
    surgery:
      - lora: {layers: [query, value], rank: 2, bias_c: zeros, decay: {start: 0.1, end: 0.6}}
      - train: [classifier]
    train:
      task: text-classification
      data:
        train: {format: csv, path: tiny.csv, text: text, label: label}
        labels: ["no", "yes"]
        split: {validation: 0.25, test: 0.25, seed: 0}
        max_length: 12
      steps: 6
      batch_size: 8
      eval_every: 3
    output: {dir: checkpoints/base, compress: true}

    """.write(
      to: workspace.appendingPathComponent("base.yaml"), atomically: true, encoding: .utf8)
    addTeardownBlock { [workspace] in try? FileManager.default.removeItem(at: workspace!) }
  }

  // Methods the sweeps below share (YAML list items under `methods:`): the teacher, a decaying
  // student, a distilled one.
  private static let fullMethod =
    "  - name: full\n    lr: [1.0e-3]\n    set: {surgery: [], output: {compress: false}}\n"
  private static let decayMethod = "  - name: decay-c\n    lr: [1.0e-2]\n"
  private static let distilledMethod =
    "  - name: kd\n    teacher: full\n    lr: [1.0e-2]\n"
    + "    set: {train: {distill: {temperature: 2, logits: 0.5, features: 1.0}}}\n"

  /// The rows of the sweep's `comparison.json`.
  private func comparisonRows() throws -> [[String: Any]] {
    let json = try XCTUnwrap(
      try JSONSerialization.jsonObject(
        with: Data(
          contentsOf: workspace.appendingPathComponent("checkpoints/compare/comparison.json")))
        as? [String: Any])
    return try XCTUnwrap(json["rows"] as? [[String: Any]])
  }

  private func sweep(_ methods: String, records: Bool = false) throws {
    try
      ("""
    sweep: 1
    name: tiny-compare
    base: base.yaml
    output: checkpoints/compare
    seeds: [0]

    """ + (records ? "records: records\n" : "") + "methods:\n" + methods).write(
      to: workspace.appendingPathComponent("sweep.yaml"), atomically: true, encoding: .utf8)
  }

  func testTwoCellSweepWritesTableFiguresAndResumes() throws {
    try sweep(Self.fullMethod + Self.decayMethod)
    let first = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(first.status, 0, first.error)
    XCTAssertTrue(first.error.contains("compare: running full_lr1e-3_s0"), first.error)
    XCTAssertTrue(first.error.contains("compare: running decay-c_lr1e-2_s0"), first.error)
    let output = workspace.appendingPathComponent("checkpoints/compare")
    for file in [
      "comparison.md", "comparison.json", "figures/accuracy-vs-kept.svg",
      "figures/paired-differences.svg", "figures/learning-curves.svg",
      "figures/w-free-during-training.svg",
      "cells/full_lr1e-3_s0/results.json", "manifests/decay-c_lr1e-2_s0.yaml",
    ] {
      XCTAssertTrue(
        FileManager.default.fileExists(atPath: output.appendingPathComponent(file).path), file)
    }
    let rows = try comparisonRows()
    XCTAssertEqual(rows.map { $0["method"] as? String }, ["full", "decay-c"])
    XCTAssertEqual(rows[0]["w_free"] as? Bool, false)
    XCTAssertEqual(rows[0]["kept_share"] as? Double, 1)
    XCTAssertEqual(rows[1]["w_free"] as? Bool, true)
    let kept = try XCTUnwrap(rows[1]["kept_share"] as? Double)
    XCTAssertGreaterThan(kept, 0)
    XCTAssertLessThan(kept, 1, "rank-2 factors are smaller than the wrapped weights")
    let table = try String(
      contentsOf: output.appendingPathComponent("comparison.md"), encoding: .utf8)
    XCTAssertTrue(table.contains("| full | — | 1.0e-3 |"), table)

    // --dry-run says where each cell stands, then a changed method's cell is stale.
    let status = try runSurgeon(["compare", "sweep.yaml", "--dry-run"], in: workspace)
    XCTAssertEqual(status.status, 0, status.error)
    XCTAssertTrue(status.output.contains("cells (2 known; 2 finished):"), status.output)
    XCTAssertTrue(status.output.contains("full_lr1e-3_s0     finished  test "), status.output)
    try sweep(Self.fullMethod + Self.decayMethod + "    set: {train: {steps: 4}}\n")
    let changed = try runSurgeon(["compare", "sweep.yaml", "--dry-run"], in: workspace)
    XCTAssertTrue(
      changed.output.contains("decay-c_lr1e-2_s0  stale     another manifest ran here"),
      changed.output)
    // ... and what the stale cell will cost, from the finished cells' training speed.
    XCTAssertTrue(
      changed.output.contains("left: 1 cell, about 0.0 h of training at the finished cells' speed"),
      changed.output)
    XCTAssertFalse(status.output.contains("left:"), "nothing left: no estimate")
    try sweep(Self.fullMethod + Self.decayMethod)

    // Finished cells are skipped; a changed method runs again.
    let second = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(second.status, 0, second.error)
    XCTAssertFalse(second.error.contains("compare: running"), second.error)
    try sweep(Self.fullMethod + Self.decayMethod + "    set: {train: {steps: 4}}\n")
    let third = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(third.status, 0, third.error)
    XCTAssertFalse(third.error.contains("running full_lr1e-3_s0"), third.error)
    XCTAssertTrue(third.error.contains("running decay-c_lr1e-2_s0"), third.error)
    // The rerun's output is appended to the cell's log, after the first run's.
    let log = try String(
      contentsOf: output.appendingPathComponent("cells/decay-c_lr1e-2_s0.log"), encoding: .utf8)
    XCTAssertEqual(log.components(separatedBy: "Total params").count - 1, 2, log)
  }

  func testRowsArePairedOnTheCellsPredictions() throws {
    try sweep(
      Self.fullMethod + Self.decayMethod + "    reference: full\n"
        + "  - name: decay-long\n    lr: [1.0e-2]\n    reference: decay-c\n"
        + "    set: {train: {steps: 8}}\n")
    let run = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(run.status, 0, run.error)
    let output = workspace.appendingPathComponent("checkpoints/compare")
    func cell(_ id: String) throws -> (predictions: [String: Any], accuracy: Double) {
      let directory = output.appendingPathComponent("cells/\(id)")
      let predictions = try XCTUnwrap(
        try JSONSerialization.jsonObject(
          with: Data(contentsOf: directory.appendingPathComponent("predictions.json")))
          as? [String: Any])
      let results = try XCTUnwrap(
        try JSONSerialization.jsonObject(
          with: Data(contentsOf: directory.appendingPathComponent("results.json")))
          as? [String: Any])
      return (predictions, try XCTUnwrap(results["test_accuracy"] as? Double))
    }
    let full = try cell("full_lr1e-3_s0")
    let decay = try cell("decay-c_lr1e-2_s0")
    let rows = try comparisonRows()
    XCTAssertTrue(rows[0]["paired"] is NSNull, "\(rows[0])")
    XCTAssertEqual(rows[0]["paired_note"] as? String, "reference")
    let paired = try XCTUnwrap(rows[1]["paired"] as? [String: Any], "\(rows[1])")
    XCTAssertEqual(paired["reference"] as? String, "full")
    XCTAssertEqual(paired["seeds"] as? [Int], [0])
    let examples = try XCTUnwrap((full.predictions["indices"] as? [Int])?.count)
    XCTAssertEqual(paired["examples"] as? Int, examples)
    // One seed: Δ is the difference of the two runs' reported test accuracies.
    let delta = try XCTUnwrap(paired["delta"] as? Double)
    XCTAssertEqual(delta, decay.accuracy - full.accuracy, accuracy: 1e-6)
    let interval = try XCTUnwrap(paired["ci95"] as? [Double])
    XCTAssertLessThanOrEqual(interval[0], delta)
    XCTAssertGreaterThanOrEqual(interval[1], delta)
    // The discordant counts, recounted from the two files.
    let labels = try XCTUnwrap(full.predictions["labels"] as? [Int])
    let mine = try XCTUnwrap(decay.predictions["predicted"] as? [Int])
    let theirs = try XCTUnwrap(full.predictions["predicted"] as? [Int])
    let rowOnly = labels.indices.filter { mine[$0] == labels[$0] && theirs[$0] != labels[$0] }
    let referenceOnly = labels.indices.filter {
      mine[$0] != labels[$0] && theirs[$0] == labels[$0]
    }
    XCTAssertEqual(paired["row_only_correct"] as? Int, rowOnly.count)
    XCTAssertEqual(paired["reference_only_correct"] as? Int, referenceOnly.count)
    XCTAssertEqual(
      (rows[2]["paired"] as? [String: Any])?["reference"] as? String, "decay-c",
      "a method's reference: wins over the first method")
    let table = try String(
      contentsOf: output.appendingPathComponent("comparison.md"), encoding: .utf8)
    XCTAssertTrue(table.contains("McNemar"), table)
    XCTAssertTrue(table.contains(" vs decay-c |"), table)
    XCTAssertTrue(
      FileManager.default.fileExists(
        atPath: output.appendingPathComponent("figures/paired-differences.svg").path))

    // A run from before predictions.json: not paired, and the table says why.
    try FileManager.default.removeItem(
      at: output.appendingPathComponent("cells/decay-c_lr1e-2_s0/predictions.json"))
    let old = try runSurgeon(["compare", "sweep.yaml", "--table-only"], in: workspace)
    XCTAssertEqual(old.status, 0, old.error)
    let oldRows = try comparisonRows()
    XCTAssertTrue(oldRows[1]["paired"] is NSNull, "\(oldRows[1])")
    XCTAssertEqual(
      oldRows[1]["paired_note"] as? String,
      "no predictions.json for seed 0 (run before apply wrote it)")
    XCTAssertTrue(oldRows[2]["paired"] is NSNull, "its reference has none either")
    XCTAssertTrue(
      old.output.contains("— (vs full: no predictions.json for seed 0"), old.output)

    // A method naming no method of the sweep is an error at its line.
    try sweep(Self.fullMethod + Self.decayMethod + "    reference: ful\n")
    let bad = try runSurgeon(["compare", "sweep.yaml", "--dry-run"], in: workspace)
    XCTAssertEqual(bad.status, 1, bad.error)
    XCTAssertTrue(
      bad.error.contains(
        "sweep.yaml:12:16: error: reference 'ful' must name another method of this sweep"),
      bad.error)
  }

  /// A sweep with `records:` on a machine where its output directory is gone (a fresh clone):
  /// the table comes back from the records alone, byte for byte, and a student's teacher is
  /// trained again from its record's manifest before the student runs.
  func testRecordsBringASweepBackWithoutItsOutputDirectory() throws {
    try sweep(Self.fullMethod + Self.decayMethod, records: true)
    let first = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(first.status, 0, first.error)
    let output = workspace.appendingPathComponent("checkpoints/compare")
    let table = try String(
      contentsOf: output.appendingPathComponent("comparison.md"), encoding: .utf8)
    for id in ["full_lr1e-3_s0", "decay-c_lr1e-2_s0"] {
      XCTAssertTrue(
        FileManager.default.fileExists(
          atPath: workspace.appendingPathComponent("records/\(id).json").path), id)
    }

    try FileManager.default.removeItem(at: output)
    let status = try runSurgeon(["compare", "sweep.yaml", "--dry-run"], in: workspace)
    XCTAssertEqual(status.status, 0, status.error)
    XCTAssertTrue(status.output.contains("cells (2 known; 2 finished):"), status.output)
    XCTAssertTrue(status.output.contains("(recorded)"), status.output)
    let again = try runSurgeon(["compare", "sweep.yaml", "--table-only"], in: workspace)
    XCTAssertEqual(again.status, 0, again.error)
    XCTAssertEqual(
      try String(contentsOf: output.appendingPathComponent("comparison.md"), encoding: .utf8),
      table, "the records give the same table")

    // A student of `full`: its teacher's weights are gone with the directory.
    try sweep(Self.fullMethod + Self.decayMethod + Self.distilledMethod, records: true)
    let student = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(student.status, 0, student.error)
    XCTAssertTrue(
      student.error.contains(
        "compare: full_lr1e-3_s0 is known from its record only; training it again"),
      student.error)
    XCTAssertTrue(student.error.contains("compare: full_lr1e-3_s0 retrained: test "), student.error)
    XCTAssertTrue(student.error.contains("the table keeps the record"), student.error)
    // Same build, same machine, same seed: the retrained teacher is the recorded one.
    XCTAssertTrue(student.error.contains(", 0 of 20 test predictions changed"), student.error)
    XCTAssertTrue(student.error.contains("compare: running kd_lr1e-2_s0"), student.error)
    XCTAssertFalse(student.error.contains("running decay-c"), "decay-c needs no weights")
    XCTAssertTrue(
      FileManager.default.fileExists(
        atPath: output.appendingPathComponent("cells/full_lr1e-3_s0/model.safetensors").path))

    // Each record names the files its run read; the teacher's weights, inside the sweep's
    // output, are named too (and never compared).
    let record = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: workspace.appendingPathComponent("records/kd_lr1e-2_s0.json")))
        as? [String: Any])
    let inputs = try XCTUnwrap(record["inputs"] as? [String: Any])
    XCTAssertEqual(
      Set(inputs.keys),
      [
        "tiny.csv", "checkpoints/tiny-bert/config.json", "checkpoints/tiny-bert/model.safetensors",
        "checkpoints/tiny-bert/vocab.txt", "checkpoints/compare/cells/full_lr1e-3_s0/config.json",
        "checkpoints/compare/cells/full_lr1e-3_s0/model.safetensors",
        "checkpoints/compare/cells/full_lr1e-3_s0/vocab.txt",
      ])
    // The data changes under the records: nothing runs, and the error names the file, the
    // records and the fix; a table of the records alone still prints, with the warning.
    let data = workspace.appendingPathComponent("tiny.csv")
    try (String(contentsOf: data, encoding: .utf8) + "a b c,yes\n").write(
      to: data, atomically: true, encoding: .utf8)
    let refused = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(refused.status, 1, refused.error)
    XCTAssertTrue(
      refused.error.contains(
        "records: error: records were made from other input files than the ones here:\n  tiny.csv is CRC-32 "
      ),
      refused.error)
    XCTAssertTrue(
      refused.error.contains("in the records of full_lr1e-3_s0, decay-c_lr1e-2_s0, kd_lr1e-2_s0;"),
      refused.error)
    XCTAssertFalse(refused.error.contains("compare: running"), refused.error)
    let warned = try runSurgeon(["compare", "sweep.yaml", "--table-only"], in: workspace)
    XCTAssertEqual(warned.status, 0, warned.error)
    XCTAssertTrue(
      warned.error.contains("records: warning: records were made from other input files"),
      warned.error)
  }

  func testDistillationCellIsTaughtByTheTeachersRun() throws {
    try sweep(Self.fullMethod + Self.distilledMethod)
    let run = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(run.status, 0, run.error)
    let manifest = try String(
      contentsOf: workspace.appendingPathComponent(
        "checkpoints/compare/manifests/kd_lr1e-2_s0.yaml"), encoding: .utf8)
    XCTAssertTrue(
      manifest.contains("teacher: \"checkpoints/compare/cells/full_lr1e-3_s0\""), manifest)
  }

  func testMethodsOptionRunsOnlyThoseAndWaitsForTheTeacher() throws {
    try sweep(Self.fullMethod + Self.decayMethod + Self.distilledMethod)
    let unknown = try runSurgeon(["compare", "sweep.yaml", "--methods", "ful"], in: workspace)
    XCTAssertEqual(unknown.status, 2, unknown.error)
    XCTAssertTrue(unknown.error.contains("--methods: no method ful"), unknown.error)

    // The student cannot run before its teacher has chosen a rate, and says what to run.
    let early = try runSurgeon(["compare", "sweep.yaml", "--methods", "kd"], in: workspace)
    XCTAssertEqual(early.status, 1, early.error)
    XCTAssertTrue(
      early.error.contains("run `surgeon compare sweep.yaml --methods full` first"), early.error)
    XCTAssertFalse(early.error.contains("compare: running"), early.error)

    let teacher = try runSurgeon(
      ["compare", "sweep.yaml", "--methods", "full, decay-c"], in: workspace)
    XCTAssertEqual(teacher.status, 0, teacher.error)
    XCTAssertTrue(teacher.error.contains("compare: running full_lr1e-3_s0"), teacher.error)
    XCTAssertTrue(teacher.error.contains("compare: running decay-c_lr1e-2_s0"), teacher.error)
    XCTAssertFalse(teacher.error.contains("compare: running kd"), teacher.error)

    let student = try runSurgeon(["compare", "sweep.yaml", "--methods", "kd"], in: workspace)
    XCTAssertEqual(student.status, 0, student.error)
    XCTAssertTrue(student.error.contains("compare: running kd_lr1e-2_s0"), student.error)
    XCTAssertFalse(student.error.contains("compare: running full"), student.error)
    let rows = try comparisonRows()
    XCTAssertEqual(rows.map { $0["method"] as? String }, ["full", "decay-c", "kd"])
  }

  func testSeedsOptionIsCheckedBeforeAnyCell() throws {
    try sweep(Self.fullMethod)
    let word = try runSurgeon(["compare", "sweep.yaml", "--seeds", "zero"], in: workspace)
    XCTAssertEqual(word.status, 2, word.error)
    XCTAssertTrue(word.error.contains("--seeds: zero is not a seed"), word.error)
    let unknown = try runSurgeon(["compare", "sweep.yaml", "--seeds", "0,7"], in: workspace)
    XCTAssertEqual(unknown.status, 2, unknown.error)
    XCTAssertTrue(unknown.error.contains("no method of sweep.yaml runs seed 7"), unknown.error)
    XCTAssertFalse(unknown.error.contains("compare: running"), unknown.error)
  }

  func testBadMethodIsReportedAtItsLine() throws {
    try sweep(
      """
        - name: broken
          lr: [1.0e-3]
          set: {train: {steps: -1}}

      """)
    let run = try runSurgeon(["compare", "sweep.yaml"], in: workspace)
    XCTAssertEqual(run.status, 1)
    XCTAssertTrue(run.error.contains("train.steps"), run.error)
    XCTAssertTrue(run.error.contains("sweep.yaml:7:11: error: method broken"), run.error)
  }
}

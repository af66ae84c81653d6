import Foundation
import Manifest
import Models
import Plumbing
import Tensor
import Training
import XCTest

/// `TrainingRun` as a library: the events it reports, `stopAfter`, and a resume that ends
/// bitwise where the uninterrupted run ends (no subprocess).
final class TrainingRunTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  /// A tiny BERT classifier with decaying, noisy adapters on the attention (so the resumed
  /// run must also restore the noise's random stream) and a compressed export.
  private let manifest = """
    surgeon: 1
    name: library-run
    model:
      family: bert
      checkpoint: checkpoints/tiny-bert
    surgery:
      - lora:
          layers: [query, value]
          rank: 2
          bias_c: zeros
          decay: {shape: linear, start: 0.1, end: 0.8}
          noise: {stats: global, clear_below: 0.3, scale: 1.0}
      - train: [classifier]
    train:
      task: text-classification
      data:
        train: {format: csv, path: tiny.csv, text: text, label: label}
        split: {validation: 0.2, test: 0.2, seed: 0}
        max_length: 12
      steps: 6
      batch_size: 8
      optimizer: {name: adamw, lr: 1.0e-2}
      eval_every: 2
      seed: 0
    output:
      dir: out/library-run
      compress: true
    """

  /// A fresh directory with the tiny-BERT fixture, `tiny.csv` (labelled "yes" exactly when the
  /// word "a" is in the text) and `run.yaml`.
  private func makeWorkspace() throws -> URL {
    let workspace = FileManager.default.temporaryDirectory.appendingPathComponent(
      "training-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(
      at: workspace.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../SurgeonTests/Fixtures/tiny-bert").standardizedFileURL
    try FileManager.default.copyItem(
      at: fixture, to: workspace.appendingPathComponent("checkpoints/tiny-bert"))
    var random = RandomStream(seed: 7)
    let letters = "bcdefghijklmnopqrstuvwxyz".map(String.init)
    var rows = ["text,label"]
    for index in 0..<60 {
      var words = (0..<(3 + random.nextInt(below: 5))).map { _ in
        letters[random.nextInt(below: 25)]
      }
      if index % 2 == 0 { words.insert("a", at: random.nextInt(below: words.count)) }
      rows.append(words.joined(separator: " ") + "," + (index % 2 == 0 ? "yes" : "no"))
    }
    try (rows.joined(separator: "\n") + "\n").write(
      to: workspace.appendingPathComponent("tiny.csv"), atomically: true, encoding: .utf8)
    try manifest.write(
      to: workspace.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
    // A directory URL, as the command line's working directory is: paths resolve inside it.
    return URL(fileURLWithPath: workspace.path, isDirectory: true)
  }

  /// Prepares `run.yaml` in `workspace` and runs it, collecting the events.
  private func run(
    in workspace: URL, resume: Bool = false, stopAfter: Int? = nil
  ) throws -> (RunOutcome, [RunEvent]) {
    let path = workspace.appendingPathComponent("run.yaml").path
    let (decoded, decodeDiagnostics) = ManifestDecoder.decode(contentsOf: path)
    let manifest = try XCTUnwrap(decoded, "\(decodeDiagnostics)")
    try TrainingRun.checkDestination(
      of: manifest, workingDirectory: workspace, resume: resume, overwrite: false)
    let (prepared, diagnostics) = RunSetup.prepare(manifest, workingDirectory: workspace)
    let setup = try XCTUnwrap(prepared, "\(diagnostics)")
    let run = TrainingRun(
      manifest: manifest, manifestPath: path, setup: setup, workingDirectory: workspace,
      resume: resume, stopAfter: stopAfter)
    var events: [RunEvent] = []
    let outcome = try run.run { events.append($0) }
    return (outcome, events)
  }

  /// The events in a compact form: `started 0/6`, `step 1`, `evaluated 2`, `ended`, `note`,
  /// `warning`.
  private func kinds(_ events: [RunEvent]) -> [String] {
    events.map { event in
      switch event {
      case .started(let step, let steps): return "started \(step)/\(steps)"
      case .step(let record): return "step \(record.step)"
      case .evaluated(let evaluation, let record):
        return "evaluated \(record.step) \(evaluation.split) \(evaluation.step)"
      case .trainingEnded: return "ended"
      case .note: return "note"
      case .warning: return "warning"
      }
    }
  }

  /// The training part of the event stream (from `started` to `ended`).
  private func trainingPart(_ events: [RunEvent]) -> [String] {
    let all = kinds(events)
    guard let start = all.firstIndex(where: { $0.hasPrefix("started") }),
      let end = all.firstIndex(of: "ended")
    else { return all }
    return Array(all[start...end])
  }

  func testEventsArriveInOrderAndAResumedRunEndsBitwiseAsTheUninterruptedOne() throws {
    let whole = try makeWorkspace()
    let interrupted = try makeWorkspace()
    defer {
      try? FileManager.default.removeItem(at: whole)
      try? FileManager.default.removeItem(at: interrupted)
    }

    let (outcome, events) = try run(in: whole)
    guard case .finished(let results?) = outcome else {
      return XCTFail("expected finished with results, got \(outcome)")
    }
    XCTAssertEqual(results.steps, 6)
    // results.json names the files the run read, as the manifest names them, with their
    // fingerprints (the checkpoint has no pytorch_model.bin: only files that exist).
    var expected: [String: FileFingerprint] = [:]
    for path in [
      "checkpoints/tiny-bert/config.json", "checkpoints/tiny-bert/model.safetensors",
      "checkpoints/tiny-bert/vocab.txt", "tiny.csv",
    ] {
      expected[path] = try XCTUnwrap(
        FileFingerprint.of(path: whole.appendingPathComponent(path).path), path)
    }
    XCTAssertEqual(results.inputs, expected)
    let written = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: whole.appendingPathComponent("out/library-run/results.json")))
        as? [String: Any])
    let inputs = try XCTUnwrap(written["inputs"] as? [String: [String: Any]])
    XCTAssertEqual(inputs["tiny.csv"]?["crc32"] as? String, expected["tiny.csv"]?.crc32)
    XCTAssertEqual(inputs["tiny.csv"]?["bytes"] as? Int, expected["tiny.csv"]?.bytes)
    XCTAssertEqual(
      trainingPart(events),
      [
        "started 0/6", "step 1", "step 2", "evaluated 2 validation 2", "step 3", "step 4",
        "evaluated 4 validation 4", "step 5", "step 6", "evaluated 6 validation 6", "ended",
      ])
    // Notes before the loop (the summary table, the data line); after it notes (the timing,
    // the PEFT adapter) and warnings (six steps leave this model at chance), each one line that
    // names its file.
    let all = kinds(events)
    let started = try XCTUnwrap(all.firstIndex(of: "started 0/6"))
    let ended = try XCTUnwrap(all.firstIndex(of: "ended"))
    XCTAssertEqual(Set(all[..<started]), ["note"])
    XCTAssertTrue(Set(all[(ended + 1)...]).isSubset(of: ["note", "warning"]))
    XCTAssertTrue(all[(ended + 1)...].contains("note"))
    for case .warning(let line) in events {
      XCTAssertTrue(line.contains(": warning: ") && !line.contains("\n"), line)
    }
    let notes = events.compactMap { event -> String? in
      if case .note(let line) = event { return line }
      return nil
    }
    XCTAssertTrue(notes.contains { $0.hasPrefix("data: ") }, "\(notes)")

    let (stopped, stoppedEvents) = try run(in: interrupted, stopAfter: 3)
    guard case .stopped(let step) = stopped else {
      return XCTFail("expected stopped, got \(stopped)")
    }
    XCTAssertEqual(step, 3)
    XCTAssertEqual(
      trainingPart(stoppedEvents),
      ["started 0/6", "step 1", "step 2", "evaluated 2 validation 2", "step 3", "ended"])
    let output = "out/library-run"
    XCTAssertFalse(
      FileManager.default.fileExists(
        atPath: interrupted.appendingPathComponent("\(output)/results.json").path))

    let (resumed, resumedEvents) = try run(in: interrupted, resume: true)
    guard case .finished(let resumedResults?) = resumed else {
      return XCTFail("expected finished with results, got \(resumed)")
    }
    XCTAssertEqual(
      trainingPart(resumedEvents),
      [
        "started 3/6", "step 4", "evaluated 4 validation 4", "step 5", "step 6",
        "evaluated 6 validation 6", "ended",
      ])
    XCTAssertEqual(resumedResults.testAccuracy, results.testAccuracy)
    XCTAssertEqual(resumedResults.validationAccuracy, results.validationAccuracy)
    // Bitwise: the checkpoints, the compressed export, the per-step metrics and the
    // predictions are the same bytes (the manifest and the paths are the same in both).
    for file in [
      "model.safetensors", "compressed/model.safetensors", "metrics.jsonl", "predictions.json",
    ] {
      let a = try Data(contentsOf: whole.appendingPathComponent("\(output)/\(file)"))
      let b = try Data(contentsOf: interrupted.appendingPathComponent("\(output)/\(file)"))
      XCTAssertEqual(a, b, file)
    }
    // And the trained parameters hold real values (not a run that did nothing).
    let before = try CheckpointLoader.load(
      directory: whole.appendingPathComponent("checkpoints/tiny-bert")
    ).model
    let after = try CheckpointLoader.load(directory: whole.appendingPathComponent(output)).model
    let original = Dictionary(uniqueKeysWithValues: before.namedParameters)
    let trained = Dictionary(uniqueKeysWithValues: after.namedParameters)
    let classifier = try XCTUnwrap(trained["classifier.weight"])
    XCTAssertNotEqual(classifier.scalars, original["classifier.weight"]?.scalars)
  }
}

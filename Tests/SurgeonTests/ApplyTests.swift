import Foundation
import Models
import Plumbing
import SafeTensors
import Tensor
import XCTest

/// `surgeon apply` end to end on the tiny BERT fixture and a small synthetic CSV.
final class ApplyTests: XCTestCase {

  private var workspace: URL!

  override func setUpWithError() throws {
    workspace = try makeTinyBertWorkspace(
      prefix: "surgeon-apply", seed: 1, rows: 120, extraWords: 5, groups: true)
    addTeardownBlock { [workspace] in try? FileManager.default.removeItem(at: workspace!) }
  }

  private func manifest(name: String, compress: Bool = true) -> String {
    """
    surgeon: 1
    name: \(name)
    model:
      family: bert
      checkpoint: checkpoints/tiny-bert
    surgery:
      - lora:
          layers: [query, value, dense]
          rank: 4
          bias_c: zeros
          decay: {start: 0.1, end: 0.7}
          noise: {stats: per_output, clear_below: 0.3, scale: 0.5}
      - train: [classifier]
    train:
      task: text-classification
      data:
        train: {format: csv, path: tiny.csv, text: text, label: label}
        labels: ["no", "yes"]
        split: {validation: 0.2, test: 0.2, group_by: group, seed: 0}
        max_length: 16
      steps: 24
      batch_size: 8
      optimizer: {name: adamw, lr: 1.0e-2}
      eval_every: 8
    output:
      compress: \(compress)
      checkpoint_every: 6

    """
  }

  @discardableResult
  private func apply(_ arguments: [String], expecting status: Int32 = 0) throws -> String {
    let run = try runSurgeon(["apply"] + arguments + ["--progress", "lines"], in: workspace)
    XCTAssertEqual(run.status, status, run.error)
    return run.error
  }

  private func write(_ text: String, _ name: String) throws -> String {
    try text.write(
      to: workspace.appendingPathComponent(name), atomically: true, encoding: .utf8)
    return name
  }

  private func file(_ path: String) -> URL { workspace.appendingPathComponent(path) }

  /// The test manifest with `init: svd_whitened` (and `refit`), `batches` calibration batches and
  /// a rank budget.
  private func whitened(_ name: String, batches: Int, refit: String? = nil) -> String {
    manifest(name: name).replacingOccurrences(
      of: "      bias_c: zeros\n",
      with: "      init: svd_whitened\n" + (refit.map { "      refit: \($0)\n" } ?? "")
    )
    .replacingOccurrences(
      of: "      noise: {stats: per_output, clear_below: 0.3, scale: 0.5}\n",
      with: "      calibration: {batches: \(batches)}\n      budget: {share: 0.5, floor: 2}\n")
  }

  /// Applies `text` as `NAME.yaml` and checks that the run ended W-free and exported it;
  /// returns the run's log.
  @discardableResult
  private func assertTrainsAndExportsWFree(_ text: String, name: String) throws -> String {
    let path = try write(text, "\(name).yaml")
    let log = try apply([path])
    let results = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: file("checkpoints/\(name)/results.json"))) as? [String: Any])
    XCTAssertEqual(results["ends_w_free"] as? Bool, true)
    XCTAssertTrue(
      FileManager.default.fileExists(
        atPath: file("checkpoints/\(name)/compressed/model.safetensors").path))
    return log
  }

  /// `init: svd_whitened` end to end: the calibration pass runs on training batches and the run
  /// trains and exports; a calibration larger than the training split is refused at its line
  /// before anything is written.
  func testWhitenedInitCalibratesTrainsAndRefusesTooManyBatches() throws {
    let text = whitened("whitened", batches: 3)
    XCTAssertTrue(text.contains("calibration:"))
    let log = try assertTrainsAndExportsWFree(text, name: "whitened")
    // The log and results.json say how much of each node's output its starting factors leave
    // out on the calibration inputs.
    XCTAssertTrue(log.contains("whitened start: output error on the calibration inputs"), log)
    let results = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: file("checkpoints/whitened/results.json"))) as? [String: Any])
    let starts = try XCTUnwrap(results["whitened"] as? [[String: Any]])
    XCTAssertFalse(starts.isEmpty)
    for start in starts {
      XCTAssertGreaterThanOrEqual(try XCTUnwrap(start["rank"] as? Int), 2, "the floor")
      let error = try XCTUnwrap(start["calibration_output_error"] as? Double, "\(start)")
      XCTAssertTrue(error >= 0 && error < 1, "\(start)")
    }

    let bad = try write(whitened("too-many", batches: 50), "too-many.yaml")
    let error = try apply([bad], expecting: 1)
    XCTAssertTrue(
      error.contains("too-many.yaml:12:7: error: calibration needs 400 training examples"), error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/too-many").path))
  }

  /// `refit: sequential` end to end: after the calibration the factors are refitted node by
  /// node over the same training batches (one held out to choose each node's ridge), the run
  /// trains and exports W-free, and the log and results.json say what was chosen.
  func testWhitenedInitWithSequentialRefitTrainsAndExports() throws {
    let text = whitened("refit", batches: 2, refit: "sequential")
    XCTAssertTrue(text.contains("refit: sequential"))
    let log = try assertTrainsAndExportsWFree(text, name: "refit")
    XCTAssertTrue(log.contains("nodes refitted"), log)
    // A refitted node's start is described by its held-out errors, not the calibration's.
    let refitResults = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file("checkpoints/refit/results.json")))
        as? [String: Any])
    let starts = try XCTUnwrap(refitResults["whitened"] as? [[String: Any]])
    XCTAssertTrue(starts.contains { $0["calibration_output_error"] is NSNull }, "\(starts)")
    let results = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file("checkpoints/refit/results.json")))
        as? [String: Any])
    let choices = try XCTUnwrap(results["refit"] as? [[String: Any]])
    XCTAssertFalse(choices.isEmpty)
    for choice in choices {
      let whitened = try XCTUnwrap(choice["held_out_error_whitened"] as? Double)
      let chosen = try XCTUnwrap(choice["held_out_error"] as? Double)
      XCTAssertLessThanOrEqual(chosen, whitened, "\(choice)")
      XCTAssertGreaterThan(try XCTUnwrap(choice["held_out_rows"] as? Int), 0)
      XCTAssertTrue(choice["node"] is String)
    }
  }

  /// A layer too wide to whiten (its covariance would not fit in memory) is refused at the rule
  /// before the calibration pass or anything else runs.
  func testWhitenedInitRefusesALayerTooWideToWhiten() throws {
    let images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    guard FileManager.default.fileExists(atPath: images) else {
      throw XCTSkip("Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)")
    }
    let text = """
      surgeon: 1
      name: wide
      model:
        family: vgg
        preset: vgg11
        weights: random
        config: {cfg: [32], in_channels: 1, image_size: 28, num_classes: 10, classifier_hidden: [8], avgpool: null, dropout: 0.0}
      surgery:
        - lora: {layers: [fc], rank: 2, init: svd_whitened, decay: {}}
      train:
        task: image-classification
        data:
          train:
            format: idx
            images: \(images)
            labels: /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
          split: {validation: 0.1, test: 0.1, seed: 0, part: "1/50"}
        steps: 2
        batch_size: 8

      """
    let error = try apply([try write(text, "wide.yaml")], expecting: 1)
    XCTAssertTrue(
      error.contains(
        "wide.yaml:9:5: error: init svd_whitened needs the 25088×25088 input covariance of classifier.0"
      ), error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/wide").path))
  }

  func testApplyTrainsExportsAndResumesBitwise() throws {
    let full = try write(manifest(name: "run"), "run.yaml")
    let log = try apply([full])
    // The log's first line names the kernels and the processor.
    let first = log.split(separator: "\n").first.map(String.init) ?? ""
    XCTAssertTrue(first.hasPrefix("surgeon apply run.yaml: BLAS core "), first)
    XCTAssertTrue(first.contains("CPU \(Processor.current.model)"), first)
    let output = "checkpoints/run/"
    for name in [
      "model.safetensors", "config.json", "vocab.txt", "results.json", "metrics.jsonl",
      "report.md", "compressed/model.safetensors", "compressed/config.json",
      "figures/schedule.svg", "figures/noise.svg", "figures/bias.svg", "figures/curves.svg",
      "state/state.json",
    ] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: file(output + name).path), name)
    }
    let results = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file(output + "results.json")))
        as? [String: Any])
    for key in [
      "name", "steps", "train_seconds", "params", "validation_accuracy", "test_accuracy",
      "test_accuracy_with_w", "majority_class", "stuck_at_chance",
    ] {
      XCTAssertNotNil(results[key], key)
    }
    XCTAssertTrue(results["test_accuracy_with_w"] is NSNull, "W is gone at the end")
    // Where the numbers were made: the kernels and the processor.
    XCTAssertNotNil(BLASCore.level(of: results["blas_core"] as? String ?? "?"), "\(results)")
    XCTAssertEqual(results["cpu_model"] as? String, Processor.current.model)
    XCTAssertEqual(results["cpu_features"] as? [String], Processor.current.featureList)
    // ... and which build made them.
    let build = try XCTUnwrap(results["build"] as? [String: Any], "\(results)")
    XCTAssertEqual(build["version"] as? String, BuildIdentity.releaseVersion)
    let executable = Bundle.main.bundleURL.appendingPathComponent("surgeon").path
    XCTAssertEqual(
      build["executable_crc32"] as? String, try BuildIdentity.fileChecksum(atPath: executable).crc32
    )
    // The exported model, reloaded, reproduces the W-free test accuracy exactly.
    XCTAssertEqual(
      results["exported_reload_test_accuracy"] as? Double, results["test_accuracy"] as? Double)
    // predictions.json holds the deployed (W-free) model's class for every test example: its
    // accuracy is the reported one.
    let predictions = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file(output + "predictions.json")))
        as? [String: Any])
    XCTAssertEqual(predictions["model"] as? String, "w-free")
    let labels = try XCTUnwrap(predictions["labels"] as? [Int])
    let predicted = try XCTUnwrap(predictions["predicted"] as? [Int])
    XCTAssertEqual((predictions["indices"] as? [Int])?.count, labels.count)
    XCTAssertEqual(predicted.count, labels.count)
    XCTAssertFalse(labels.isEmpty)
    let correct = zip(labels, predicted).filter { $0 == $1 }.count
    XCTAssertEqual(
      Double(correct) / Double(labels.count), try XCTUnwrap(results["test_accuracy"] as? Double),
      accuracy: 1e-12)
    let metadata = try SafeTensorsFile.read(contentsOf: file(output + "model.safetensors")).metadata
    XCTAssertEqual(metadata["surgeon.format"], "1")
    XCTAssertTrue(metadata["surgeon.manifest"]?.contains("name: run") == true)
    let trainable = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(metadata["surgeon.trainable"]!.utf8)) as? [String])
    XCTAssertTrue(trainable.contains("classifier.weight"))
    XCTAssertFalse(trainable.contains("bert.encoder.layer.0.attention.self.query.weight"))
    let compressed = try SafeTensorsFile.read(
      contentsOf: file(output + "compressed/model.safetensors"))
    XCTAssertNil(compressed.tensors["bert.encoder.layer.0.attention.self.query.weight"])
    XCTAssertNotNil(compressed.tensors["bert.encoder.layer.0.attention.self.query.down.weight"])
    // Figures are well-formed SVG.
    for figure in ["schedule.svg", "noise.svg", "bias.svg", "curves.svg", "adapters.svg"] {
      let svg = try String(contentsOf: file(output + "figures/" + figure), encoding: .utf8)
      XCTAssertTrue(
        svg.contains("<svg") && svg.hasSuffix("</svg>\n") || svg.hasSuffix("</svg>"), figure)
    }
    let lines = try String(contentsOf: file(output + "metrics.jsonl"), encoding: .utf8)
      .split(separator: "\n")
    XCTAssertEqual(lines.filter { $0.contains("\"type\":\"step\"") }.count, 24)

    // The same run interrupted after step 9 and resumed ends bitwise equal.
    let interrupted = try write(
      manifest(name: "run").replacingOccurrences(of: "name: run", with: "name: resumed"),
      "resumed.yaml")
    let stopped = try apply([interrupted, "--stop-after", "9"], expecting: 3)
    XCTAssertTrue(stopped.contains("continue with --resume"), stopped)
    // The state keeps the training time so far; the resumed run's train_seconds adds to it.
    let saved = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: file("checkpoints/resumed/state/state.json"))) as? [String: Any])
    let before = try XCTUnwrap(saved["trainSeconds"] as? Double)
    XCTAssertGreaterThan(before, 0)
    try apply([interrupted, "--resume"])
    let a = try SafeTensorsFile.read(contentsOf: file(output + "model.safetensors"))
    let b = try SafeTensorsFile.read(contentsOf: file("checkpoints/resumed/model.safetensors"))
    XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
    for (name, tensor) in a.tensors {
      guard case .float(let x) = tensor, case .float(let y)? = b.tensors[name] else { continue }
      XCTAssertTrue(x.isBitwiseEqual(to: y), "\(name) differs after resume")
    }
    let resumedResults = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: file("checkpoints/resumed/results.json"))) as? [String: Any])
    XCTAssertEqual(resumedResults["test_accuracy"] as? Double, results["test_accuracy"] as? Double)
    XCTAssertGreaterThan(try XCTUnwrap(resumedResults["train_seconds"] as? Double), before)
  }

  func testExportWritesTheWFreeModelAndRefusesAnUnfinishedDecay() throws {
    // A finished run: every layer at d = 0.
    try apply([try write(manifest(name: "done", compress: false), "done.yaml")])
    let exported = try runSurgeon(
      ["export", "checkpoints/done", "--out", "exported"], in: workspace)
    XCTAssertEqual(exported.status, 0, exported.error)
    let file = try SafeTensorsFile.read(contentsOf: self.file("exported/model.safetensors"))
    XCTAssertNil(file.tensors["bert.encoder.layer.0.attention.self.query.weight"])
    XCTAssertNotNil(file.tensors["bert.encoder.layer.0.attention.self.query.up.weight"])
    // Without a train section apply only rewrites: the adapters are at d = 1.
    let rewriteOnly =
      manifest(name: "fresh", compress: false).components(separatedBy: "train:\n")[0]
      + "output:\n  dir: checkpoints/fresh\n"
    try apply([try write(rewriteOnly, "fresh.yaml")])
    let refused = try runSurgeon(["export", "checkpoints/fresh", "--out", "x"], in: workspace)
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.error.contains("not at d = 0"), refused.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: self.file("x").path))
    let forced = try runSurgeon(
      ["export", "checkpoints/fresh", "--out", "x", "--force"], in: workspace)
    XCTAssertEqual(forced.status, 0, forced.error)
  }

  func testONNXExportWritesTheModelVocabularyAndDescription() throws {
    // Without a train section apply only rewrites: the adapters are at d = 1.
    let rewriteOnly =
      manifest(name: "fresh", compress: false).components(separatedBy: "train:\n")[0]
      + "output:\n  dir: checkpoints/fresh\n"
    try apply([try write(rewriteOnly, "fresh.yaml")])
    let arguments = ["export", "checkpoints/fresh", "--format", "onnx", "--out", "onnx"]
    let run = try runSurgeon(arguments, in: workspace)
    XCTAssertEqual(run.status, 0, run.error)
    XCTAssertTrue(run.output.contains("rewritten bert"), run.output)
    // ModelProto starts with ir_version (field 1, varint) = 8.
    let bytes = try Data(contentsOf: file("onnx/model.onnx"))
    XCTAssertEqual(Array(bytes.prefix(2)), [0x08, 0x08])
    XCTAssertTrue(FileManager.default.fileExists(atPath: file("onnx/vocab.txt").path))
    let description = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file("onnx/surgeon.json")))
        as? [String: Any])
    XCTAssertEqual(description["form"] as? String, "rewritten")
    XCTAssertEqual(description["task"] as? String, "text-classification")
    XCTAssertEqual(description["outputs"] as? [String], ["last_hidden_state", "logits"])
    // No train section: the model's own limit, max_position_embeddings.
    XCTAssertEqual(description["max_length"] as? Int, 32)
    let again = try runSurgeon(arguments, in: workspace)
    XCTAssertEqual(again.status, 1)
    XCTAssertTrue(again.error.contains("exists; choose a new --out directory"), again.error)
    let badFormat = try runSurgeon(
      ["export", "checkpoints/fresh", "--format", "pt", "--out", "pt"], in: workspace)
    XCTAssertEqual(badFormat.status, 2)
    XCTAssertTrue(badFormat.error.contains("--format must be safetensors or onnx"), badFormat.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("pt").path))
  }

  /// SIGKILL at a random step (as a crash or an out-of-memory kill would), then --resume: the
  /// final model is bitwise the uninterrupted run's.
  func testKilledRunResumesBitwise() throws {
    let long = { (name: String) in
      self.manifest(name: name, compress: false)
        .replacingOccurrences(of: "steps: 24", with: "steps: 160")
        .replacingOccurrences(of: "checkpoint_every: 6", with: "checkpoint_every: 3")
    }
    try apply([try write(long("whole"), "whole.yaml")])
    let path = try write(long("killed"), "killed.yaml")
    var random = RandomStream(seed: UInt64(Date().timeIntervalSince1970))
    let killAt = 20 + random.nextInt(below: 100)
    let process = Process()
    process.executableURL = Bundle.main.bundleURL.appendingPathComponent("surgeon")
    process.arguments = ["apply", path, "--progress", "none"]
    process.currentDirectoryURL = workspace
    process.standardError = FileHandle.nullDevice
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let stateFile = file("checkpoints/killed/state/state.json")
    var killed = false
    while process.isRunning {
      if let data = try? Data(contentsOf: stateFile),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let step = object["step"] as? Int, step >= killAt
      {
        kill(process.processIdentifier, SIGKILL)
        killed = true
        break
      }
      usleep(2_000)
    }
    process.waitUntilExit()
    guard killed else {
      throw XCTSkip("the run finished before step \(killAt); nothing was killed")
    }
    XCTAssertEqual(process.terminationReason, .uncaughtSignal)
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: file("checkpoints/killed/results.json").path))
    try apply([path, "--resume"])
    let a = try SafeTensorsFile.read(contentsOf: file("checkpoints/whole/model.safetensors"))
    let b = try SafeTensorsFile.read(contentsOf: file("checkpoints/killed/model.safetensors"))
    XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
    for (name, tensor) in a.tensors {
      guard case .float(let x) = tensor, case .float(let y)? = b.tensors[name] else { continue }
      XCTAssertTrue(x.isBitwiseEqual(to: y), "\(name) differs after a kill at step \(killAt)")
    }
  }

  func testExistingOutputIsRefusedAndResumeNeedsState() throws {
    let path = try write(manifest(name: "twice", compress: false), "twice.yaml")
    try apply([path, "--steps", "2"])
    let again = try apply([path, "--steps", "2"], expecting: 1)
    XCTAssertTrue(again.contains("pass --resume to continue its run or --overwrite"), again)
    try apply([path, "--steps", "2", "--overwrite"])
    let fresh = try write(manifest(name: "fresh", compress: false), "fresh.yaml")
    let resume = try apply([fresh, "--resume"], expecting: 1)
    XCTAssertTrue(resume.contains("nothing to resume"), resume)
  }

  func testBadDataStopsBeforeWriting() throws {
    let text = manifest(name: "baddata").replacingOccurrences(
      of: "label: label}", with: "label: lable}")
    let path = try write(text, "bad.yaml")
    let error = try apply([path], expecting: 1)
    XCTAssertTrue(error.contains("lable"), error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/baddata").path))
  }

  /// The manifest of `manifest(name:)` distilled from `checkpoints/teacher` on augmented copies
  /// and on `unlabeled.csv`.
  private func distilledManifest(name: String) -> String {
    manifest(name: name, compress: false).replacingOccurrences(
      of: "  eval_every: 8\n",
      with: """
          eval_every: 8
          distill:
            teacher: checkpoints/teacher
            augment: {edits: [delete, swap, mask, synonym], rate: 0.2, copies: 2, seed: 5,
                      thesaurus: roget.csv, batch_size: 4, weight: 0.5}
            unlabeled: {format: csv, path: unlabeled.csv, text: text, group_by: group}

        """)
  }

  /// The teacher (full fine-tuning on the same split), a thesaurus, and unlabeled texts: every
  /// row of tiny.csv with its group, plus `extra` rows of a group no split has.
  private func writeDistillationInputs(extra: Int) throws -> (rows: Int, Void) {
    let teacher = manifest(name: "teacher", compress: false)
      .replacingOccurrences(
        of: """
          surgery:
            - lora:
                layers: [query, value, dense]
                rank: 4
                bias_c: zeros
                decay: {start: 0.1, end: 0.7}
                noise: {stats: per_output, clear_below: 0.3, scale: 0.5}
            - train: [classifier]

          """, with: "")
    XCTAssertFalse(teacher.contains("lora"))
    try apply([try write(teacher, "teacher.yaml")])
    _ = try write("dull,TEDIUM\nboring,TEDIUM\nbad,BADNESS\nevil,BADNESS\n", "roget.csv")
    let table = try String(contentsOf: file("tiny.csv"), encoding: .utf8)
      .split(separator: "\n").dropFirst()
    var rows = ["text,group"]
    for line in table {
      // "text",label,group → "text",group
      let fields = line.split(separator: ",")
      rows.append("\(fields[0]),\(fields[2])")
    }
    for index in 0..<extra { rows.append("\"zz yy \(index)\",elsewhere") }
    _ = try write(rows.joined(separator: "\n") + "\n", "unlabeled.csv")
    return (table.count + extra, ())
  }

  func testDistillingOnAugmentedAndUnlabeledTextsRunsAndResumesBitwise() throws {
    let (rows, _) = try writeDistillationInputs(extra: 3)
    let log = try apply([try write(distilledManifest(name: "kd"), "kd.yaml")])
    XCTAssertTrue(log.contains("distilling also on augment:"), log)
    XCTAssertTrue(log.contains("distilling also on unlabeled:"), log)
    let results = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file("checkpoints/kd/results.json")))
        as? [String: Any])
    let data = try XCTUnwrap(results["distill_data"] as? [String: [String: Any]])
    let augment = try XCTUnwrap(data["augment"])
    let unlabeled = try XCTUnwrap(data["unlabeled"])
    XCTAssertEqual(augment["seed"] as? Int, 5)
    XCTAssertEqual(augment["edits"] as? [String], ["delete", "swap", "mask", "synonym"])
    XCTAssertEqual(augment["copies"] as? Int, 2)
    XCTAssertEqual(augment["batch_size"] as? Int, 4)
    XCTAssertEqual(unlabeled["batch_size"] as? Int, 8, "train.batch_size by default")
    // Copies of the training split alone: 2 per training example.
    let augmentPool = try XCTUnwrap(augment["pool"] as? Int)
    XCTAssertEqual(augmentPool % 2, 0)
    let training = augmentPool / 2
    // The unlabeled rows are tiny.csv's with their groups: every validation and test row goes
    // (its group is held out), the training rows and the 3 rows of another group stay.
    XCTAssertEqual(unlabeled["rows"] as? Int, rows)
    XCTAssertEqual(unlabeled["pool"] as? Int, training + 3)
    XCTAssertEqual(unlabeled["dropped_held_out_groups"] as? Int, rows - 3 - training)
    XCTAssertEqual(unlabeled["dropped_held_out_texts"] as? Int, 0)
    let predictions = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: file("checkpoints/kd/predictions.json")))
        as? [String: Any])
    let testCount = try XCTUnwrap(predictions["indices"] as? [Int]).count
    XCTAssertGreaterThan(testCount, 0)
    XCTAssertGreaterThan(rows - 3 - training, testCount, "validation rows dropped too")
    // 24 steps of 8 training examples: the extra examples drawn in each training epoch.
    var perEpoch: [Int] = []
    for step in 0..<24 {
      let epoch = step * 8 / training
      if perEpoch.count <= epoch { perEpoch.append(0) }
      perEpoch[epoch] += 4
    }
    XCTAssertEqual(augment["per_epoch"] as? [Int], perEpoch)
    XCTAssertEqual(augment["examples"] as? Int, 24 * 4)
    XCTAssertEqual(unlabeled["examples"] as? Int, 24 * 8)

    // Stopped after step 9 and resumed: bitwise the uninterrupted run.
    let resumed = try write(distilledManifest(name: "kd-resumed"), "kd-resumed.yaml")
    try apply([resumed, "--stop-after", "9"], expecting: 3)
    let state = try XCTUnwrap(
      JSONSerialization.jsonObject(
        with: Data(contentsOf: file("checkpoints/kd-resumed/state/state.json"))) as? [String: Any])
    XCTAssertEqual((state["poolOrders"] as? [Any])?.count, 2, "the extra sources' orders are saved")
    try apply([resumed, "--resume"])
    let a = try SafeTensorsFile.read(contentsOf: file("checkpoints/kd/model.safetensors"))
    let b = try SafeTensorsFile.read(contentsOf: file("checkpoints/kd-resumed/model.safetensors"))
    XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys))
    for (name, tensor) in a.tensors {
      guard case .float(let x) = tensor, case .float(let y)? = b.tensors[name] else { continue }
      XCTAssertTrue(x.isBitwiseEqual(to: y), "\(name) differs after resume")
    }
    // The extra batches changed the training: without them the student ends elsewhere.
    let plain = distilledManifest(name: "kd-plain").replacingOccurrences(
      of: "    augment: {edits: [delete, swap, mask, synonym], rate: 0.2, copies: 2, seed: 5,\n"
        + "              thesaurus: roget.csv, batch_size: 4, weight: 0.5}\n"
        + "    unlabeled: {format: csv, path: unlabeled.csv, text: text, group_by: group}\n",
      with: "")
    XCTAssertFalse(plain.contains("augment"))
    try apply([try write(plain, "kd-plain.yaml")])
    let c = try SafeTensorsFile.read(contentsOf: file("checkpoints/kd-plain/model.safetensors"))
    guard case .float(let x)? = a.tensors["classifier.weight"],
      case .float(let y)? = c.tensors["classifier.weight"]
    else { return XCTFail("no classifier.weight") }
    XCTAssertFalse(x.isBitwiseEqual(to: y))
  }

  func testUnlabeledFileWithoutTheTextColumnStopsAtItsManifestLine() throws {
    _ = try writeDistillationInputs(extra: 0)
    let text = distilledManifest(name: "nocolumn").replacingOccurrences(
      of: "text: text, group_by: group}", with: "text: plot, group_by: group}")
    let line =
      try XCTUnwrap(
        text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex {
          $0.contains("unlabeled:")
        }) + 1
    let error = try apply([try write(text, "nocolumn.yaml")], expecting: 1)
    let message = try XCTUnwrap(error.split(separator: "\n").first { $0.contains(": error: ") })
    XCTAssertTrue(message.hasPrefix("nocolumn.yaml:\(line):5: error: "), error)
    XCTAssertTrue(
      message.contains(
        "unlabeled.csv:line 1: no column 'plot' (the text column) in the header; columns: 'text', 'group'"
      ), error)
    // The data file's error is quoted without a second "error:".
    XCTAssertEqual(message.components(separatedBy: "error:").count, 2, error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/nocolumn").path))
  }
}

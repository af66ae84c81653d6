import Foundation
import Models
import SafeTensors
import Tensor
import XCTest

/// `surgeon predict` and `surgeon export --merge` on runs of the tiny BERT fixture: a plain
/// LoRA run (W kept) and a run that decays to d = 0 and writes compressed/.
final class PredictTests: XCTestCase {
  // XCTest runs a class's tests one after another on one thread.
  nonisolated(unsafe) private static var shared: URL?

  /// One workspace for the class: the two runs take most of the time.
  private var workspace: URL {
    get throws {
      if let shared = Self.shared { return shared }
      let workspace = try makeTinyBertWorkspace(
        prefix: "surgeon-predict", seed: 3, rows: 96, extraWords: 5, groups: false)
      for (name, extra, compress) in [
        ("plain", "", false), ("decayed", ", decay: {start: 0.1, end: 0.7}", true),
      ] {
        let manifest = """
          surgeon: 1
          name: \(name)
          model: {family: bert, checkpoint: checkpoints/tiny-bert, head: {classes: 2}}
          surgery:
            - lora: {layers: [query, value, dense], rank: 4, bias_c: zeros\(extra)}
            - train: [classifier]
          train:
            task: text-classification
            data:
              train: {format: csv, path: tiny.csv, text: text, label: label}
              labels: ["no", "yes"]
              split: {validation: 0.2, test: 0.2, seed: 0}
              max_length: 16
            steps: 16
            batch_size: 8
            optimizer: {name: adamw, lr: 1.0e-2}
            eval_every: 8
          output: {compress: \(compress)}

          """
        try manifest.write(
          to: workspace.appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
        let run = try runSurgeon(["apply", "\(name).yaml", "--progress", "none"], in: workspace)
        XCTAssertEqual(run.status, 0, run.error)
      }
      Self.shared = workspace
      return workspace
    }
  }

  override class func tearDown() {
    if let shared { try? FileManager.default.removeItem(at: shared) }
    shared = nil
  }

  private func predict(_ arguments: [String], input: String? = nil) throws -> SurgeonRun {
    try runSurgeon(["predict"] + arguments + ["--progress", "lines"], input: input, in: workspace)
  }

  /// Each JSON line's probabilities, in class order.
  private func probabilities(_ output: String, names: [String] = ["no", "yes"]) throws
    -> [[Double]]
  {
    try output.split(separator: "\n").map { line in
      let object = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      let p = try XCTUnwrap(object["probabilities"] as? [String: Double])
      let values = try names.map { try XCTUnwrap(p[$0], "no probability for \($0)") }
      let label = try XCTUnwrap(object["label"] as? String)
      XCTAssertEqual(label, values[1] > values[0] ? names[1] : names[0])
      return values
    }
  }

  private func largestDifference(_ a: [[Double]], _ b: [[Double]]) -> Double {
    XCTAssertEqual(a.count, b.count)
    return zip(a.joined(), b.joined()).map { abs($0 - $1) }.max() ?? .infinity
  }

  func testPredictionsAgreeAcrossRewrittenCompressedAndMergedForms() throws {
    let root = try workspace
    for name in ["plain", "decayed", "decayed/compressed"] {
      let data = try Data(
        contentsOf: root.appendingPathComponent("checkpoints/\(name)/config.json"))
      let config = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
      XCTAssertEqual(config["model_type"] as? String, "surgeon_lowrank_bert", name)
    }
    for name in ["plain", "decayed"] {
      let merged = try runSurgeon(
        ["export", "checkpoints/\(name)", "--merge", "--out", "merged-\(name)"], in: root)
      XCTAssertEqual(merged.status, 0, merged.error)
    }
    let base = try predict(["checkpoints/tiny-bert", "--input", "tiny.csv", "--label", "none"])
    XCTAssertEqual(base.status, 0, base.error)
    let runs = try [
      "checkpoints/plain", "merged-plain", "checkpoints/decayed", "checkpoints/decayed/compressed",
      "merged-decayed",
    ].map { checkpoint -> [[Double]] in
      let run = try predict([checkpoint, "--input", "tiny.csv", "--batch-size", "7"])
      XCTAssertEqual(run.status, 0, run.error)
      XCTAssertTrue(run.error.contains("predicted 96 examples"), run.error)
      XCTAssertTrue(run.error.contains("accuracy 0."), run.error)
      return try probabilities(run.output)
    }
    XCTAssertEqual(runs[0].count, 96)
    XCTAssertLessThanOrEqual(largestDifference(runs[0], runs[1]), 1e-5, "plain vs its merge")
    XCTAssertLessThanOrEqual(largestDifference(runs[2], runs[3]), 1e-5, "d = 0 vs compressed")
    XCTAssertLessThanOrEqual(largestDifference(runs[2], runs[4]), 1e-5, "d = 0 vs its merge")
    // The runs trained: their predictions are not the base model's (the tests can fail).
    XCTAssertGreaterThan(
      largestDifference(runs[0], try probabilities(base.output, names: ["LABEL_0", "LABEL_1"])),
      1e-3)
    let mergedConfig = try String(
      contentsOf: root.appendingPathComponent("merged-plain/config.json"), encoding: .utf8)
    XCTAssertTrue(mergedConfig.contains("\"BertForSequenceClassification\""), mergedConfig)
    XCTAssertTrue(mergedConfig.contains("\"0\" : \"no\""), mergedConfig)
  }

  func testStandardInputToCSVWithoutLabels() throws {
    let run = try predict(
      ["checkpoints/decayed/compressed", "--input", "-", "--out", "out.csv", "--text", "review"],
      input: "review\n\"a b c\"\nd e f\n")
    XCTAssertEqual(run.status, 0, run.error)
    XCTAssertFalse(run.output.contains("accuracy"), run.output)
    let lines = try String(
      contentsOf: workspace.appendingPathComponent("out.csv"), encoding: .utf8
    ).split(separator: "\n")
    XCTAssertEqual(lines.count, 3)
    XCTAssertEqual(lines[0], "row,label,no,yes")
    XCTAssertTrue(lines[2].hasPrefix("2,"), String(lines[2]))
    // A second run replaces the file.
    let again = try predict(
      ["checkpoints/decayed/compressed", "--input", "-", "--out", "out.csv", "--text", "review"],
      input: "review\nx\n")
    XCTAssertEqual(again.status, 0, again.error)
    let replaced = try String(
      contentsOf: workspace.appendingPathComponent("out.csv"), encoding: .utf8)
    XCTAssertEqual(replaced.split(separator: "\n").count, 2)
  }

  func testBadInputsStopWithTheFileAndTheFixAndWriteNothing() throws {
    let root = try workspace
    let cases: [(name: String, contents: String, extra: [String], message: String)] = [
      ("no-text.csv", "review,label\nx,yes\n", [], "no-text.csv:line 1: error: no column 'text'"),
      (
        "unknown.csv", "text,label\nx,yes\ny,maybe\n", [],
        "unknown.csv:line 3: error: row 2 has label 'maybe'"
      ),
      ("empty.csv", "", [], "empty.csv: error: the file is empty"),
      ("empty.jsonl", "", [], "empty.jsonl: error: the file is empty"),
      (
        "no-text.jsonl", "{\"review\": \"x\"}\n", [],
        "no-text.jsonl:line 1: error: no field 'text'"
      ),
    ]
    for bad in cases {
      try bad.contents.write(
        to: root.appendingPathComponent(bad.name), atomically: true, encoding: .utf8)
      let run = try predict(
        ["checkpoints/decayed/compressed", "--input", bad.name, "--out", "bad.jsonl"] + bad.extra)
      XCTAssertEqual(run.status, 1, bad.name)
      XCTAssertTrue(run.error.contains(bad.message), run.error)
      XCTAssertTrue(run.error.contains("; "), "a fix follows the problem: \(run.error)")
      XCTAssertFalse(
        FileManager.default.fileExists(atPath: root.appendingPathComponent("bad.jsonl").path))
      XCTAssertEqual(run.output, "")
    }
    let fromStandardInput = try predict(["checkpoints/plain", "--input", "-"], input: "")
    XCTAssertEqual(fromStandardInput.status, 1)
    XCTAssertTrue(fromStandardInput.error.contains("<stdin>: error: the file is empty"))
    // Images of the wrong size for the VGG fixture (28×28, one channel).
    let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    var images: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 32, 0, 0, 0, 32]
    images += [UInt8](repeating: 7, count: 2 * 32 * 32)
    try Data(images).write(to: root.appendingPathComponent("wrong-idx3-ubyte"))
    let wrongSize = try predict([
      fixtures.appendingPathComponent("tiny-vgg").path, "--input", "wrong-idx3-ubyte", "--out",
      "bad.jsonl",
    ])
    XCTAssertEqual(wrongSize.status, 1)
    XCTAssertTrue(
      wrongSize.error.contains(
        "wrong-idx3-ubyte: error: holds images of 1 channel of 32×32 but the checkpoint takes 1 channel of 28×28; resize the images to 28×28"
      ), wrongSize.error)
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: root.appendingPathComponent("bad.jsonl").path))
  }

  func testImagesWithLabelsGiveTheForwardCommandsClasses() throws {
    let root = try workspace
    let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    let vgg = fixtures.appendingPathComponent("tiny-vgg").path
    var images: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28]
    var random = RandomStream(seed: 5)
    images += (0..<3 * 28 * 28).map { _ in UInt8(random.nextInt(below: 256)) }
    try Data(images).write(to: root.appendingPathComponent("images-idx3-ubyte"))
    try Data([0, 0, 8, 1, 0, 0, 0, 3, 4, 0, 9]).write(
      to: root.appendingPathComponent("labels-idx1-ubyte"))
    let run = try predict([
      vgg, "--input", "images-idx3-ubyte", "--labels", "labels-idx1-ubyte", "--batch-size", "2",
    ])
    XCTAssertEqual(run.status, 0, run.error)
    XCTAssertTrue(run.error.contains("accuracy"), run.error)
    // The reference: surgeon forward on the same pixels (byte / 255).
    let pixels = Tensor(
      shape: [3, 1, 28, 28], scalars: images[16...].map { Float($0) / 255 })
    try SafeTensorsFile(tensors: ["pixel_values": .float(pixels)]).write(
      to: root.appendingPathComponent("pixels.safetensors"))
    let forward = try runSurgeon(
      ["forward", vgg, "--inputs", "pixels.safetensors", "--out", "logits.safetensors"], in: root)
    XCTAssertEqual(forward.status, 0, forward.error)
    guard
      case .float(let logits)? = try SafeTensorsFile.read(
        contentsOf: root.appendingPathComponent("logits.safetensors")
      ).tensors["logits"]
    else { return XCTFail("no logits") }
    let lines = run.output.split(separator: "\n")
    XCTAssertEqual(lines.count, 3)
    for (row, line) in lines.enumerated() {
      let object = try XCTUnwrap(
        JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      let p = try XCTUnwrap(object["probabilities"] as? [String: Double])
      let z = (0..<10).map { Double(logits[flat: row * 10 + $0]) }
      let total = z.map { exp($0 - z.max()!) }.reduce(0, +)
      for c in 0..<10 {
        XCTAssertEqual(p[String(c)]!, exp(z[c] - z.max()!) / total, accuracy: 1e-5)
      }
      XCTAssertEqual(object["row"] as? Int, row + 1)
    }
  }
}

import Foundation
import XCTest

/// `surgeon apply` with deep distillation end to end: a full fine-tuning run teaches a LoRA
/// student through every layer's hidden states (and, for BERT, the attention scores); the run
/// finishes and records its settings in the log and results.json.
final class DistillApplyTests: XCTestCase {

  private var workspace: URL!

  override func setUpWithError() throws {
    workspace = try makeTinyBertWorkspace(
      prefix: "surgeon-distill", seed: 2, rows: 80, extraWords: 4, groups: false)
    addTeardownBlock { [workspace] in try? FileManager.default.removeItem(at: workspace!) }
  }

  /// A manifest named `name`; `surgery` and `distill` are spliced in as YAML lines.
  private func manifest(
    name: String, model: String, train: String, surgery: String, distill: String
  ) -> String {
    """
    surgeon: 1
    name: \(name)
    model: \(model)
    surgery:
    \(surgery)
    train:
    \(train)
    \(distill)
    output: {dir: checkpoints/\(name), compress: false}

    """
  }

  @discardableResult
  private func run(_ text: String, _ file: String) throws -> String {
    try text.write(to: workspace.appendingPathComponent(file), atomically: true, encoding: .utf8)
    let run = try runSurgeon(["apply", file, "--progress", "none"], in: workspace)
    XCTAssertEqual(run.status, 0, run.error)
    return run.error
  }

  private func results(_ name: String) throws -> [String: Any] {
    let data = try Data(
      contentsOf: workspace.appendingPathComponent("checkpoints/\(name)/results.json"))
    return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
  }

  func testBertStudentLearnsFromEveryLayerAndTheAttentionScores() throws {
    let model = "{family: bert, checkpoint: checkpoints/tiny-bert}"
    let train = """
        task: text-classification
        data:
          train: {format: csv, path: tiny.csv, text: text, label: label}
          labels: ["no", "yes"]
          split: {validation: 0.25, test: 0.25, seed: 0}
          max_length: 12
        steps: 6
        batch_size: 8
        optimizer: {name: adamw, lr: 1.0e-2}
        eval_every: 3
      """
    try run(
      manifest(name: "teacher", model: model, train: train, surgery: "  []", distill: ""),
      "teacher.yaml")
    XCTAssertTrue(try results("teacher")["distillation"] is NSNull, "no teacher, null")
    let log = try run(
      manifest(
        name: "student", model: model, train: train,
        surgery: "  - lora: {layers: [query, value, dense], rank: 2}\n  - train: [classifier]",
        distill:
          "  distill: {teacher: checkpoints/teacher, hidden_states: all, attention: 0.5, features: 0.25}"
      ), "student.yaml")
    XCTAssertTrue(
      log.contains(
        "distilling from checkpoints/teacher: temperature 2, logits 0.5, features 0.25, hidden_states 1 (every layer), attention 0.5"
      ), log)
    let written = try results("student")
    let distillation = try XCTUnwrap(written["distillation"] as? [String: Any])
    XCTAssertEqual(distillation["teacher"] as? String, "checkpoints/teacher")
    XCTAssertEqual(distillation["hidden_states"] as? Double, 1)
    XCTAssertEqual(distillation["attention"] as? Double, 0.5)
    XCTAssertEqual(distillation["features"] as? Double, 0.25)
    XCTAssertEqual(distillation["logits"] as? Double, 0.5)
    let accuracy = try XCTUnwrap(written["test_accuracy"] as? Double)
    XCTAssertTrue((0...1).contains(accuracy))
    // Every logged training loss is finite: the deep terms are well defined on padded batches.
    let metrics = try String(
      contentsOf: workspace.appendingPathComponent("checkpoints/student/metrics.jsonl"),
      encoding: .utf8)
    XCTAssertTrue(metrics.contains("\"type\":\"step\""), metrics)
    XCTAssertFalse(metrics.lowercased().contains("nan"), metrics)
  }

  func testVGGStudentLearnsFromEveryStage() throws {
    let images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    guard FileManager.default.fileExists(atPath: images) else {
      throw XCTSkip("Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)")
    }
    let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    try FileManager.default.copyItem(
      at: fixtures.appendingPathComponent("tiny-vgg"),
      to: workspace.appendingPathComponent("checkpoints/tiny-vgg"))
    let model = "{family: vgg, checkpoint: checkpoints/tiny-vgg}"
    let train = """
        task: image-classification
        data:
          train:
            format: idx
            images: \(images)
            labels: /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
          split: {validation: 0.1, test: 0.1, seed: 0, part: "1/50"}
        steps: 4
        batch_size: 8
        optimizer: {name: adamw, lr: 3.0e-3}
        eval_every: 2
      """
    try run(
      manifest(name: "teacher", model: model, train: train, surgery: "  []", distill: ""),
      "teacher.yaml")
    let log = try run(
      manifest(
        name: "student", model: model, train: train,
        surgery: "  - lora: {layers: [conv, fc], rank: 2}\n  - train: [head]",
        distill:
          "  distill: {teacher: checkpoints/teacher, logits: 0.5, hidden_states: {layers: all, weight: 2}}"
      ), "student.yaml")
    XCTAssertTrue(log.contains("hidden_states 2 (every layer), attention 0"), log)
    let distillation = try XCTUnwrap(try results("student")["distillation"] as? [String: Any])
    XCTAssertEqual(distillation["hidden_states"] as? Double, 2)
    XCTAssertEqual(distillation["attention"] as? Double, 0)
  }
}

import Foundation
import Models
import Tensor
import XCTest

/// The engine against PyTorch / transformers reference outputs (shared/golden, copied into
/// Fixtures/).
final class GoldenTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  func testTinyBERTLogitsLossAndEveryGradient() throws {
    let loaded = try CheckpointLoader.load(directory: Fixtures.url("tiny-bert"))
    XCTAssertEqual(loaded.warnings, [])
    guard case .bert(let model) = loaded.model else { return XCTFail("not a BERT") }
    XCTAssertEqual(model.prefix, "bert.")
    let golden = try Fixtures.read("tiny-bert/golden.safetensors")
    let shape = golden.integerShape("input_ids")
    let batch = TextBatch(
      batchSize: shape[0], length: shape[1], inputIDs: golden.integers("input_ids"),
      attentionMask: golden.integers("attention_mask"),
      tokenTypeIDs: golden.integers("token_type_ids"), labels: golden.integers("labels"))
    XCTAssertTrue(batch.attentionMask.contains(0), "the reference batch is padded")
    var random = RandomStream(seed: 0)
    let (outputs, tape) = try model.forward(
      batch, mode: .evaluation, recordsTape: true, random: &random)
    let logits = try XCTUnwrap(outputs.logits)
    XCTAssertLessThanOrEqual(logits.maxAbsoluteDifference(to: golden.float("logits")!), 1e-5)
    XCTAssertEqual(outputs.loss!, golden.float("loss")![flat: 0], accuracy: 1e-5)
    var gradients = GradientSet()
    model.backward(tape: try XCTUnwrap(tape), outputs: outputs, gradients: &gradients)
    assertGradientsMatch(
      gradients, golden: golden, parameters: model.namedParameters.map(\.0))
    XCTAssertEqual(model.namedParameters.count, 41)
  }

  func testTinyVGGLogitsLossAndEveryGradient() throws {
    let loaded = try CheckpointLoader.load(directory: Fixtures.url("tiny-vgg"))
    guard case .vgg(var model) = loaded.model else { return XCTFail("not a VGG") }
    let golden = try Fixtures.read("tiny-vgg/golden.safetensors")
    var random = RandomStream(seed: 0)
    let (outputs, tape) = try model.forward(
      pixels: golden.float("pixel_values")!, labels: golden.integers("labels"),
      mode: .evaluation, recordsTape: true, random: &random)
    XCTAssertLessThanOrEqual(
      outputs.logits.maxAbsoluteDifference(to: golden.float("logits")!), 1e-5)
    XCTAssertEqual(outputs.loss!, golden.float("loss")![flat: 0], accuracy: 1e-5)
    var gradients = GradientSet()
    model.backward(tape: try XCTUnwrap(tape), gradients: &gradients)
    assertGradientsMatch(gradients, golden: golden, parameters: model.namedParameters.map(\.0))
  }

  /// all-MiniLM-L6-v2 against transformers on three padded sentences (fetched by
  /// Scripts/fetch-minilm.sh when absent).
  func testMiniLMHiddenStatesAndPooler() throws {
    let directory = Fixtures.repository.appendingPathComponent("checkpoints/all-minilm-l6-v2")
    if !FileManager.default.fileExists(
      atPath: directory.appendingPathComponent("model.safetensors").path)
    {
      let fetch = Process()
      fetch.executableURL = URL(fileURLWithPath: "/bin/bash")
      fetch.arguments = [Fixtures.repository.appendingPathComponent("Scripts/fetch-minilm.sh").path]
      try fetch.run()
      fetch.waitUntilExit()
      XCTAssertEqual(fetch.terminationStatus, 0, "Scripts/fetch-minilm.sh failed")
    }
    let loaded = try CheckpointLoader.load(directory: directory)
    guard case .bert(let model) = loaded.model else { return XCTFail("not a BERT") }
    XCTAssertEqual(model.prefix, "")
    XCTAssertNil(model.classifier)
    XCTAssertEqual(loaded.model.parameterCount, 22_713_216)
    let golden = try Fixtures.read("minilm_forward.safetensors")
    let shape = golden.integerShape("input_ids")
    let mask = golden.integers("attention_mask")
    let batch = TextBatch(
      batchSize: shape[0], length: shape[1], inputIDs: golden.integers("input_ids"),
      attentionMask: mask, tokenTypeIDs: golden.integers("token_type_ids"))
    var random = RandomStream(seed: 0)
    let outputs = try model.forward(batch, mode: .evaluation, random: &random).outputs
    let hidden = outputs.lastHiddenState.scalars
    let expected = golden.float("last_hidden_state")!.scalars
    var worst: Float = 0
    for position in 0..<(shape[0] * shape[1]) where mask[position] == 1 {
      for feature in 0..<384 {
        worst = max(
          worst, abs(hidden[position * 384 + feature] - expected[position * 384 + feature]))
      }
    }
    XCTAssertLessThanOrEqual(worst, 1e-4, "last_hidden_state on unpadded positions")
    let pooled = try XCTUnwrap(outputs.poolerOutput)
    XCTAssertLessThanOrEqual(
      pooled.maxAbsoluteDifference(to: golden.float("pooler_output")!), 1e-4, "pooler_output")
  }
}

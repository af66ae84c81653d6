import Foundation
import Manifest
import Models
import SafeTensors
import Surgery
import Tensor
import XCTest

/// Writing a rewritten model, exporting it W-free, and loading both back.
final class ExportTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-export-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  private func batch() -> Batch {
    var random = RandomStream(seed: 8)
    let ids = (0..<(3 * 10)).map { _ in Int32(5 + random.nextInt(below: 2000)) }
    let mask = (0..<30).map { Int32($0 % 10 < 10 - $0 / 10 * 2 ? 1 : 0) }
    return .text(TextBatch(batchSize: 3, length: 10, inputIDs: ids, attentionMask: mask))
  }

  private func trainedPlan() throws -> TrainingPlan {
    var plan = try rewrite(
      header("bert-tiny", family: "bert", head: 3) + """
          - lora:
              layers: [query, value, ffn_intermediate, pooler]
              rank: 4
              alpha: 8
              bias_c: copy
              decay: {start: 0.1, end: 0.7}
        """, initializes: true
    ).plan
    // Give B something to say (fresh LoRA has B = 0).
    var random = RandomStream(seed: 9)
    plan.update { name, tensor in
      if name.hasSuffix(".lora_B") {
        tensor = Tensor.normal(shape: tensor.shape, standardDeviation: 0.05, random: &random)
      }
    }
    return plan
  }

  func testRewrittenModelRoundTripsMidDecay() throws {
    var plan = try trainedPlan()
    plan.setProgress(0.4)  // d = 0.5
    let directory = try temporaryDirectory()
    try CheckpointWriter.write(plan.model, to: directory, metadata: ["surgeon.manifest": "x"])
    let loaded = try CheckpointLoader.load(directory: directory)
    XCTAssertEqual(loaded.warnings, [])
    XCTAssertEqual(loaded.model.decayFactors, plan.model.decayFactors)
    XCTAssertEqual(loaded.model.adapterRecords, plan.model.adapterRecords)
    let expected = try plan.model.logits(batch())
    XCTAssertTrue(try loaded.model.logits(batch()).isBitwiseEqual(to: expected))
    let file = try SafeTensorsFile.read(
      contentsOf: directory.appendingPathComponent("model.safetensors"))
    XCTAssertEqual(file.metadata["surgeon.format"], "1")
    XCTAssertNotNil(file.tensors["encoder.layer.0.attention.self.query.lora_A"])
  }

  func testExportedModelIsWFreeAndReproducesTheExportedView() throws {
    var plan = try trainedPlan()
    plan.setProgress(1)
    let exported = plan.model.exported()
    XCTAssertEqual(plan.model.nodesWithFrozenWeight, [])
    let names = Set(exported.namedParameters.map(\.0))
    XCTAssertFalse(names.contains("encoder.layer.0.attention.self.query.weight"))
    XCTAssertTrue(names.contains("encoder.layer.0.attention.self.query.down.weight"))
    XCTAssertTrue(names.contains("encoder.layer.0.attention.self.query.up.bias"))
    XCTAssertTrue(names.contains("encoder.layer.0.attention.self.key.weight"), "not wrapped")
    let expected = try plan.exportedView.logits(batch())
    let direct = try exported.logits(batch())
    XCTAssertLessThanOrEqual(direct.maxAbsoluteDifference(to: expected), 1e-5)
    let directory = try temporaryDirectory()
    try CheckpointWriter.write(exported, to: directory)
    let loaded = try CheckpointLoader.load(directory: directory)
    XCTAssertEqual(loaded.warnings, [])
    XCTAssertTrue(try loaded.model.logits(batch()).isBitwiseEqual(to: direct))
    // Parameters: the wrapped Linears keep only A, s·B and C.
    let summary = ParameterSummary(title: "t", nodes: loaded.model.nodes)
    let planSummary = plan.summary(title: "t")
    XCTAssertEqual(summary.total, planSummary.compressedTotal)
    XCTAssertLessThan(summary.total, planSummary.total)
  }

  func testExportedConvolutionsRoundTrip() throws {
    let text =
      header("vgg11", family: "vgg") + """
          - lora:
              layers: [conv]
              blocks: 2-7
              rank: 8
              bias_c: zeros
              decay: {start: 0.0, end: 0.5}
          - lora:
              layers: [features.0]
              rank: 4
              conv_form: loralib
        """
    var plan = try rewrite(
      text.replacingOccurrences(
        of: "preset: vgg11\n",
        with:
          "preset: vgg11\n  config: {cfg: [8, M, 16, M, 16, 16, M, 16, 16, M, 16, 16, M], image_size: 32, num_classes: 4, classifier_hidden: [32], avgpool: null}\n"
      ), initializes: true
    ).plan
    var random = RandomStream(seed: 2)
    plan.update { name, tensor in
      if name.hasSuffix(".lora_B") {
        tensor = Tensor.normal(shape: tensor.shape, standardDeviation: 0.05, random: &random)
      }
    }
    plan.setProgress(1)
    let images = Batch.images(
      pixels: Tensor.uniform(shape: [2, 3, 32, 32], low: 0, high: 1, random: &random), labels: nil)
    let exported = plan.model.exported()
    XCTAssertLessThanOrEqual(
      try exported.logits(images).maxAbsoluteDifference(to: try plan.exportedView.logits(images)),
      1e-4)
    let directory = try temporaryDirectory()
    try CheckpointWriter.write(exported, to: directory)
    let loaded = try CheckpointLoader.load(directory: directory)
    XCTAssertTrue(try loaded.model.logits(images).isBitwiseEqual(to: try exported.logits(images)))
    XCTAssertTrue(
      Set(loaded.model.namedParameters.map(\.0)).contains("features.0.weight"),
      "loralib merges back")
  }
}

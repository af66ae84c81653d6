import Foundation
import Models
import Tensor
import XCTest

/// `Model.merged()`: every adapter folded into its layer gives the same evaluation output, and
/// a BERT with adapters is written under surgeon's own architecture name.
final class MergeTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  /// `model` with a random adapter (decay `decay`, bias C) on every wrappable node; convs
  /// alternate the lowrank and loralib forms.
  private func wrapped(_ model: Model, decay: Float) -> Model {
    var result = model
    var seed: UInt64 = 10
    var convolutions = 0
    func adapter(node: String, down: [Int], up: [Int], outputs: Int, rank: Int) -> LowRankAdapter {
      seed += 3
      var adapter = LowRankAdapter(
        node: node, rank: rank, down: randomTensor(down, seed: seed, scale: 0.3),
        up: randomTensor(up, seed: seed + 1, scale: 0.3),
        bias: randomTensor([outputs], seed: seed + 2, scale: 0.1), scale: 0.75)
      adapter.decay = decay
      return adapter
    }
    result.visitWrappable(
      linear: { layer in
        layer.adapter = adapter(
          node: layer.name, down: [2, layer.inFeatures], up: [layer.outFeatures, 2],
          outputs: layer.outFeatures, rank: 2)
      },
      convolution: { layer in
        let (out, inner, k) = (layer.weight.shape[0], layer.weight.shape[1], layer.weight.shape[2])
        convolutions += 1
        if convolutions % 2 == 1 {
          var made = adapter(
            node: layer.name, down: [2, inner, k, k], up: [out, 2, 1, 1], outputs: out, rank: 2)
          made.convForm = .lowrank
          layer.adapter = made
        } else {
          var made = adapter(
            node: layer.name, down: [2 * k, inner * k], up: [out * k, 2 * k], outputs: out,
            rank: 2)
          made.convForm = .loralib
          layer.adapter = made
        }
      })
    return result
  }

  private func bertLogits(_ model: Model) throws -> Tensor {
    guard case .bert(let bert) = model else { throw XCTSkip("not a BERT") }
    let batch = TextBatch(
      batchSize: 2, length: 6, inputIDs: [2, 5, 6, 7, 3, 0, 2, 8, 5, 9, 10, 3],
      attentionMask: [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1])
    var random = RandomStream(seed: 0)
    return try XCTUnwrap(bert.forward(batch, mode: .evaluation, random: &random).outputs.logits)
  }

  func testMergedBERTComputesWhatTheAdaptersDidAtAnyDecay() throws {
    let base = try CheckpointLoader.load(directory: Fixtures.url("tiny-bert")).model
    for decay: Float in [1, 0.4, 0] {
      let adapted = wrapped(base, decay: decay)
      let merged = try adapted.merged()
      XCTAssertTrue(merged.adapterRecords.isEmpty)
      XCTAssertEqual(
        Set(merged.namedParameters.map(\.0)), Set(base.namedParameters.map(\.0)),
        "the merged model has exactly the base architecture's tensors")
      let difference = try bertLogits(merged).maxAbsoluteDifference(to: bertLogits(adapted))
      XCTAssertLessThanOrEqual(difference, 1e-5, "d = \(decay)")
      // The adapters changed the output, so the comparison can fail.
      XCTAssertGreaterThan(
        try bertLogits(adapted).maxAbsoluteDifference(to: bertLogits(base)), 1e-3)
      // The W-free form merges to the same model.
      let fromExport = try adapted.exported().merged()
      if decay == 0 {
        XCTAssertLessThanOrEqual(
          try bertLogits(fromExport).maxAbsoluteDifference(to: bertLogits(adapted)), 1e-5)
      }
    }
  }

  func testMergedVGGComputesWhatTheLowRankAndLoralibAdaptersDid() throws {
    let base = try CheckpointLoader.load(directory: Fixtures.url("tiny-vgg")).model
    let adapted = wrapped(base, decay: 0.3)
    let merged = try adapted.merged()
    let pixels = randomTensor([2, 1, 28, 28], seed: 99)
    func logits(_ model: Model) throws -> Tensor {
      guard case .vgg(var vgg) = model else { throw XCTSkip("not a VGG") }
      var random = RandomStream(seed: 0)
      return try vgg.forward(pixels: pixels, labels: nil, mode: .evaluation, random: &random)
        .outputs.logits
    }
    XCTAssertLessThanOrEqual(try logits(merged).maxAbsoluteDifference(to: logits(adapted)), 1e-4)
    XCTAssertGreaterThan(try logits(adapted).maxAbsoluteDifference(to: logits(base)), 1e-3)
  }

  func testBERTWithAdaptersIsNamedSurgeonsArchitectureAndReloads() throws {
    let base = try CheckpointLoader.load(directory: Fixtures.url("tiny-bert")).model
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "MergeTests-\(UUID().uuidString)")
    addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
    let adapted = wrapped(base, decay: 0.5)
    for (name, model) in [
      ("rewritten", adapted), ("compressed", adapted.exported()), ("merged", try adapted.merged()),
    ] {
      let target = directory.appendingPathComponent(name)
      try CheckpointWriter.write(model, to: target, labelNames: ["no", "yes"])
      let data = try Data(contentsOf: target.appendingPathComponent("config.json"))
      let config = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
      let architectures = try XCTUnwrap(config["architectures"] as? [String])
      if name == "merged" {
        XCTAssertEqual(config["model_type"] as? String, "bert")
        XCTAssertEqual(architectures, ["BertForSequenceClassification"])
        XCTAssertNil(config["surgeon_adapters"])
      } else {
        XCTAssertEqual(config["model_type"] as? String, "surgeon_lowrank_bert", name)
        XCTAssertEqual(architectures, ["SurgeonLowRankBertForSequenceClassification"], name)
      }
      let reloaded = try CheckpointLoader.load(directory: target).model
      XCTAssertLessThanOrEqual(
        try bertLogits(reloaded).maxAbsoluteDifference(to: bertLogits(model)), 0, name)
      XCTAssertEqual(
        try ConfigurationFile.labelNames(target.appendingPathComponent("config.json")),
        ["no", "yes"])
    }
  }
}

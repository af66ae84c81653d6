import Manifest
import Models
import Surgery
import Tensor
import Training
import XCTest

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The compiled plan: what it states trainable is exactly what the optimizer changes.
final class PlanTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private let manifest =
    header("bert-tiny", family: "bert", head: 2)
      + """
        - lora:
            layers: [query, value, ffn_output]
            rank: 4
            bias_c: zeros
            decay: {start: 0.2, end: 0.8}
            noise: {stats: per_output, clear_below: 0.3}
        - train: [encoder.layer.1.output.LayerNorm]
      """

  private func batch() -> TextBatch {
    var random = RandomStream(seed: 3)
    let ids = (0..<(4 * 12)).map { _ in Int32(5 + random.nextInt(below: 1000)) }
    let mask = (0..<(4 * 12)).map { Int32($0 % 12 < 12 - $0 / 12 ? 1 : 0) }
    return TextBatch(
      batchSize: 4, length: 12, inputIDs: ids, attentionMask: mask, labels: [0, 1, 1, 0])
  }

  func testOptimizerChangesExactlyTheTrainableTensors() throws {
    var plan = try rewrite(manifest, initializes: true).plan
    let before = Dictionary(uniqueKeysWithValues: plan.model.namedParameters.map { ($0.0, $0.1) })
    var optimizer = AdamW(plan: plan, learningRate: 1e-2)
    XCTAssertEqual(Set(optimizer.moments.keys), plan.trainableSet, "state for trainable only")
    var random = RandomStream(seed: 4)
    for step in 0..<4 {
      plan.setProgress(Double(step) / 4)
      guard case .bert(let model) = plan.model else { return XCTFail("not BERT") }
      let (outputs, tape) = try model.forward(batch(), mode: .training, random: &random)
      var gradients = plan.makeGradients()
      model.backward(tape: try XCTUnwrap(tape), outputs: outputs, gradients: &gradients)
      XCTAssertEqual(Set(gradients.tensors.keys), plan.trainableSet, "step \(step)")
      optimizer.apply(gradients, to: &plan)
    }
    let after = Dictionary(uniqueKeysWithValues: plan.model.namedParameters.map { ($0.0, $0.1) })
    XCTAssertEqual(Set(before.keys), Set(after.keys))
    for (name, tensor) in after {
      if plan.trainableSet.contains(name) {
        XCTAssertFalse(
          tensor.isBitwiseEqual(to: before[name]!), "\(name) is trainable but unchanged")
      } else {
        XCTAssertTrue(tensor.isBitwiseEqual(to: before[name]!), "\(name) is frozen but changed")
      }
    }
    // The summary's counts are the plan's trainable set.
    let summary = plan.summary(title: "t")
    let counted = plan.model.namedParameters.filter { plan.trainableSet.contains($0.0) }
      .reduce(0) { $0 + $1.1.count }
    XCTAssertEqual(summary.trainable, counted)
    XCTAssertEqual(optimizer.step, 4)
  }

  func testTrainabilityCannotChangeOnACompiledPlan() throws {
    let plan = try rewrite(manifest).plan
    XCTAssertThrowsError(try plan.setTrainable("embeddings.word_embeddings.weight", true)) {
      error in
      XCTAssertTrue("\(error)".contains("compile again"), "\(error)")
    }
    XCTAssertFalse(plan.trainableSet.contains("embeddings.word_embeddings.weight"))
  }

  func testCompilingRefusesUnknownTensors() throws {
    let plan = try rewrite(manifest).plan
    XCTAssertThrowsError(
      try TrainingPlan(compiling: plan.model, trainable: ["nope.weight"], schedules: [:]))
  }

  func testBackwardStopsBelowTheLowestTrainedBlock() throws {
    // Only block 1 and the head train: block 0 and the embeddings get no gradient work.
    let result = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora: {layers: [query], blocks: 1, rank: 2}
        """, initializes: true)
    guard case .bert(let model) = result.plan.model else { return XCTFail("not BERT") }
    var random = RandomStream(seed: 5)
    let (outputs, tape) = try model.forward(batch(), mode: .training, random: &random)
    var gradients = result.plan.makeGradients()
    model.backward(tape: try XCTUnwrap(tape), outputs: outputs, gradients: &gradients)
    XCTAssertEqual(
      Set(gradients.tensors.keys),
      [
        "encoder.layer.1.attention.self.query.lora_A",
        "encoder.layer.1.attention.self.query.lora_B",
        "classifier.weight", "classifier.bias",
      ])
  }

  func testScheduleSetsDecayAndClearsNoise() throws {
    var plan = try rewrite(manifest).plan
    func queryAdapter() throws -> LowRankAdapter {
      guard case .bert(let model) = plan.model else { throw XCTSkip("not BERT") }
      return try XCTUnwrap(model.layers[0].query.adapter)
    }
    plan.setProgress(0.1)
    XCTAssertEqual(try queryAdapter().decay, 1)
    XCTAssertFalse(try queryAdapter().noiseActive, "no noise while d = 1")
    plan.setProgress(0.5)
    XCTAssertEqual(try queryAdapter().decay, 0.5, accuracy: 1e-6)
    XCTAssertTrue(try queryAdapter().noiseActive)
    plan.setProgress(0.65)  // d = 0.25 < clear_below 0.3
    XCTAssertEqual(try queryAdapter().decay, 0.25, accuracy: 1e-6)
    XCTAssertFalse(try queryAdapter().noiseActive, "noise is off below clear_below")
    plan.setProgress(0.9)
    XCTAssertEqual(try queryAdapter().decay, 0)
    XCTAssertTrue(try queryAdapter().skipsFrozenPath)
    // The exported view is W-free at any progress; the plan itself is unchanged.
    plan.setProgress(0.3)
    guard case .bert(let view) = plan.exportedView else { return XCTFail("not BERT") }
    XCTAssertEqual(view.layers[0].query.adapter?.decay, 0)
    XCTAssertEqual(try queryAdapter().decay, 1 - (0.3 - 0.2) / 0.6, accuracy: 1e-6)
  }

  func testDecayCurves() {
    let linear = DecayCurve(shape: .linear, start: 0.1, end: 0.9)
    XCTAssertEqual(linear.decay(at: 0), 1)
    XCTAssertEqual(linear.decay(at: 0.5), 0.5, accuracy: 1e-6)
    XCTAssertEqual(linear.decay(at: 0.9), 0)
    let cosine = DecayCurve(shape: .cosine, start: 0, end: 1)
    XCTAssertEqual(cosine.decay(at: 0.25), Float(0.5 * (1 + cos(Double.pi / 4))), accuracy: 1e-6)
    let sine = DecayCurve(shape: .sine, start: 0, end: 1)
    XCTAssertEqual(sine.decay(at: 0.5), Float(cos(Double.pi / 4)), accuracy: 1e-6)
    XCTAssertTrue(NoiseSchedule(clearBelow: nil).isActive(decay: 0))
    XCTAssertFalse(NoiseSchedule(clearBelow: 0.3).isActive(decay: 0.29))
  }

  func testSVDInitReproducesTheWeight() throws {
    let result = try rewrite(
      header("bert-tiny", family: "bert") + """
          - lora: {layers: [encoder.layer.0.attention.self.query], rank: 64, alpha: 16, init: svd}
        """, initializes: true)
    guard case .bert(let model) = result.plan.model else { return XCTFail("not BERT") }
    let layer = model.layers[0].query
    let adapter = try XCTUnwrap(layer.adapter)
    var product = adapter.up.matmul(adapter.down)
    product.scale(by: adapter.scale)
    // Rank 64 of a random 128×128 weight keeps the top half of its spectrum: s·B·A is the best
    // rank-64 approximation, so the residual is orthogonal to it.
    var residual = layer.weight
    residual.add(product, scaledBy: -1)
    XCTAssertLessThan(abs(residual.dot(product)) / product.dot(product), 1e-3)
    XCTAssertLessThan(residual.dot(residual), layer.weight.dot(layer.weight))
  }
}

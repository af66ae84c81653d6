import Manifest
import Models
import Surgery
import Tensor
import XCTest

/// Distillation's loss terms and the gradients they inject, checked by finite differences; rank
/// budgets.
final class DistillationTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func textBatch() -> Batch {
    var random = RandomStream(seed: 3)
    let ids = (0..<(3 * 8)).map { _ in Int32(5 + random.nextInt(below: 1000)) }
    let mask = (0..<(3 * 8)).map { Int32($0 % 8 < 8 - $0 / 8 ? 1 : 0) }
    return .text(
      TextBatch(batchSize: 3, length: 8, inputIDs: ids, attentionMask: mask, labels: [0, 1, 1]))
  }

  /// A teacher that differs from the student: the original graph with every weight nudged.
  private func teacher(of result: Rewrite, seed: UInt64) -> Model {
    var model = result.original
    var random = RandomStream(seed: seed)
    model.visitParameters { _, tensor in
      tensor.add(
        Tensor.normal(shape: tensor.shape, standardDeviation: 0.05, random: &random))
    }
    return model
  }

  /// Central differences of the distilled loss against its analytic gradient, for a few
  /// coordinates of each named tensor.
  private func checkGradients(
    _ plan: TrainingPlan, batch: Batch, distillation: Distillation, tensors: [String],
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    func loss(_ plan: TrainingPlan) throws -> (Float, GradientSet) {
      var copy = plan
      var random = RandomStream(seed: 9)  // the same dropout masks every time
      let (loss, _, gradients) = try copy.lossAndGradients(
        batch, distillation: distillation, random: &random)
      return (loss, gradients)
    }
    let (_, gradients) = try loss(plan)
    let step: Float = 1e-2
    for name in tensors {
      let analytic = try XCTUnwrap(gradients.tensors[name], name, file: file, line: line)
      // The coordinates with the largest gradients: well above float32 noise.
      let indices = analytic.scalars.indices.sorted {
        abs(analytic.scalars[$0]) > abs(analytic.scalars[$1])
      }.prefix(3)
      for index in indices {
        func shifted(_ delta: Float) throws -> Float {
          var moved = plan
          moved.update { tensorName, tensor in
            if tensorName == name {
              tensor.withUnsafeMutableBufferPointer { $0[index] += delta }
            }
          }
          return try loss(moved).0
        }
        let numeric = (try shifted(step) - (try shifted(-step))) / (2 * step)
        let exact = analytic.scalars[index]
        XCTAssertEqual(
          numeric, exact, accuracy: 0.03 * abs(exact) + 2e-4, "\(name)[\(index)]", file: file,
          line: line)
      }
    }
  }

  func testBertFeatureAndLogitDistillationGradients() throws {
    let result = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora: {layers: [query, ffn_output], rank: 2}
          - train: [classifier]
        """, initializes: true)
    var plan = result.plan
    var random = RandomStream(seed: 4)
    plan.update { name, tensor in
      if name.hasSuffix(".lora_B") {
        tensor = Tensor.normal(shape: tensor.shape, standardDeviation: 0.1, random: &random)
      }
    }
    let distillation = Distillation(
      teacher: teacher(of: result, seed: 5), temperature: 2, logitsWeight: 0.5,
      featuresWeight: 10)
    try checkGradients(
      plan, batch: textBatch(), distillation: distillation,
      tensors: [
        "encoder.layer.0.attention.self.query.lora_B", "encoder.layer.1.output.dense.lora_A",
        "classifier.weight",
      ])
    // The feature term alone reaches the blocks even with the logit term off.
    let featuresOnly = Distillation(
      teacher: distillation.teacher, temperature: 2, logitsWeight: 0, featuresWeight: 10)
    try checkGradients(
      plan, batch: textBatch(), distillation: featuresOnly,
      tensors: ["encoder.layer.0.attention.self.query.lora_B"])
  }

  func testVGGFeatureDistillationGradients() throws {
    let text =
      header("vgg11", family: "vgg") + """
          - lora: {layers: [conv], blocks: 2-7, rank: 2, bias_c: zeros}
          - train: [head]
        """
    let result = try rewrite(
      text.replacingOccurrences(
        of: "preset: vgg11\n",
        with:
          "preset: vgg11\n  config: {cfg: [4, M, 8, M, 8, 8, M, 8, 8, M, 8, 8], image_size: 16, num_classes: 3, classifier_hidden: [8], avgpool: null, dropout: 0.0}\n"
      ), initializes: true)
    var plan = result.plan
    var random = RandomStream(seed: 6)
    plan.update { name, tensor in
      if name.hasSuffix(".lora_B") {
        tensor = Tensor.normal(shape: tensor.shape, standardDeviation: 0.1, random: &random)
      }
    }
    let images = Batch.images(
      pixels: Tensor.uniform(shape: [4, 3, 16, 16], low: 0, high: 1, random: &random),
      labels: [0, 1, 2, 1])
    let distillation = Distillation(
      teacher: teacher(of: result, seed: 7), temperature: 3, logitsWeight: 0.7,
      featuresWeight: 2)
    let convolution = try XCTUnwrap(
      plan.trainable.first { $0.hasSuffix(".lora_B") && $0.hasPrefix("features.") })
    try checkGradients(
      plan, batch: images, distillation: distillation,
      tensors: [convolution, "classifier.3.weight"])
  }

  func testLogitTermIsTemperatureScaledKL() {
    let student = Tensor(shape: [2, 3], scalars: [1, 2, 0.5, -1, 0, 3])
    let teacher = Tensor(shape: [2, 3], scalars: [2, 1, 0, 0, 0, 1])
    let (loss, gradient) = Distillation.logitTerm(
      student: student, teacher: teacher, temperature: 2)
    // KL ≥ 0, zero only for equal logits.
    XCTAssertGreaterThan(loss, 0)
    XCTAssertEqual(
      Distillation.logitTerm(student: teacher, teacher: teacher, temperature: 2).loss, 0,
      accuracy: 1e-6)
    let h: Float = 1e-2
    for index in 0..<6 {
      var up = student
      var down = student
      up.withUnsafeMutableBufferPointer { $0[index] += h }
      down.withUnsafeMutableBufferPointer { $0[index] -= h }
      let numeric =
        (Distillation.logitTerm(student: up, teacher: teacher, temperature: 2).loss
          - Distillation.logitTerm(student: down, teacher: teacher, temperature: 2).loss) / (2 * h)
      XCTAssertEqual(numeric, gradient.scalars[index], accuracy: 1e-3, "logit \(index)")
    }
  }

  func testRankBudgetSpendsWhereEnergyPerParameterIsHighest() {
    // Node a: a flat spectrum (every rank worth the same); b: one dominant direction.
    let a = RankBudgeting.Node(
      name: "a", energies: Array(repeating: 1, count: 10), costPerRank: 20, fixedCost: 10,
      baseParameters: 110, cap: 8)
    let b = RankBudgeting.Node(
      name: "b", energies: [100] + Array(repeating: 0.01, count: 9), costPerRank: 20,
      fixedCost: 10, baseParameters: 110, cap: 8)
    let (ranks, spent, capacity, over) = RankBudgeting.allocate([a, b], share: 0.5, floor: 1)
    XCTAssertEqual(capacity, 110)
    XCTAssertFalse(over)
    XCTAssertLessThanOrEqual(spent, capacity)
    // After the floor (2·20 + 20 fixed = 60), 50 parameters buy two more ranks, both for a:
    // b's second direction holds almost nothing.
    XCTAssertEqual(ranks, ["a": 3, "b": 1])
    // The floor holds even over budget, and the cap bounds every rank.
    let tight = RankBudgeting.allocate([a, b], share: 0.1, floor: 2)
    XCTAssertEqual(tight.ranks, ["a": 2, "b": 2])
    XCTAssertTrue(tight.overBudget)
    let wide = RankBudgeting.allocate([a, b], share: 0.99, floor: 1)
    XCTAssertLessThanOrEqual(wide.ranks["a"]!, 8)
    XCTAssertLessThanOrEqual(wide.spent, wide.capacity)
  }

  func testBudgetedRewriteGivesPerNodeRanksWithinTheShare() throws {
    let result = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora:
              layers: [query, value, ffn_intermediate]
              rank: 32
              budget: {share: 0.1, floor: 2}
              bias_c: zeros
              decay: {}
        """, initializes: true)
    let rows = result.plan.summary(title: "t").rows.compactMap(\.adapter)
    XCTAssertEqual(rows.count, 6)
    let base = rows.reduce(0) { $0 + $1.baseParameters }
    let kept = rows.reduce(0) { $0 + $1.compressedParameters }
    XCTAssertLessThanOrEqual(Double(kept), 0.1 * Double(base))
    XCTAssertGreaterThan(Double(kept), 0.08 * Double(base), "the budget is spent")
    XCTAssertTrue(rows.allSatisfy { $0.rank >= 2 && $0.rank <= 32 })
    XCTAssertGreaterThan(Set(rows.map(\.rank)).count, 1, "ranks differ between nodes")
  }
}

import Manifest
import Models
import Surgery
import Tensor
import XCTest

/// The loss on examples without labels (`train.distill.augment`, `unlabeled`): the teacher's
/// soft labels alone, T²·KL, checked by finite differences.
final class SoftLabelTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  /// A teacher that differs from the student: the original graph with every weight nudged.
  private func teacher(of result: Rewrite, seed: UInt64) -> Model {
    var model = result.original
    var random = RandomStream(seed: seed)
    model.visitParameters { _, tensor in
      tensor.add(Tensor.normal(shape: tensor.shape, standardDeviation: 0.05, random: &random))
    }
    return model
  }

  /// Central differences of the soft-label loss against its analytic gradient, for the three
  /// largest-gradient coordinates of each named tensor.
  private func checkGradients(
    _ plan: TrainingPlan, batch: Batch, distillation: Distillation, tensors: [String],
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    func loss(_ plan: TrainingPlan) throws -> (Float, GradientSet) {
      var copy = plan
      var random = RandomStream(seed: 9)  // the same dropout masks every time
      return try copy.softLabelLossAndGradients(
        batch, distillation: distillation, random: &random)
    }
    let (value, gradients) = try loss(plan)
    XCTAssertGreaterThan(value, 0, file: file, line: line)
    let step: Float = 1e-2
    for name in tensors {
      let analytic = try XCTUnwrap(gradients.tensors[name], name, file: file, line: line)
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

  func testBertSoftLabelGradientsAndNoLabelNeeded() throws {
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
      featuresWeight: 0)
    let ids = (0..<(3 * 8)).map { _ in Int32(5 + random.nextInt(below: 1000)) }
    let mask = (0..<(3 * 8)).map { Int32($0 % 8 < 8 - $0 / 8 ? 1 : 0) }
    let unlabeled = Batch.text(
      TextBatch(batchSize: 3, length: 8, inputIDs: ids, attentionMask: mask))
    try checkGradients(
      plan, batch: unlabeled, distillation: distillation,
      tensors: ["encoder.layer.0.attention.self.query.lora_B", "classifier.weight"])
    // Labels, if a batch has them, are ignored: the loss is the same.
    let labelled = Batch.text(
      TextBatch(batchSize: 3, length: 8, inputIDs: ids, attentionMask: mask, labels: [0, 1, 1]))
    var first = plan
    var second = plan
    var a = RandomStream(seed: 1)
    var b = RandomStream(seed: 1)
    XCTAssertEqual(
      try first.softLabelLossAndGradients(unlabeled, distillation: distillation, random: &a).loss,
      try second.softLabelLossAndGradients(labelled, distillation: distillation, random: &b).loss)
  }

  func testVGGSoftLabelGradients() throws {
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
      labels: nil)
    let distillation = Distillation(
      teacher: teacher(of: result, seed: 7), temperature: 3, logitsWeight: 0.7,
      featuresWeight: 0)
    let convolution = try XCTUnwrap(
      plan.trainable.first { $0.hasSuffix(".lora_B") && $0.hasPrefix("features.") })
    try checkGradients(
      plan, batch: images, distillation: distillation,
      tensors: [convolution, "classifier.3.weight"])
  }
}

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
  private static func teacher(of result: Rewrite, seed: UInt64) -> Model {
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
    step: Float = 1e-2, file: StaticString = #filePath, line: UInt = #line
  ) throws {
    func loss(_ plan: TrainingPlan) throws -> (Float, GradientSet) {
      var copy = plan
      var random = RandomStream(seed: 9)  // the same dropout masks every time
      let (loss, _, gradients) = try copy.lossAndGradients(
        batch, distillation: distillation, random: &random)
      return (loss, gradients)
    }
    let (_, gradients) = try loss(plan)
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
      teacher: Self.teacher(of: result, seed: 5), temperature: 2, logitsWeight: 0.5,
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
      teacher: Self.teacher(of: result, seed: 7), temperature: 3, logitsWeight: 0.7,
      featuresWeight: 2)
    let convolution = try XCTUnwrap(
      plan.trainable.first { $0.hasSuffix(".lora_B") && $0.hasPrefix("features.") })
    try checkGradients(
      plan, batch: images, distillation: distillation,
      tensors: [convolution, "classifier.3.weight"])
  }

  /// A tiny BERT student (LoRA on three kinds of node in both blocks, the embedding LayerNorm
  /// and the head trained, every B random) and a teacher nudged away from it; built once, as
  /// drawing bert-tiny's random weights twice dominates these tests' time in a debug build.
  private func bertStudentAndTeacher() throws -> (TrainingPlan, Model) {
    try Self.bert.get()
  }

  private static let bert = Result { try makeBertStudentAndTeacher() }

  private static func makeBertStudentAndTeacher() throws -> (TrainingPlan, Model) {
    let result = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora: {layers: [query, key, ffn_output], rank: 2}
          - train: [classifier, embeddings.LayerNorm]
        """, initializes: true)
    var plan = result.plan
    var random = RandomStream(seed: 4)
    plan.update { name, tensor in
      if name.hasSuffix(".lora_B") {
        tensor = Tensor.normal(shape: tensor.shape, standardDeviation: 0.1, random: &random)
      }
    }
    return (plan, Self.teacher(of: result, seed: 5))
  }

  /// A VGG with batch norm, five stages (four max-pools and a final pair of convolutions), LoRA
  /// on every convolution but the first and a trained head, and a teacher nudged away from it.
  private func vggStudentAndTeacher() throws -> (TrainingPlan, Model) {
    let text =
      header("vgg11-bn", family: "vgg") + """
          - lora: {layers: [conv], blocks: 1-7, rank: 2, bias_c: zeros}
          - train: [head]
        """
    let result = try rewrite(
      text.replacingOccurrences(
        of: "preset: vgg11-bn\n",
        with:
          "preset: vgg11-bn\n  config: {cfg: [4, M, 8, M, 8, 8, M, 8, 8, M, 8, 8], image_size: 16, num_classes: 3, classifier_hidden: [8], avgpool: null, dropout: 0.0}\n"
      ), initializes: true)
    var plan = result.plan
    var random = RandomStream(seed: 6)
    plan.update { name, tensor in
      if name.hasSuffix(".lora_B") {
        tensor = Tensor.normal(shape: tensor.shape, standardDeviation: 0.1, random: &random)
      }
    }
    return (plan, Self.teacher(of: result, seed: 7))
  }

  private func imageBatch() -> Batch {
    var random = RandomStream(seed: 8)
    return .images(
      pixels: Tensor.uniform(shape: [4, 3, 16, 16], low: 0, high: 1, random: &random),
      labels: [0, 1, 2, 1])
  }

  private static let bertTensors = [
    "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.lora_B",
    "encoder.layer.0.attention.self.key.lora_A", "encoder.layer.1.attention.self.query.lora_A",
    "encoder.layer.1.output.dense.lora_B",
  ]

  /// Fewer for the mixed checks: each coordinate costs two debug-build BERT steps.
  private static let mixedTensors = [
    "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.key.lora_A",
    "classifier.weight",
  ]

  func testBertHiddenStateGradients() throws {
    let (plan, teacher) = try bertStudentAndTeacher()
    // The hidden-state term alone (no logits, no features), then mixed with the others.
    try checkGradients(
      plan, batch: textBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 2, logitsWeight: 0, featuresWeight: 0,
        hiddenStatesWeight: 3),
      tensors: Self.bertTensors)
    try checkGradients(
      plan, batch: textBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 2, logitsWeight: 0.5, featuresWeight: 1,
        hiddenStatesWeight: 2),
      tensors: Self.mixedTensors)
  }

  func testBertAttentionScoreGradients() throws {
    let (plan, teacher) = try bertStudentAndTeacher()
    try checkGradients(
      plan, batch: textBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 2, logitsWeight: 0, featuresWeight: 0,
        attentionWeight: 5),
      tensors: Self.bertTensors)
    try checkGradients(
      plan, batch: textBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 2, logitsWeight: 0.5, featuresWeight: 1,
        hiddenStatesWeight: 1, attentionWeight: 2),
      tensors: Self.mixedTensors)
  }

  func testVGGStageGradients() throws {
    let (plan, teacher) = try vggStudentAndTeacher()
    let convolutions = plan.trainable.filter {
      $0.hasSuffix(".lora_B") && $0.hasPrefix("features.")
    }
    XCTAssertEqual(convolutions.count, 7)
    let tensors = [convolutions[0], convolutions[3], convolutions[6]]
    // A smaller step than BERT's: at 1e-2 the ReLUs and max-pools of the small maps switch
    // inside the interval (a 5–8% miss that shrinks to nothing at 3e-3 and below).
    try checkGradients(
      plan, batch: imageBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 3, logitsWeight: 0, featuresWeight: 0,
        hiddenStatesWeight: 2),
      tensors: tensors, step: 1e-3)
    try checkGradients(
      plan, batch: imageBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 3, logitsWeight: 0.7, featuresWeight: 1,
        hiddenStatesWeight: 2),
      tensors: tensors, step: 1e-3)
    // The head's gradients are small: at 1e-3 float32 rounding of the loss would dominate.
    try checkGradients(
      plan, batch: imageBatch(),
      distillation: Distillation(
        teacher: teacher, temperature: 3, logitsWeight: 0.7, featuresWeight: 1,
        hiddenStatesWeight: 2),
      tensors: ["classifier.3.weight"])
  }

  /// Today's distilled step, spelled out: plain forward passes, the logit mix, the feature term
  /// and the backward pass, without any of the deep terms' plumbing.
  private func todaysStep(
    _ plan: TrainingPlan, _ batch: Batch, teacher: Model, alpha: Float, beta: Float
  ) throws -> (Float, GradientSet) {
    var gradients = plan.makeGradients()
    var random = RandomStream(seed: 9)
    var teacherRandom = RandomStream(seed: 0)
    func mix(_ crossEntropy: Float, _ gradient: Tensor, _ student: Tensor, _ target: Tensor)
      -> (Float, Tensor)
    {
      let (kd, kdGradient) = Distillation.logitTerm(
        student: student, teacher: target, temperature: 2)
      var combined = gradient
      combined.scale(by: 1 - alpha)
      combined.add(kdGradient, scaledBy: alpha)
      return ((1 - alpha) * crossEntropy + alpha * kd, combined)
    }
    switch (plan.model, batch, teacher) {
    case (.bert(let bert), .text(let text), .bert(let teacher)):
      let taught = try teacher.forward(text, mode: .evaluation, random: &teacherRandom).outputs
      var (outputs, tape) = try bert.forward(text, mode: .training, random: &random)
      var (loss, gradient) = mix(
        outputs.loss!, outputs.logitsGradient!, outputs.logits!, taught.logits!)
      outputs.logitsGradient = gradient
      let (term, hidden) = Distillation.featureTerm(
        student: outputs.lastHiddenState, teacher: taught.lastHiddenState, weight: beta)
      loss += term
      outputs.lastHiddenGradient = hidden
      bert.backward(tape: tape!, outputs: outputs, gradients: &gradients)
      return (loss, gradients)
    case (.vgg(var vgg), .images(let pixels, let labels), .vgg(var teacher)):
      let taught = try teacher.forward(
        pixels: pixels, labels: nil, mode: .evaluation, recordsTape: false,
        random: &teacherRandom
      ).outputs
      let (outputs, recorded) = try vgg.forward(
        pixels: pixels, labels: labels, mode: .training, random: &random)
      var tape = recorded!
      var (loss, gradient) = mix(
        outputs.loss!, tape.logitsGradient!, outputs.logits, taught.logits)
      tape.logitsGradient = gradient
      let (term, features) = Distillation.featureTerm(
        student: outputs.features!, teacher: taught.features!, weight: beta)
      loss += term
      tape.featureGradient = features
      vgg.backward(tape: tape, gradients: &gradients)
      return (loss, gradients)
    default:
      throw XCTSkip("unexpected model")
    }
  }

  func testDeepTermsAtZeroAreBitwiseTodaysStep() throws {
    let (bert, bertTeacher) = try bertStudentAndTeacher()
    let (vgg, vggTeacher) = try vggStudentAndTeacher()
    for (plan, teacher, batch) in [
      (bert, bertTeacher, textBatch()), (vgg, vggTeacher, imageBatch()),
    ] {
      let (expectedLoss, expected) = try todaysStep(
        plan, batch, teacher: teacher, alpha: 0.5, beta: 1)
      var copy = plan
      var random = RandomStream(seed: 9)
      let (loss, _, gradients) = try copy.lossAndGradients(
        batch,
        distillation: Distillation(
          teacher: teacher, temperature: 2, logitsWeight: 0.5, featuresWeight: 1,
          hiddenStatesWeight: 0, attentionWeight: 0),
        random: &random)
      XCTAssertEqual(loss.bitPattern, expectedLoss.bitPattern, "\(teacher.family) loss")
      XCTAssertEqual(gradients.tensors.keys.sorted(), expected.tensors.keys.sorted())
      XCTAssertFalse(gradients.tensors.isEmpty)
      for (name, tensor) in expected.tensors {
        XCTAssertTrue(gradients.tensors[name]!.isBitwiseEqual(to: tensor), name)
      }
    }
  }

  /// Exposing the intermediates changes no output, and zero gradients for them change no
  /// parameter gradient.
  func testExposedIntermediatesLeaveThePassUnchanged() throws {
    let (plan, _) = try bertStudentAndTeacher()
    guard case .bert(let bert) = plan.model, case .text(let text) = textBatch() else {
      return XCTFail("a BERT plan")
    }
    func pass(_ exposing: Intermediates) throws -> (BertOutputs, GradientSet) {
      var random = RandomStream(seed: 9)
      var (outputs, tape) = try bert.forward(
        text, mode: .training, exposing: exposing, random: &random)
      if let states = outputs.hiddenStates {
        outputs.hiddenStatesGradient = states.map { Tensor(zeros: $0.shape) }
      }
      if let scores = outputs.attentionScores {
        outputs.attentionScoresGradient = scores.map { Tensor(zeros: $0.shape) }
      }
      var gradients = plan.makeGradients()
      bert.backward(tape: tape!, outputs: outputs, gradients: &gradients)
      return (outputs, gradients)
    }
    let (plain, plainGradients) = try pass([])
    let (exposed, exposedGradients) = try pass([.hiddenStates, .attentionScores])
    XCTAssertNil(plain.hiddenStates)
    XCTAssertNil(plain.attentionScores)
    XCTAssertEqual(exposed.hiddenStates?.map(\.shape), Array(repeating: [3, 8, 128], count: 3))
    XCTAssertEqual(exposed.attentionScores?.map(\.shape), [[3, 2, 8, 8], [3, 2, 8, 8]])
    XCTAssertTrue(exposed.logits!.isBitwiseEqual(to: plain.logits!))
    XCTAssertTrue(exposed.hiddenStates!.last!.isBitwiseEqual(to: plain.lastHiddenState))
    for (name, tensor) in plainGradients.tensors {
      // x + 0 is x (up to the sign of a zero): compare values.
      XCTAssertEqual(exposedGradients.tensors[name]!.scalars, tensor.scalars, name)
    }
  }

  /// A student that is its teacher (fresh adapters, B = 0, no dropout) matches it at every
  /// layer and score: the deep terms add exactly nothing to the loss or the gradients.
  func testDeepTermsVanishWhenTheStudentIsTheTeacher() throws {
    let result = try rewrite(
      """
      surgeon: 1
      name: test
      model:
        family: bert
        preset: bert-tiny
        weights: random
        head: {classes: 2}
        config: {vocab_size: 1100, hidden_dropout_prob: 0.0, attention_probs_dropout_prob: 0.0}
      surgery:
        - lora: {layers: [query, ffn_output], rank: 2, bias_c: none}
        - train: [classifier, embeddings.LayerNorm]
      """, initializes: true)
    let batch = textBatch()
    var plain = result.plan
    var random = RandomStream(seed: 9)
    let (expectedLoss, _, expected) = try plain.lossAndGradients(batch, random: &random)
    var taught = result.plan
    random = RandomStream(seed: 9)
    let (loss, _, gradients) = try taught.lossAndGradients(
      batch,
      distillation: Distillation(
        teacher: result.original, temperature: 2, logitsWeight: 0, featuresWeight: 0,
        hiddenStatesWeight: 1, attentionWeight: 1),
      random: &random)
    XCTAssertEqual(loss, expectedLoss)
    XCTAssertEqual(gradients.tensors.keys.sorted(), expected.tensors.keys.sorted())
    for (name, tensor) in expected.tensors {
      XCTAssertEqual(gradients.tensors[name]!.scalars, tensor.scalars, name)
    }
  }

  func testHiddenStateTermAgainstAHandComputation() {
    // Two layers of 3 rows × 2; the mask keeps rows 0 and 2.
    let student = [
      Tensor(shape: [3, 2], scalars: [1, 2, 50, -50, 0, 1]),
      Tensor(shape: [3, 2], scalars: [0, 0, 9, 9, 1, 1]),
    ]
    let teacher = [
      Tensor(shape: [3, 2], scalars: [0, 2, -7, 7, 2, 4]),
      Tensor(shape: [3, 2], scalars: [1, -1, 3, 3, 1, 3]),
    ]
    let mask: [Int32] = [1, 0, 1]
    let (loss, gradients) = Distillation.hiddenStateTerm(
      student: student, teacher: teacher, rowMask: mask, weight: 0.5)
    // Layer 0: kept teacher values 0, 2, 2, 4 (mean 2, variance 2); squared errors 1, 0, 4, 9.
    // Layer 1: kept teacher values 1, -1, 1, 3 (mean 1, variance 2); squared errors 1, 1, 0, 4.
    let expected = 0.5 * ((14.0 / 4 / 2) + (6.0 / 4 / 2)) / 2
    XCTAssertEqual(Double(loss), expected, accuracy: 1e-6)
    // ∂/∂s = weight · 2(s − t) / (layers · n · variance) on kept rows, 0 on the padding row.
    XCTAssertEqual(gradients[0].scalars, [0.0625, 0, 0, 0, -0.125, -0.1875])
    XCTAssertEqual(gradients[1].scalars, [-0.0625, 0.0625, 0, 0, 0, -0.125])
    // Without a mask every row counts.
    let unmasked = Distillation.hiddenStateTerm(
      student: [student[0]], teacher: [teacher[0]], rowMask: nil, weight: 1)
    let values: [Double] = [0, 2, -7, 7, 2, 4]
    let mean = values.reduce(0, +) / 6
    let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 6
    let squared: Double = 1 + 0 + 57 * 57 + 57 * 57 + 4 + 9
    XCTAssertEqual(Double(unmasked.loss), squared / 6 / variance, accuracy: 1e-4)
  }

  func testAttentionTermCountsOnlyPairsOfRealTokens() {
    // One layer, batch 2, one head, length 3; the second sample pads its last token.
    let mask: [Int32] = [1, 1, 1, 1, 1, 0]
    var student = Tensor(shape: [2, 1, 3, 3], repeating: 1)
    let teacher = Tensor(shape: [2, 1, 3, 3], repeating: 0)
    let (loss, gradients) = Distillation.attentionTerm(
      student: [student], teacher: [teacher], mask: mask, batch: 2, length: 3, weight: 2)
    // 9 + 4 kept pairs, each error 1.
    XCTAssertEqual(loss, 2, accuracy: 1e-6)
    let g = gradients[0].scalars
    let kept = Float(2 * 2) / 13
    XCTAssertEqual(Array(g[0..<9]), Array(repeating: kept, count: 9))
    XCTAssertEqual(Array(g[9...]), [kept, kept, 0, kept, kept, 0, 0, 0, 0])
    // A padded pair may hold anything (the mask's −∞ included).
    student[flat: 17] = -.greatestFiniteMagnitude
    student[flat: 15] = 1e30
    XCTAssertEqual(
      Distillation.attentionTerm(
        student: [student], teacher: [teacher], mask: mask, batch: 2, length: 3, weight: 2
      ).loss, loss)
  }

  func testTeacherMustMatchTheDeepTermsShapes() throws {
    let (plan, teacher) = try bertStudentAndTeacher()
    guard case .bert(var shallow) = teacher else { return XCTFail("a BERT teacher") }
    shallow.layers.removeLast()
    shallow.configuration.layerCount -= 1
    func problem(hidden: Float, attention: Float) -> String? {
      Distillation(
        teacher: .bert(shallow), temperature: 2, logitsWeight: 0.5, featuresWeight: 0,
        hiddenStatesWeight: hidden, attentionWeight: attention
      ).mismatch(with: plan.model)
    }
    XCTAssertNil(problem(hidden: 0, attention: 0), "logits alone need no layer pairing")
    XCTAssertEqual(
      problem(hidden: 1, attention: 0),
      "the teacher's layer count is 1, the student's 2; hidden_states and attention pair layers one to one"
    )
    XCTAssertNotNil(problem(hidden: 0, attention: 1))
    let (vgg, vggTeacher) = try vggStudentAndTeacher()
    XCTAssertEqual(
      Distillation(
        teacher: vggTeacher, temperature: 2, logitsWeight: 0.5, featuresWeight: 0,
        attentionWeight: 1
      ).mismatch(with: vgg.model), "a vgg model has no attention to distil")
    guard case .vgg(var narrow) = vggTeacher else { return XCTFail("a VGG teacher") }
    narrow.configuration.stages[0] = .convolution(channels: 5)
    XCTAssertEqual(
      Distillation(
        teacher: .vgg(narrow), temperature: 2, logitsWeight: 0.5, featuresWeight: 0,
        hiddenStatesWeight: 1
      ).mismatch(with: vgg.model),
      "the teacher's stage feature maps are [[5, 8, 8], [8, 4, 4], [8, 2, 2], [8, 1, 1], [8, 1, 1]] (C, H, W), the student's [[4, 8, 8], [8, 4, 4], [8, 2, 2], [8, 1, 1], [8, 1, 1]]"
    )
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

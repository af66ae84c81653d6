import Datasets
import Foundation
import Manifest
import Models
import Surgery
import Tensor
import Training
import XCTest

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// A tiny VGG on random images whose pixels can be poisoned (for the non-finite stop).
struct PixelExamples: ExampleSource {
  var pixels: Tensor
  var labels: [Int32]
  var split: DataSplit
  var classCount: Int { 3 }

  func batch(_ indices: [Int]) throws -> Batch {
    let per = pixels.count / labels.count
    var out = Tensor(zeros: [indices.count, 1, 8, 8])
    pixels.withUnsafeBufferPointer { source in
      out.withUnsafeMutableBufferPointer { target in
        for (row, index) in indices.enumerated() {
          (target.baseAddress! + row * per).update(
            from: source.baseAddress! + index * per, count: per)
        }
      }
    }
    return .images(pixels: out, labels: indices.map { labels[$0] })
  }
}

final class TrainingTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func tinyPlan() throws -> TrainingPlan {
    let configuration = VGGConfiguration(
      stages: [.convolution(channels: 4), .maxPool], batchNorm: true, inChannels: 1, imageSize: 8,
      classCount: 3, classifierHidden: [8], averagePool: nil, dropout: 0)
    let model = Model.vgg(VGGModel(configuration: configuration, initialization: .seeded(1)))
    return try TrainingPlan(
      compiling: model, trainable: Set(model.namedParameters.map(\.0)), schedules: [:])
  }

  private func source(poisoned: Bool = false) -> PixelExamples {
    var random = RandomStream(seed: 3)
    var pixels = Tensor.uniform(shape: [30, 1, 8, 8], low: 0, high: 1, random: &random)
    if poisoned { pixels = pixels.map { _ in .nan } }
    return PixelExamples(
      pixels: pixels, labels: (0..<30).map { Int32($0 % 3) },
      split: DataSplit(train: Array(0..<20), validation: Array(20..<25), test: Array(25..<30)))
  }

  func testAdamWMatchesAHandComputedStep() throws {
    let model = Model.bert(
      BertModel(
        configuration: BertConfiguration(
          vocabularySize: 8, hiddenSize: 4, layerCount: 1, headCount: 1, intermediateSize: 4,
          maxPositions: 4),
        classes: 2, initialization: .seeded(0)))
    var plan = try TrainingPlan(compiling: model, trainable: ["classifier.bias"], schedules: [:])
    var optimizer = AdamW(plan: plan, learningRate: 0.1, weightDecay: 0.01)
    var gradients = plan.makeGradients()
    gradients.accumulate("classifier.bias", Tensor(shape: [2], scalars: [0.5, -2]))
    optimizer.apply(gradients, to: &plan)
    // Step 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g², update = g/(|g| + ε) ≈ sign(g); the bias
    // starts at 0, so decoupled decay adds nothing.
    let bias = plan.model.namedParameters.first { $0.0 == "classifier.bias" }!.1.scalars
    XCTAssertEqual(bias[0], -0.1 * 0.5 / (0.5 + 1e-8), accuracy: 1e-6)
    XCTAssertEqual(bias[1], 0.1 * 2 / (2 + 1e-8), accuracy: 1e-6)
    gradients = plan.makeGradients()
    gradients.accumulate("classifier.bias", Tensor(shape: [2], scalars: [0.5, -2]))
    optimizer.apply(gradients, to: &plan)
    // Step 2 with the same gradient: m̂ = g, v̂ = g² again; decay uses the current value.
    let after = plan.model.namedParameters.first { $0.0 == "classifier.bias" }!.1.scalars
    let expected0 = bias[0] - 0.1 * (0.5 / (0.5 + 1e-8) + 0.01 * bias[0])
    XCTAssertEqual(after[0], expected0, accuracy: 1e-6)
  }

  func testTrainerLearnsAndEvaluates() throws {
    var trainer = Trainer(
      plan: try tinyPlan(), source: source(),
      settings: TrainerSettings(
        steps: 30, batchSize: 10, learningRate: 0.05, evaluateEvery: 10, seed: 0))
    var losses: [Double] = []
    while !trainer.isFinished { losses.append(try trainer.step().loss) }
    XCTAssertLessThan(losses.suffix(5).reduce(0, +), losses.prefix(5).reduce(0, +))
    let evaluation = try trainer.evaluate(.validation)
    XCTAssertTrue((0...1).contains(evaluation.accuracy))
    XCTAssertEqual(trainer.state.step, 30)
  }

  func testNonFiniteLossStopsWithoutChangingTheState() throws {
    let plan = try tinyPlan()
    var trainer = Trainer(
      plan: plan, source: source(poisoned: true),
      settings: TrainerSettings(steps: 5, batchSize: 4, learningRate: 0.1, evaluateEvery: 5))
    XCTAssertThrowsError(try trainer.step()) { error in
      XCTAssertTrue("\(error)".contains("at step 1"), "\(error)")
      XCTAssertTrue("\(error)".contains("lower the learning rate"), "\(error)")
    }
    XCTAssertEqual(trainer.state.step, 0)
    for ((name, before), (_, after)) in zip(
      plan.model.namedParameters, trainer.plan.model.namedParameters)
    {
      XCTAssertTrue(before.isBitwiseEqual(to: after), name)
    }
  }

  func testStuckAtChanceDetection() {
    let flat = (1...100).map {
      StepRecord(
        step: $0, loss: 0.693, learningRate: 1e-3, decay: 1, noise: false, gradientNorm: 0.1)
    }
    func evaluation(_ step: Int, _ accuracy: Double) -> EvaluationRecord {
      EvaluationRecord(
        step: step, split: "validation", accuracy: accuracy, loss: 0.69, exportedAccuracy: accuracy,
        exportedLoss: 0.69, groups: [:])
    }
    let stuck = stuckAtChance(
      steps: flat, evaluations: [evaluation(50, 0.55), evaluation(100, 0.551)], classes: 2,
      majority: 0.55)
    XCTAssertNotNil(stuck)
    XCTAssertTrue(stuck?.contains("learning rate") == true)
    let learning = (1...100).map {
      StepRecord(
        step: $0, loss: 0.693 - Double($0) * 0.003, learningRate: 1e-3, decay: 1, noise: false,
        gradientNorm: 0.1)
    }
    XCTAssertNil(
      stuckAtChance(
        steps: learning, evaluations: [evaluation(50, 0.7), evaluation(100, 0.8)], classes: 2,
        majority: 0.55))
    XCTAssertNil(
      stuckAtChance(
        steps: flat, evaluations: [evaluation(50, 0.55), evaluation(100, 0.7)], classes: 2,
        majority: 0.55), "accuracy above the majority class is not stuck")
  }

  func testSchedulesAroundTheirEndsAndMonotone() {
    for shape in [DecayCurve.Shape.linear, .cosine, .sine] {
      let curve = DecayCurve(shape: shape, start: 0.2, end: 0.8)
      XCTAssertEqual(curve.decay(at: 0.199), 1, "\(shape)")
      XCTAssertEqual(curve.decay(at: 0.2), 1, accuracy: 1e-6, "\(shape)")
      XCTAssertLessThan(curve.decay(at: 0.21), 1, "\(shape)")
      XCTAssertGreaterThan(curve.decay(at: 0.79), 0, "\(shape)")
      XCTAssertEqual(curve.decay(at: 0.8), 0, "\(shape)")
      var previous: Float = 1
      for i in 0...1000 {
        let d = curve.decay(at: Double(i) / 1000)
        XCTAssertLessThanOrEqual(d, previous, "\(shape) rises at \(i)")
        previous = d
      }
    }
    let settings = TrainerSettings(
      steps: 100, batchSize: 1, learningRate: 1, warmup: 0.1, evaluateEvery: 10)
    XCTAssertEqual(settings.learningRate(at: 0), 0.1, accuracy: 1e-6)
    XCTAssertEqual(settings.learningRate(at: 9), 1, accuracy: 1e-6)
    XCTAssertEqual(settings.learningRate(at: 50), 1)
  }

  func testFiguresAreWellFormed() throws {
    var trainer = Trainer(
      plan: try tinyPlan(), source: source(),
      settings: TrainerSettings(steps: 4, batchSize: 5, learningRate: 0.01, evaluateEvery: 2))
    while !trainer.isFinished {
      let record = try trainer.step()
      if record.step % 2 == 0 { _ = try trainer.evaluate(.validation) }
    }
    let figures = ReportFigures.figures(trainer: trainer, majority: 0.33)
    XCTAssertTrue(figures.contains { $0.0 == "curves.svg" })
    for (name, svg) in figures {
      let parser = XMLParser(data: Data(svg.utf8))
      XCTAssertTrue(parser.parse(), "\(name) is not well-formed XML")
      XCTAssertTrue(svg.contains("Validation accuracy") || name != "curves.svg")
    }
  }
}

/// A crash at any moment of `StateStore.save` leaves a state that resumes.
final class StateStoreTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func trainer() throws -> Trainer {
    let configuration = VGGConfiguration(
      stages: [.convolution(channels: 4), .maxPool], batchNorm: true, inChannels: 1, imageSize: 8,
      classCount: 3, classifierHidden: [8], averagePool: nil, dropout: 0.2)
    let model = Model.vgg(VGGModel(configuration: configuration, initialization: .seeded(1)))
    let plan = try TrainingPlan(
      compiling: model, trainable: Set(model.namedParameters.map(\.0)), schedules: [:])
    var random = RandomStream(seed: 3)
    let source = PixelExamples(
      pixels: Tensor.uniform(shape: [30, 1, 8, 8], low: 0, high: 1, random: &random),
      labels: (0..<30).map { Int32($0 % 3) },
      split: DataSplit(train: Array(0..<20), validation: Array(20..<25), test: Array(25..<30)))
    return Trainer(
      plan: plan, source: source,
      settings: TrainerSettings(steps: 10, batchSize: 4, learningRate: 0.01, evaluateEvery: 5))
  }

  private func parameters(_ trainer: Trainer) -> [String: Tensor] {
    Dictionary(uniqueKeysWithValues: trainer.plan.model.namedParameters.map { ($0.0, $0.1) })
  }

  func testResumeAfterACrashBetweenTheRenames() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-state-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    let state = root.appendingPathComponent("state")
    var original = try trainer()
    for _ in 0..<3 { _ = try original.step() }
    try StateStore.save(original, manifest: "m", to: state)
    let atThree = parameters(original)
    for _ in 0..<2 { _ = try original.step() }
    // A crash after `state` moved to `state.old` and before `state.new` moved in, with
    // `state.new` half written.
    try FileManager.default.moveItem(at: state, to: root.appendingPathComponent("state.old"))
    let fresh = root.appendingPathComponent("state.new")
    try FileManager.default.createDirectory(at: fresh, withIntermediateDirectories: true)
    try Data("{\"format\": 1, \"st".utf8).write(to: fresh.appendingPathComponent("state.json"))
    var resumed = try trainer()
    try StateStore.load(from: state, into: &resumed, manifest: "m")
    XCTAssertEqual(resumed.state.step, 3)
    for (name, tensor) in parameters(resumed) {
      XCTAssertTrue(tensor.isBitwiseEqual(to: atThree[name]!), name)
    }
    // The next save recovers the layout: `state` complete, no leftovers.
    try StateStore.save(resumed, manifest: "m", to: state)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: state.appendingPathComponent("state.json").path))
    XCTAssertFalse(
      FileManager.default.fileExists(atPath: root.appendingPathComponent("state.old").path))
    XCTAssertFalse(FileManager.default.fileExists(atPath: fresh.path))
    // Resumed and uninterrupted runs end the same.
    while !resumed.isFinished { _ = try resumed.step() }
    var whole = try trainer()
    while !whole.isFinished { _ = try whole.step() }
    for (name, tensor) in parameters(whole) {
      XCTAssertTrue(tensor.isBitwiseEqual(to: parameters(resumed)[name]!), name)
    }
  }

  func testAnotherManifestCannotResume() throws {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-state-\(UUID().uuidString)")
    addTeardownBlock { try? FileManager.default.removeItem(at: root) }
    let state = root.appendingPathComponent("state")
    var original = try trainer()
    _ = try original.step()
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    try StateStore.save(original, manifest: "first", to: state)
    var other = try trainer()
    XCTAssertThrowsError(try StateStore.load(from: state, into: &other, manifest: "second")) {
      XCTAssertTrue("\($0)".contains("made by another manifest text"), "\($0)")
    }
  }
}

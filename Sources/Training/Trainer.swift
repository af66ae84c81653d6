import Datasets
import Distributed
import Foundation
import Models
import Surgery
import Tensor

/// Where the examples come from: a split's indices and a way to batch them.
public protocol ExampleSource: Sendable {
  var split: DataSplit { get }
  var classCount: Int { get }
  var labels: [Int32] { get }
  func batch(_ indices: [Int]) throws -> Batch
}

/// The training loop's settings (docs/manifest.md's `train` section, resolved).
public struct TrainerSettings: Sendable, Equatable {
  public var steps: Int
  public var batchSize: Int
  public var learningRate: Float
  public var weightDecay: Float
  /// Fraction of steps with a linear learning-rate warm-up (then constant).
  public var warmup: Double
  public var evaluateEvery: Int
  /// Steps between saved training states; nil: only at the end.
  public var checkpointEvery: Int?
  /// Gradients are scaled down to this global L2 norm when larger.
  public var clipNorm: Float
  public var seed: UInt64
  /// Examples per evaluation batch.
  public var evaluationBatchSize: Int

  public init(
    steps: Int, batchSize: Int, learningRate: Float, weightDecay: Float = 0, warmup: Double = 0,
    evaluateEvery: Int, checkpointEvery: Int? = nil, clipNorm: Float = 1, seed: UInt64 = 0,
    evaluationBatchSize: Int = 64
  ) {
    self.steps = steps
    self.batchSize = batchSize
    self.learningRate = learningRate
    self.weightDecay = weightDecay
    self.warmup = warmup
    self.evaluateEvery = evaluateEvery
    self.checkpointEvery = checkpointEvery
    self.clipNorm = clipNorm
    self.seed = seed
    self.evaluationBatchSize = evaluationBatchSize
  }

  /// The learning rate at `step` (0-based): linear warm-up, then constant.
  public func learningRate(at step: Int) -> Float {
    let warmupSteps = Int((warmup * Double(steps)).rounded())
    guard warmupSteps > 0, step < warmupSteps else { return learningRate }
    return learningRate * Float(step + 1) / Float(warmupSteps)
  }
}

/// The held-out parts a run is evaluated on (the training split never is).
public enum EvaluationSplit: String, Sendable {
  case validation, test
}

/// One logged training step.
public struct StepRecord: Codable, Sendable, Equatable {
  public var step: Int
  public var loss: Double
  public var learningRate: Double
  /// Mean decay factor over the wrapped nodes (1 without decay).
  public var decay: Double
  public var noise: Bool
  public var gradientNorm: Double

  public init(
    step: Int, loss: Double, learningRate: Double, decay: Double, noise: Bool, gradientNorm: Double
  ) {
    self.step = step
    self.loss = loss
    self.learningRate = learningRate
    self.decay = decay
    self.noise = noise
    self.gradientNorm = gradientNorm
  }
}

/// Accuracy and loss on a split, with the frozen weights as they are and as exported (W-free).
public struct EvaluationRecord: Codable, Sendable, Equatable {
  public var step: Int
  public var split: String
  public var accuracy: Double
  public var loss: Double
  public var exportedAccuracy: Double
  public var exportedLoss: Double
  /// Per layer group (role): the mean L2 norm of the adapters' C, of s·B·A's factors (‖A‖·‖B‖·s),
  /// and the effective weight's measured mean and standard deviation beside the original's.
  public var groups: [String: GroupStatistics]

  public init(
    step: Int, split: String, accuracy: Double, loss: Double, exportedAccuracy: Double,
    exportedLoss: Double, groups: [String: GroupStatistics]
  ) {
    self.step = step
    self.split = split
    self.accuracy = accuracy
    self.loss = loss
    self.exportedAccuracy = exportedAccuracy
    self.exportedLoss = exportedLoss
    self.groups = groups
  }
}

public struct GroupStatistics: Codable, Sendable, Equatable {
  public var biasNorm: Double
  public var adapterNorm: Double
  public var decay: Double
  public var effectiveMean: Double
  public var effectiveStandardDeviation: Double
  public var originalMean: Double
  public var originalStandardDeviation: Double
}

/// Why a run stopped before its last step; the last good state is kept.
public struct TrainingStopped: Error, CustomStringConvertible, Sendable {
  public var step: Int
  public var reason: String
  public var description: String { "training stopped at step \(step): \(reason)" }
}

/// The state a run resumes from: everything that makes the next step what it would have been.
public struct TrainingState: Sendable {
  public var step: Int
  public var order: BatchOrder
  public var random: RandomStream
  public var optimizerStep: Int
  public var steps: [StepRecord]
  public var evaluations: [EvaluationRecord]
  /// Where each extra distillation source (`Trainer.pools`) is in its order.
  public var poolOrders: [BatchOrder] = []
  /// Seconds of training up to `step`, summed over the sessions of a resumed run (the steps
  /// an interrupted session ran past its last saved state are not counted).
  public var trainSeconds: Double = 0
}

/// The training loop over a compiled plan.
public struct Trainer: Sendable {
  public private(set) var plan: TrainingPlan
  public private(set) var optimizer: AdamW
  public private(set) var state: TrainingState
  public let settings: TrainerSettings
  public let source: any ExampleSource
  /// The data-parallel processes (one process alone by default): each computes the gradients of
  /// its share of every batch, and the shares are summed (`DataParallel.swift`).
  public let group: any ProcessGroup
  /// Seconds spent in the per-step all-reduce this session (waiting for the slowest rank
  /// included) and the steps it covers; not saved.
  public private(set) var reduceSeconds = 0.0
  public private(set) var reducedSteps = 0
  /// A teacher to distil from (`train.distill`); nil: cross-entropy only.
  public let distillation: Distillation?
  /// Extra examples the teacher labels (`train.distill.augment`, `unlabeled`); every step
  /// distils on a batch of each. Used only with `distillation`, in one process.
  public let pools: [SoftLabelPool]

  public init(
    plan: TrainingPlan, source: any ExampleSource, settings: TrainerSettings,
    group: any ProcessGroup = SingleProcess(), distillation: Distillation? = nil,
    pools: [SoftLabelPool] = []
  ) {
    self.distillation = distillation
    self.pools = distillation == nil ? [] : pools
    self.plan = plan
    self.source = source
    self.settings = settings
    self.group = group
    optimizer = AdamW(
      plan: plan, learningRate: settings.learningRate, weightDecay: settings.weightDecay)
    state = TrainingState(
      step: 0, order: BatchOrder(indices: source.split.train, seed: settings.seed),
      random: RandomStream(seed: settings.seed, stream: 7), optimizerStep: 0, steps: [],
      evaluations: [], poolOrders: self.pools.map { $0.initialOrder() })
  }

  public var isFinished: Bool { state.step >= settings.steps }

  /// Sets the schedules to the end of training (progress 1: every decay at d = 0), as the
  /// model is tested, saved and exported once the last step has run.
  public mutating func finishSchedules() {
    plan.setProgress(1)
  }

  /// One optimizer step; on a non-finite loss or gradient nothing changes and it throws.
  public mutating func step() throws -> StepRecord {
    let step = state.step
    plan.setProgress(Double(step) / Double(settings.steps))
    var order = state.order
    var random = state.random
    // Every rank draws the same global batch and keeps its rows; dropout draws the share's part
    // of the whole batch's masks, so they are one process's masks however the batch is split.
    let indices = order.next(settings.batchSize)
    let rows = group.share(of: indices.count)
    let whole = try source.batch(indices)
    var candidate = plan
    if group.size > 1 { random.batchShare = BatchShare(rows: rows, count: indices.count) }
    let held = group.size == 1 ? whole : whole.rows(rows)
    var (loss, _, gradients) =
      if let distillation {
        try candidate.lossAndGradients(held, distillation: distillation, random: &random)
      } else {
        try candidate.lossAndGradients(held, random: &random)
      }
    random.batchShare = nil
    var poolOrders = state.poolOrders
    if let distillation, !pools.isEmpty {
      guard group.size == 1 else {
        throw PlanError("train.distill.augment and unlabeled train in one process only")
      }
      // Each extra batch after the training batch, in the pools' order: its dropout masks
      // continue the step's stream, so the step stays one deterministic sequence of draws.
      for (index, pool) in pools.enumerated() {
        let drawn = poolOrders[index].next(pool.batchSize)
        let (extraLoss, extraGradients) = try candidate.softLabelLossAndGradients(
          try pool.source.batch(drawn), distillation: distillation, random: &random)
        loss += pool.weight * extraLoss
        for (name, gradient) in extraGradients.tensors {
          var weighted = gradient
          if pool.weight != 1 { weighted.scale(by: pool.weight) }
          gradients.accumulate(name, weighted)
        }
      }
    }
    if group.size > 1 {
      // The sum over ranks of (share mean × share / batch) is the global batch's mean; a
      // non-finite loss or gradient anywhere is non-finite everywhere after the sum.
      let started = ContinuousClock.now
      (loss, gradients) = try reduce(
        loss: loss, gradients: gradients, weight: Float(rows.count) / Float(indices.count),
        plan: &candidate)
      let elapsed = (ContinuousClock.now - started).components
      reduceSeconds += Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18
      reducedSteps += 1
    }
    guard loss.isFinite else {
      throw TrainingStopped(
        step: step + 1,
        reason:
          "the loss is \(loss); lower the learning rate (train.optimizer.lr) or check the data")
    }
    var squares = 0.0
    for name in plan.trainable {
      if let gradient = gradients[name] { squares += gradient.dot(gradient) }
    }
    let norm = squares.squareRoot()
    guard norm.isFinite else {
      throw TrainingStopped(
        step: step + 1,
        reason: "a gradient is not finite (norm \(norm)); lower the learning rate or the rank")
    }
    var clipped = gradients
    if settings.clipNorm > 0, norm > Double(settings.clipNorm) {
      clipped = Self.scaled(gradients, by: Float(Double(settings.clipNorm) / norm))
    }
    let rate = settings.learningRate(at: step)
    optimizer.learningRate = rate
    optimizer.apply(clipped, to: &candidate)
    plan = candidate
    state.order = order
    state.random = random
    state.poolOrders = poolOrders
    state.step = step + 1
    state.optimizerStep = optimizer.step
    let decays = plan.model.decayFactors.values
    let record = StepRecord(
      step: step + 1, loss: Double(loss), learningRate: Double(rate),
      decay: decays.isEmpty ? 1 : Double(decays.reduce(0, +)) / Double(decays.count),
      noise: plan.hasActiveNoise, gradientNorm: norm)
    state.steps.append(record)
    return record
  }

  static func scaled(_ gradients: GradientSet, by factor: Float) -> GradientSet {
    var result = GradientSet(trainable: gradients.trainable)
    for (name, gradient) in gradients.tensors {
      var copy = gradient
      copy.scale(by: factor)
      result.accumulate(name, copy)
    }
    return result
  }

  /// Accuracy and mean loss of `model` on `indices`; `sharded`: every rank of the group measures
  /// its share and the counts are summed (all ranks must call it then).
  public func measure(_ model: Model, on indices: [Int], sharded: Bool = true) throws -> (
    accuracy: Double, loss: Double
  ) {
    guard !indices.isEmpty else { return (.nan, .nan) }
    let distributed = sharded && group.size > 1
    let share = distributed ? Array(indices[group.share(of: indices.count)]) : indices
    var correct = 0
    var totalLoss = 0.0
    try forEachChunk(of: share, model: model) { logits, labels in
      correct += zip(Self.argmax(logits), labels).filter { $0 == $1 }.count
      totalLoss +=
        Double(CrossEntropy.lossAndGradient(logits: logits, labels: labels).loss)
        * Double(labels.count)
    }
    if distributed {
      var sums = [Double(correct), totalLoss]
      try group.allreduceSum(&sums)
      return (sums[0] / Double(indices.count), sums[1] / Double(indices.count))
    }
    return (Double(correct) / Double(indices.count), totalLoss / Double(indices.count))
  }

  /// The predicted class of every example of `indices` (in that order), on this process alone:
  /// what `predictions.json` records for paired comparisons between runs.
  public func predictions(of model: Model, on indices: [Int]) throws -> [Int32] {
    var predicted: [Int32] = []
    predicted.reserveCapacity(indices.count)
    try forEachChunk(of: indices, model: model) { logits, _ in
      predicted += Self.argmax(logits)
    }
    return predicted
  }

  /// Runs `model` over `indices` in evaluation batches: each chunk's logits and labels.
  private func forEachChunk(
    of indices: [Int], model: Model, _ body: (Tensor, [Int32]) throws -> Void
  ) throws {
    var start = 0
    while start < indices.count {
      let chunk = Array(indices[start..<min(indices.count, start + settings.evaluationBatchSize)])
      let batch = try source.batch(chunk)
      try body(try model.logits(batch), batch.labels ?? [])
      start += chunk.count
    }
  }

  /// The index of each row's largest logit (the first on ties).
  static func argmax(_ logits: Tensor) -> [Int32] {
    let (rows, classes) = (logits.shape[0], logits.shape[1])
    return logits.withUnsafeBufferPointer { z in
      (0..<rows).map { row in
        var best = 0
        for c in 1..<classes where z[row * classes + c] > z[row * classes + best] { best = c }
        return Int32(best)
      }
    }
  }

  /// Evaluates on `split` with W as it is and as exported; validation records are kept.
  public mutating func evaluate(_ split: EvaluationSplit) throws -> EvaluationRecord {
    let indices =
      switch split {
      case .validation: source.split.validation
      case .test: source.split.test
      }
    let current = try measure(plan.model, on: indices)
    // Once every wrapped layer is at d = 0 the model is its exported view: measured once.
    let exported =
      plan.model.nodesWithFrozenWeight.isEmpty
      ? current : try measure(plan.exportedView, on: indices)
    let record = EvaluationRecord(
      step: state.step, split: split.rawValue, accuracy: current.accuracy, loss: current.loss,
      exportedAccuracy: exported.accuracy, exportedLoss: exported.loss,
      groups: plan.groupStatistics(seed: settings.seed &+ UInt64(state.step)))
    if split == .validation { state.evaluations.append(record) }
    return record
  }

  /// Restores a saved state (resume).
  /// Records the training seconds up to the current step (saved with the state).
  public mutating func recordTrainSeconds(_ seconds: Double) {
    state.trainSeconds = seconds
  }

  public mutating func restore(
    _ saved: TrainingState, trainable: [String: Tensor], runningStatistics: [String: Tensor],
    moments: [String: (first: Tensor, second: Tensor)]
  ) throws {
    try plan.restore(trainable: trainable, runningStatistics: runningStatistics)
    guard optimizer.restore(step: saved.optimizerStep, moments: moments) else {
      throw PlanError("the saved optimizer state does not match the plan's trainable tensors")
    }
    guard saved.poolOrders.map(\.indices.count) == pools.map(\.source.count) else {
      throw PlanError(
        "the saved state draws from \(saved.poolOrders.count) extra distillation sources of sizes \(saved.poolOrders.map(\.indices.count)), this run from sizes \(pools.map(\.source.count))"
      )
    }
    state = saved
  }
}

extension TrainingPlan {
  /// True when some wrapped node draws noise at the current progress.
  public var hasActiveNoise: Bool {
    var active = false
    var copy = model
    copy.visitWrappable(
      linear: { if $0.adapter?.noiseActive == true && $0.adapter?.noise != nil { active = true } },
      convolution: {
        if $0.adapter?.noiseActive == true && $0.adapter?.noise != nil { active = true }
      })
    return active
  }

  /// Per role: adapter norms, C norms, and one sampled effective weight's moments (the first
  /// wrapped node of the role) beside the original weight's.
  public func groupStatistics(seed: UInt64) -> [String: GroupStatistics] {
    let roles = Dictionary(uniqueKeysWithValues: model.nodes.map { ($0.name, $0.role.rawValue) })
    var sums: [String: (bias: Double, adapter: Double, decay: Double, count: Int)] = [:]
    var samples: [String: GroupStatistics] = [:]
    func moments(_ tensor: Tensor) -> (Double, Double) {
      let mean = tensor.sum / Double(max(1, tensor.count))
      let meanSquare = tensor.dot(tensor) / Double(max(1, tensor.count))
      return (mean, max(0, meanSquare - mean * mean).squareRoot())
    }
    func visit(_ adapter: LowRankAdapter?, weight: Tensor) {
      guard let adapter, let role = roles[adapter.node] else { return }
      var entry = sums[role] ?? (0, 0, 0, 0)
      entry.bias += adapter.bias.map { $0.dot($0).squareRoot() } ?? 0
      entry.adapter +=
        Double(adapter.scale) * adapter.down.dot(adapter.down).squareRoot()
        * adapter.up.dot(adapter.up).squareRoot()
      entry.decay += Double(adapter.decay)
      entry.count += 1
      sums[role] = entry
      if samples[role] == nil {
        var random = RandomStream(seed: seed, stream: 11)
        // The frozen path a training step would take (`d·W` also when it is skipped at d = 0).
        let effective =
          FrozenWeight(weight, under: adapter, mode: .training, random: &random).tensor(of: weight)
          ?? LowRankAdapter.decayed(weight, by: adapter.decay)
        let (mean, deviation) = moments(effective)
        let (originalMean, originalDeviation) = moments(weight)
        samples[role] = GroupStatistics(
          biasNorm: 0, adapterNorm: 0, decay: 0, effectiveMean: mean,
          effectiveStandardDeviation: deviation, originalMean: originalMean,
          originalStandardDeviation: originalDeviation)
      }
    }
    var copy = model
    copy.visitWrappable(
      linear: { visit($0.adapter, weight: $0.weight) },
      convolution: { visit($0.adapter, weight: $0.weight) })
    var result: [String: GroupStatistics] = [:]
    for (role, entry) in sums {
      guard var statistics = samples[role] else { continue }
      statistics.biasNorm = entry.bias / Double(entry.count)
      statistics.adapterNorm = entry.adapter / Double(entry.count)
      statistics.decay = entry.decay / Double(entry.count)
      result[role] = statistics
    }
    return result
  }
}

import Models
import Tensor

/// Why a plan could not be compiled or changed.
public struct PlanError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// A compiled training plan: the rewritten graph, the exact set of trainable tensors and each
/// wrapped node's schedule, fixed at compile time.
///
/// Trainability lives here and only here: the summary, the optimizer (its state is allocated
/// for `trainable` alone), the backward pass (no weight-gradient work for anything else) and
/// the checkpoint writer all read it. It cannot change behind the plan's back: changing it means
/// compiling again, and `setTrainable` refuses loudly — the silent revert the original research notes suffered
/// after Keras `compile()` cannot happen.
public struct TrainingPlan: Sendable {
  /// The graph; only `update` (trainable tensors) and `setProgress` (decay state) change it.
  public internal(set) var model: Model
  /// Trainable tensor names, in node order.
  public let trainable: [String]
  public let trainableSet: Set<String>
  /// Wrapped node → its decay and noise schedule.
  public let schedules: [String: AdapterSchedule]

  /// Compiles `model` with exactly `trainable` trained; every name must be a parameter.
  public init(compiling model: Model, trainable: Set<String>, schedules: [String: AdapterSchedule])
    throws(PlanError)
  {
    let names = model.namedParameters.map(\.0)
    let known = Set(names)
    if let unknown = trainable.subtracting(known).sorted().first {
      throw PlanError("cannot compile: '\(unknown)' is not a parameter of the graph")
    }
    let wrapped = Set(model.nodes.filter { $0.adapter != nil }.map(\.name))
    if let stray = Set(schedules.keys).subtracting(wrapped).sorted().first {
      throw PlanError("cannot compile: a schedule names '\(stray)', which is not a wrapped node")
    }
    self.model = model
    self.trainable = names.filter { trainable.contains($0) }
    trainableSet = trainable
    self.schedules = schedules
  }

  /// Refused, always: trainability is fixed when a plan is compiled.
  public func setTrainable(_ name: String, _ trainable: Bool) throws(PlanError) {
    throw PlanError(
      "trainability of '\(name)' cannot change on a compiled plan; change the manifest's freeze/train rules (or the trainable set) and compile again"
    )
  }

  /// A gradient set that computes exactly the trainable tensors' gradients.
  public func makeGradients() -> GradientSet { GradientSet(trainable: trainableSet) }

  /// Per-node trainable and frozen counts, read from this plan.
  public func summary(title: String) -> ParameterSummary {
    ParameterSummary(title: title, nodes: model.nodes, trainable: trainableSet)
  }

  /// Applies `update` to every trainable tensor (and to nothing else).
  public mutating func update(_ body: (String, inout Tensor) -> Void) {
    let trained = trainableSet
    model.visitParameters { name, tensor in
      if trained.contains(name) { body(name, &tensor) }
    }
  }

  /// Restores trainable tensors and running statistics saved by a checkpoint (resume). Names
  /// outside the trainable set are refused: a resumed run cannot change what trains.
  public mutating func restore(
    trainable values: [String: Tensor], runningStatistics: [String: Tensor]
  )
    throws(PlanError)
  {
    if let stray = Set(values.keys).subtracting(trainableSet).sorted().first {
      throw PlanError("the saved state holds '\(stray)', which this plan does not train")
    }
    if let missing = trainableSet.subtracting(values.keys).sorted().first {
      throw PlanError("the saved state lacks the trainable tensor '\(missing)'")
    }
    var mismatch: String?
    update { name, tensor in
      guard let value = values[name] else { return }
      if value.shape != tensor.shape { mismatch = name } else { tensor = value }
    }
    if let mismatch { throw PlanError("the saved '\(mismatch)' has another shape than the plan's") }
    model.restoreRunningStatistics(runningStatistics)
  }

  /// Replaces batch-norm running statistics (data-parallel ranks keep them averaged).
  public mutating func setRunningStatistics(_ statistics: [String: Tensor]) {
    model.restoreRunningStatistics(statistics)
  }

  /// Sets every wrapped node's `d` and noise switch for training progress `p ∈ [0, 1]`.
  public mutating func setProgress(_ progress: Double) {
    let schedules = self.schedules
    model.visitWrappable(
      linear: { layer in TrainingPlan.apply(schedules, progress, to: &layer.adapter) },
      convolution: { layer in TrainingPlan.apply(schedules, progress, to: &layer.adapter) })
  }

  private static func apply(
    _ schedules: [String: AdapterSchedule], _ progress: Double, to adapter: inout LowRankAdapter?
  ) {
    guard var current = adapter, let schedule = schedules[current.node] else { return }
    let (decay, noise) = schedule.state(at: progress)
    current.decay = decay
    current.noiseActive = noise
    adapter = current
  }

  /// The model as it would be exported: every wrapped node at `d = 0` without noise, i.e.
  /// `s·B A x + C` only (available at any time; the plan itself is unchanged).
  public var exportedView: Model {
    var view = model
    view.visitWrappable(
      linear: { layer in
        layer.adapter?.decay = 0
        layer.adapter?.noiseActive = false
      },
      convolution: { layer in
        layer.adapter?.decay = 0
        layer.adapter?.noiseActive = false
      })
    return view
  }
}

/// One batch of either task.
public enum Batch: Sendable {
  case text(TextBatch)
  case images(pixels: Tensor, labels: [Int32]?)

  public var labels: [Int32]? {
    switch self {
    case .text(let batch): return batch.labels
    case .images(_, let labels): return labels
    }
  }

  public var count: Int {
    switch self {
    case .text(let batch): return batch.batchSize
    case .images(let pixels, _): return pixels.shape[0]
    }
  }
}

extension TrainingPlan {
  /// A training-mode forward and backward pass: the mean loss and the gradients of exactly the
  /// trainable tensors. Batch-norm running statistics move (buffers, not trainability).
  public mutating func lossAndGradients(_ batch: Batch, random: inout RandomStream)
    throws(ModelInputError) -> (loss: Float, logits: Tensor, gradients: GradientSet)
  {
    var gradients = makeGradients()
    switch (model, batch) {
    case (.bert(let bert), .text(let text)):
      let (outputs, tape) = try bert.forward(text, mode: .training, random: &random)
      guard let tape, let loss = outputs.loss, let logits = outputs.logits else {
        throw ModelInputError("training needs labels and a classifier head")
      }
      bert.backward(tape: tape, outputs: outputs, gradients: &gradients)
      return (loss, logits, gradients)
    case (.vgg(var vgg), .images(let pixels, let labels)):
      let (outputs, tape) = try vgg.forward(
        pixels: pixels, labels: labels, mode: .training, random: &random)
      model = .vgg(vgg)
      guard let tape, let loss = outputs.loss else {
        throw ModelInputError("training needs labels")
      }
      vgg.backward(tape: tape, gradients: &gradients)
      return (loss, outputs.logits, gradients)
    default:
      throw ModelInputError("a \(model.family) model cannot take this kind of batch")
    }
  }
}

extension Model {
  /// Evaluation-mode logits (no dropout, batch-norm running statistics, no noise).
  public func logits(_ batch: Batch) throws(ModelInputError) -> Tensor {
    var random = RandomStream(seed: 0)
    switch (self, batch) {
    case (.bert(let bert), .text(let text)):
      guard let logits = try bert.forward(text, mode: .evaluation, random: &random).outputs.logits
      else { throw ModelInputError("the model has no classifier head") }
      return logits
    case (.vgg(var vgg), .images(let pixels, let labels)):
      return try vgg.forward(pixels: pixels, labels: labels, mode: .evaluation, random: &random)
        .outputs.logits
    default:
      throw ModelInputError("a \(family) model cannot take this kind of batch")
    }
  }
}

import Datasets
import Foundation
import Manifest
import Models
import Plumbing
import Surgery

/// docs/manifest.md's `results.json`.
public struct RunResults: Codable, Sendable {
  public struct Parameters: Codable, Sendable {
    public var total: Int
    public var trainable: Int
    public var nonTrainable: Int
    public var compressedTotal: Int

    enum CodingKeys: String, CodingKey {
      case total, trainable
      case nonTrainable = "non_trainable"
      case compressedTotal = "compressed_total"
    }

    public init(total: Int, trainable: Int, nonTrainable: Int, compressedTotal: Int) {
      self.total = total
      self.trainable = trainable
      self.nonTrainable = nonTrainable
      self.compressedTotal = compressedTotal
    }
  }

  public var name: String
  public var steps: Int
  public var trainSeconds: Double
  public var params: Parameters
  public var validationAccuracy: Double?
  /// The model as it ends: W-free when every wrapped layer ended at d = 0.
  public var testAccuracy: Double
  /// With W (nil when W is gone).
  public var testAccuracyWithW: Double?
  public var testAccuracyWFree: Double
  /// The exported model, reloaded from `compressed/` (nil without `output.compress`).
  public var exportedReloadTestAccuracy: Double?
  public var majorityClass: Double
  public var stuckAtChance: Bool
  public var stuckReason: String?
  public var endsWFree: Bool
  /// How the run was taught (`train.distill`); nil: no teacher.
  public var distillation: DistillationRecord?
  /// The extra distillation examples by source ("augment", "unlabeled"); nil: none.
  public var distillData: [String: ExtraSourceRecord]?
  /// `refit: sequential`'s choice per node, by node name; nil: no refit.
  public var refit: [RefitChoice]?
  /// `init: svd_whitened`'s start per node; nil: no whitened node.
  public var whitened: [WhitenedStart]?
  /// The OpenBLAS kernels the run used (`openblas_get_corename()`), and the processor, so
  /// timings from different machines are never compared unknowingly. Nil in older files.
  public var blasCore: String?
  public var cpuModel: String?
  public var cpuFeatures: [String]?
  /// Which build of surgeon's own elementwise loops ran: `avx2` or `baseline`.
  public var vectorKernels: String?
  /// Which surgeon wrote the file (version, executable checksum). Nil in older files.
  public var build: BuildIdentity?
  /// The input files the run read, by path, as they were when it started (`RunInputs`). Nil in
  /// older files.
  public var inputs: [String: FileFingerprint]?

  public init(
    name: String, steps: Int, trainSeconds: Double, params: Parameters,
    validationAccuracy: Double?, testAccuracy: Double, testAccuracyWithW: Double?,
    testAccuracyWFree: Double, exportedReloadTestAccuracy: Double?, majorityClass: Double,
    stuckAtChance: Bool, stuckReason: String?, endsWFree: Bool,
    distillation: DistillationRecord? = nil, blasCore: String? = nil, cpuModel: String? = nil,
    cpuFeatures: [String]? = nil, vectorKernels: String? = nil
  ) {
    self.name = name
    self.steps = steps
    self.trainSeconds = trainSeconds
    self.params = params
    self.validationAccuracy = validationAccuracy
    self.testAccuracy = testAccuracy
    self.testAccuracyWithW = testAccuracyWithW
    self.testAccuracyWFree = testAccuracyWFree
    self.exportedReloadTestAccuracy = exportedReloadTestAccuracy
    self.majorityClass = majorityClass
    self.stuckAtChance = stuckAtChance
    self.stuckReason = stuckReason
    self.endsWFree = endsWFree
    self.distillation = distillation
    self.blasCore = blasCore
    self.cpuModel = cpuModel
    self.cpuFeatures = cpuFeatures
    self.vectorKernels = vectorKernels
  }

  enum CodingKeys: String, CodingKey {
    case name, steps, params
    case trainSeconds = "train_seconds"
    case validationAccuracy = "validation_accuracy"
    case testAccuracy = "test_accuracy"
    case testAccuracyWithW = "test_accuracy_with_w"
    case testAccuracyWFree = "test_accuracy_w_free"
    case exportedReloadTestAccuracy = "exported_reload_test_accuracy"
    case majorityClass = "majority_class"
    case stuckAtChance = "stuck_at_chance"
    case stuckReason = "stuck_reason"
    case endsWFree = "ends_w_free"
    case distillation
    case distillData = "distill_data"
    case refit
    case whitened
    case blasCore = "blas_core"
    case cpuModel = "cpu_model"
    case cpuFeatures = "cpu_features"
    case vectorKernels = "vector_kernels"
    case build
    case inputs
  }

  /// JSON with `null` for absent values (docs/manifest.md: `test_accuracy_with_w` is null when W is
  /// gone), keys sorted.
  public func json() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(self)
    var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    for key in [
      "test_accuracy_with_w", "validation_accuracy", "exported_reload_test_accuracy",
      "distillation",
    ]
    where object[key] == nil {
      object[key] = NSNull()
    }
    let full = try JSONSerialization.data(
      withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: full, as: UTF8.self) + "\n"
  }
}

/// `results.json`'s `distillation`: the teacher and every term's weight (0: off).
public struct DistillationRecord: Codable, Sendable, Equatable {
  public var teacher: String
  public var temperature: Double
  public var logits: Double
  public var features: Double
  /// Every layer's hidden states (`hidden_states: {layers: all, weight}`).
  public var hiddenStates: Double
  public var attention: Double

  enum CodingKeys: String, CodingKey {
    case teacher, temperature, logits, features, attention
    case hiddenStates = "hidden_states"
  }

  public init(_ settings: DistillSettings) {
    teacher = settings.teacher.value
    temperature = settings.temperature
    logits = settings.logits
    features = settings.features
    hiddenStates = settings.hiddenStates
    attention = settings.attention
  }

  /// One line for the log: "temperature 2, logits 0.5, features 0, hidden_states 1 (every
  /// layer), attention 0".
  public var summary: String {
    func number(_ value: Double) -> String {
      value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(value)
    }
    let layers = hiddenStates > 0 ? " (every layer)" : ""
    return "temperature \(number(temperature)), logits \(number(logits)), features "
      + "\(number(features)), hidden_states \(number(hiddenStates))\(layers), attention "
      + "\(number(attention))"
  }
}

/// Stuck-at-chance detection (the original research notes' BERT-small at 50%): at the last evaluations the
/// training loss sits at ln(classes) and validation accuracy at the majority class.
public func stuckAtChance(
  steps: [StepRecord], evaluations: [EvaluationRecord], classes: Int, majority: Double
) -> String? {
  let recentSteps = steps.suffix(max(1, steps.count / 10))
  guard !recentSteps.isEmpty, let last = evaluations.last else { return nil }
  let loss = recentSteps.reduce(0) { $0 + $1.loss } / Double(recentSteps.count)
  let chanceLoss = log(Double(classes))
  let lossAtChance = abs(loss - chanceLoss) < 0.05 * chanceLoss
  let recent = evaluations.suffix(2)
  let accuracyAtChance = recent.allSatisfy { abs($0.accuracy - majority) < 0.02 }
  guard lossAtChance && accuracyAtChance else { return nil }
  return String(
    format:
      "training loss %.3f ≈ ln(%d) = %.3f and validation accuracy %.3f ≈ the majority class %.3f at step %d: the model predicts one class. Likely causes: a learning rate too high for this model (try 10× lower), the head or the layers that must learn left frozen (check `surgeon summary`), or noise that drowns the signal (noise.scale, clear_below).",
    loss, classes, chanceLoss, last.accuracy, majority, last.step)
}

/// `metrics.jsonl`: one object per logged step and per evaluation, in step order.
public func metricsLines(steps: [StepRecord], evaluations: [EvaluationRecord]) throws -> String {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  var lines: [(Int, Int, String)] = []
  for record in steps {
    var object =
      try JSONSerialization.jsonObject(with: encoder.encode(record)) as? [String: Any] ?? [:]
    object["type"] = "step"
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    lines.append((record.step, 0, String(decoding: data, as: UTF8.self)))
  }
  for record in evaluations {
    var object =
      try JSONSerialization.jsonObject(with: encoder.encode(record)) as? [String: Any] ?? [:]
    object["type"] = "evaluation"
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    lines.append((record.step, 1, String(decoding: data, as: UTF8.self)))
  }
  return lines.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map(\.2).joined(separator: "\n") + "\n"
}

/// `report.md`: what was done, the summary table, the numbers and the figures.
public func reportMarkdown(
  results: RunResults, summary: ParameterSummary, manifestPath: String, figures: [String],
  outputDirectory: String, test: EvaluationRecord
) -> String {
  func percent(_ value: Double?) -> String {
    guard let value, value.isFinite else { return "—" }
    return String(format: "%.3f", value)
  }
  var lines = [
    "# \(results.name)", "",
    "`surgeon apply \(manifestPath)`: \(results.steps) steps in \(String(format: "%.0f", results.trainSeconds)) s of training.",
    "",
    "| | value |", "|---|---|",
    "| test accuracy (the model as it ends\(results.endsWFree ? ", W-free" : "")) | **\(percent(results.testAccuracy))** |",
    "| test accuracy with W | \(percent(results.testAccuracyWithW)) |",
    "| test accuracy as exported (W-free view) | \(percent(results.testAccuracyWFree)) |",
    "| exported model reloaded from `compressed/` | \(percent(results.exportedReloadTestAccuracy)) |",
    "| validation accuracy (last evaluation) | \(percent(results.validationAccuracy)) |",
    "| majority class (test split) | \(percent(results.majorityClass)) |",
    "| test loss (W-free view) | \(String(format: "%.4f", test.exportedLoss)) |",
    "| parameters: total / trainable / after compression | \(results.params.total) / \(results.params.trainable) / \(results.params.compressedTotal) |",
    "",
  ]
  if results.stuckAtChance, let reason = results.stuckReason {
    lines += ["> **Warning: stuck at chance.** \(reason)", ""]
  }
  lines += [
    "## Parameters (from the compiled training plan)", "", "```", summary.table(), "```", "",
  ]
  if !figures.isEmpty {
    lines += ["## Figures", ""]
    for figure in figures { lines += ["![\(figure)](figures/\(figure))", ""] }
  }
  lines += [
    "Outputs in `\(outputDirectory)`: `model.safetensors` + `config.json` (the rewritten model),",
    "\(results.exportedReloadTestAccuracy != nil ? "`compressed/` (the W-free model), " : "")`results.json`, `metrics.jsonl`, `figures/`, `state/` (for `--resume`).",
    "",
  ]
  return lines.joined(separator: "\n")
}

/// `predictions.json`: the deployed model's class for every test example, with the example's
/// index in the data and its label, so two runs on the same split can be compared example by
/// example.
public struct TestPredictions: Codable, Sendable, Equatable {
  public var split = "test"
  /// "w-free" when the run ended W-free (the exported model), else "as-trained".
  public var model: String
  public var indices: [Int]
  public var labels: [Int32]
  public var predicted: [Int32]

  public init(model: String, indices: [Int], labels: [Int32], predicted: [Int32]) {
    self.model = model
    self.indices = indices
    self.labels = labels
    self.predicted = predicted
  }

  public func json() throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(self), as: UTF8.self) + "\n"
  }
}

/// `results.json`'s `whitened`: a node `init: svd_whitened` started, its rank, and the output
/// error its factors leave on the calibration inputs relative to its output variance there
/// (null after a refit, whose held-out errors are in `refit`).
public struct WhitenedStart: Codable, Sendable, Equatable {
  public var node: String
  public var rank: Int
  public var calibrationOutputError: Double?

  public init(node: String, rank: Int, calibrationOutputError: Double?) {
    self.node = node
    self.rank = rank
    self.calibrationOutputError = calibrationOutputError
  }

  enum CodingKeys: String, CodingKey {
    case node, rank
    case calibrationOutputError = "calibration_output_error"
  }

  /// As synthesised, except that the error is written as null rather than left out.
  public func encode(to encoder: Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(node, forKey: .node)
    try container.encode(rank, forKey: .rank)
    try container.encode(calibrationOutputError, forKey: .calibrationOutputError)
  }
}

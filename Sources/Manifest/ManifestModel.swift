/// A decoded value with the position of the YAML node it came from, so that later checks (the
/// rewriter's, the trainer's) can still point at the manifest. A defaulted value carries the
/// location of the section that would have held it.
public struct Located<Value: Sendable>: Sendable {
  public var value: Value
  public var location: SourceLocation

  public init(_ value: Value, at location: SourceLocation) {
    self.value = value
    self.location = location
  }

  /// The memberwise form, for code that builds manifests field by field.
  public init(value: Value, location: SourceLocation) {
    self.init(value, at: location)
  }
}

extension Located: Equatable where Value: Equatable {}
extension Located: Hashable where Value: Hashable {}

/// A manifest of format 1 (docs/manifest.md), decoded and checked as far as possible without a model.
public struct Manifest: Sendable, Equatable {
  /// The path as given to the decoder; every location names it.
  public var file: String
  /// The exact text, stored in checkpoints so a run can be reproduced.
  public var text: String
  /// 1 to 100 of [A-Za-z0-9._-]; names the default output directory.
  public var name: Located<String>
  public var model: ModelSection
  /// Applied in order; on overlap the later rule wins.
  public var surgery: [SurgeryRule]
  /// nil: apply only rewrites and saves.
  public var train: TrainSection?
  public var output: OutputSection
  /// `expect:`: bounds on the compiled plan's counts, in file order.
  public var expectations: [Expectation] = []

  public init(
    file: String, text: String, name: Located<String>, model: ModelSection, surgery: [SurgeryRule],
    train: TrainSection?, output: OutputSection
  ) {
    self.file = file
    self.text = text
    self.name = name
    self.model = model
    self.surgery = surgery
    self.train = train
    self.output = output
  }
}

public enum ModelFamily: String, Sendable, Equatable, Hashable, CaseIterable {
  case bert
  case vgg
}

public struct ModelSection: Sendable, Equatable {
  public var family: Located<ModelFamily>
  public var source: Located<ModelSource>
  /// `model.config`: single configuration fields of a preset to override (only with a preset).
  public var configOverrides: [ConfigOverride]
  /// `model.head.classes`: a fresh classifier of this many classes (2...100000).
  public var headClasses: Located<Int>?
  /// Seeds random weights and the fresh head.
  public var seed: Int

  public init(
    family: Located<ModelFamily>, source: Located<ModelSource>, configOverrides: [ConfigOverride],
    headClasses: Located<Int>?, seed: Int
  ) {
    self.family = family
    self.source = source
    self.configOverrides = configOverrides
    self.headClasses = headClasses
    self.seed = seed
  }
}

/// Where the weights come from.
public enum ModelSource: Sendable, Equatable, Hashable {
  /// A checkpoint directory, or "hf://ORG/NAME".
  case checkpoint(String)
  /// A built-in architecture; `randomWeights` is always true in a decoded manifest (presets have
  /// no pretrained weights offline), and kept explicit for the day they do.
  case preset(String, randomWeights: Bool)

  /// Every preset name and its family, in the order the documentation lists them.
  public static let presets: [(name: String, family: ModelFamily)] =
    ["bert-tiny", "bert-small", "bert-medium", "bert-base"].map { ($0, .bert) }
    + ["vgg11", "vgg11-bn", "vgg13", "vgg13-bn", "vgg16", "vgg16-bn", "vgg19", "vgg19-bn"].map {
      ($0, .vgg)
    } + [("vgg16-cifar", .vgg)]
}

/// One `model.config` entry; `location` is its key's.
public struct ConfigOverride: Sendable, Equatable {
  public var key: String
  public var value: ConfigValue
  public var location: SourceLocation

  public init(key: String, value: ConfigValue, location: SourceLocation) {
    self.key = key
    self.value = value
    self.location = location
  }
}

/// A configuration value as YAML typed it: plain scalars become numbers, booleans or null;
/// quoted scalars stay strings.
public enum ConfigValue: Sendable, Equatable, Hashable {
  case int(Int)
  case double(Double)
  case string(String)
  case bool(Bool)
  case null
  case list([ConfigValue])
}

/// One element of `surgery`.
public enum SurgeryRule: Sendable, Equatable {
  case lora(LoRARule)
  /// Selectors whose parameters get no gradient; `location` is the `freeze:` key's.
  case freeze([Located<String>], location: SourceLocation)
  /// Selectors whose parameters are trained in full; `location` is the `train:` key's.
  case train([Located<String>], location: SourceLocation)
}

/// A `lora:` rule: which nodes to wrap and how the adapter is built and decayed.
public struct LoRARule: Sendable, Equatable {
  /// The `lora:` key's.
  public var location: SourceLocation
  /// Selectors; never empty.
  public var layers: [Located<String>]
  /// Selectors taken out of this rule.
  public var exclude: [Located<String>]
  /// Transformer block / convolution indices, expanded from ranges, in the order written.
  public var blocks: Located<[Int]>?
  /// >= 1; the model-dependent upper bound is checked by the rewriter.
  public var rank: Located<Int>
  /// > 0; nil means alpha = rank (scale 1).
  public var alpha: Located<Double>?
  /// Key `init`.
  public var initialization: Located<AdapterInitialization>
  /// Key `bias_c`; defaults to zeros when `decay` is set, none otherwise.
  public var biasC: Located<BiasCInitialization>
  /// Key `conv_form`; only affects Conv2d nodes.
  public var convForm: Located<ConvForm>
  /// nil: plain LoRA, W stays (d = 1 throughout).
  public var decay: DecaySchedule?
  /// nil: no noise; never set without `decay`.
  public var noise: NoiseSettings?
  /// nil: every node at `rank`; set: per-node ranks (at most `rank`) from one parameter budget.
  public var budget: RankBudget?
  /// Set exactly when `init` is svd_whitened.
  public var calibration: CalibrationSettings?
  /// Key `refit` (svd_whitened only); defaults to none.
  public var refit: Located<RefitMode>?

  public init(
    location: SourceLocation, layers: [Located<String>], exclude: [Located<String>],
    blocks: Located<[Int]>?, rank: Located<Int>, alpha: Located<Double>?,
    initialization: Located<AdapterInitialization>, biasC: Located<BiasCInitialization>,
    convForm: Located<ConvForm>, decay: DecaySchedule?, noise: NoiseSettings?,
    budget: RankBudget? = nil, calibration: CalibrationSettings? = nil,
    refit: Located<RefitMode>? = nil
  ) {
    self.budget = budget
    self.refit = refit
    self.calibration = calibration
    self.location = location
    self.layers = layers
    self.exclude = exclude
    self.blocks = blocks
    self.rank = rank
    self.alpha = alpha
    self.initialization = initialization
    self.biasC = biasC
    self.convForm = convForm
    self.decay = decay
    self.noise = noise
  }
}

/// A lora rule's `budget:`: the rule's nodes share `share` of their `W` and `b` parameters as
/// adapter factors, handed out rank by rank to the node whose next singular value brings the
/// most energy (σ² over ‖W‖²) per parameter, every node keeping at least `floor`.
public struct RankBudget: Sendable, Equatable {
  /// In (0, 1): the deployed factors over the wrapped layers' original parameters.
  public var share: Double
  /// >= 1: the smallest rank any node gets.
  public var floor: Int
  /// Default: whitened with init svd_whitened, weights otherwise.
  public var criterion: BudgetCriterion
  /// The `budget:` key's.
  public var location: SourceLocation

  public init(
    share: Double, floor: Int, criterion: BudgetCriterion = .weights, location: SourceLocation
  ) {
    self.share = share
    self.floor = floor
    self.criterion = criterion
    self.location = location
  }
}

/// `calibration:` of a lora rule with init svd_whitened: the training batches whose inputs
/// give each wrapped layer's input mean and covariance.
public struct CalibrationSettings: Sendable, Equatable {
  /// >= 1 batches of `train.batch_size` training examples (default 16).
  public var batches: Int
  /// The `calibration:` key's (the rule's when defaulted).
  public var location: SourceLocation

  public init(batches: Int, location: SourceLocation) {
    self.batches = batches
    self.location = location
  }
}

/// `train.distill:` knowledge distillation from a fully fine-tuned teacher checkpoint.
public struct DistillSettings: Sendable, Equatable {
  /// A checkpoint directory (the output of a producer manifest, typically full fine-tuning).
  public var teacher: Located<String>
  /// Softmax temperature T of the logit term (default 2).
  public var temperature: Double
  /// Weight α of the logit term: loss = (1 − α)·CE + α·T²·KL(teacher_T ‖ student_T); default 0.5.
  public var logits: Double
  /// Weight β of the feature term β·mean((h_student − h_teacher)²) over the last hidden states
  /// (BERT: every token's; VGG: the feature map entering the classifier); default 0.
  public var features: Double
  /// Weight of the hidden-state term (`hidden_states: {layers: all, weight}`): every layer's
  /// MSE normalised by the teacher's variance there, averaged over the layers; 0: off.
  public var hiddenStates: Double
  /// Weight γ of the MSE between pre-softmax attention scores (`attention: γ`, BERT only); 0: off.
  public var attention: Double
  public var location: SourceLocation
  /// Teacher-labelled edited copies of the training examples; nil: none.
  public var augment: AugmentSettings?
  /// Unlabeled in-domain texts the teacher labels; nil: none.
  public var unlabeled: UnlabeledSettings?

  public init(
    teacher: Located<String>, temperature: Double, logits: Double, features: Double,
    hiddenStates: Double = 0, attention: Double = 0, location: SourceLocation,
    augment: AugmentSettings? = nil, unlabeled: UnlabeledSettings? = nil
  ) {
    self.teacher = teacher
    self.temperature = temperature
    self.logits = logits
    self.features = features
    self.hiddenStates = hiddenStates
    self.attention = attention
    self.location = location
    self.augment = augment
    self.unlabeled = unlabeled
  }
}

/// An edit `train.distill.augment` makes to a copy of a training example.
public enum AugmentEdit: String, Sendable, Equatable, Hashable, CaseIterable {
  case delete, swap, mask, synonym
  case flip, crop, noise

  /// True for the word-level edits of texts; false for the edits of images.
  public var editsText: Bool {
    switch self {
    case .delete, .swap, .mask, .synonym: return true
    case .flip, .crop, .noise: return false
    }
  }
}

/// How many extra examples of a source each step distils on, and with what weight.
public struct ExtraBatch: Sendable, Equatable {
  /// Examples per step; nil: `train.batch_size`.
  public var batchSize: Int?
  /// The weight w of the source's term w·T²·KL(teacher ‖ student) (default 1).
  public var weight: Double

  public init(batchSize: Int?, weight: Double) {
    self.batchSize = batchSize
    self.weight = weight
  }
}

/// `train.distill.augment:` `copies` edited copies of every training example, labelled by the
/// teacher.
public struct AugmentSettings: Sendable, Equatable {
  public var edits: [Located<AugmentEdit>]
  /// Text: edits per copy = max(1, round(rate · words)); default 0.1.
  public var rate: Double
  /// Distinct copies of each training example (default 1).
  public var copies: Int
  /// Seeds the edits and the copies' order (default 0).
  public var seed: Int
  /// Roget's thesaurus (`term,CATEGORY` lines), for `synonym`.
  public var thesaurus: Located<String>?
  /// Images: the crop's zero padding in pixels (default 2).
  public var pad: Int
  /// Images: the noise's standard deviation, in pixel units of [0, 1] (default 0.05).
  public var noise: Double
  public var batch: ExtraBatch
  public var location: SourceLocation

  public init(
    edits: [Located<AugmentEdit>], rate: Double, copies: Int, seed: Int,
    thesaurus: Located<String>?, pad: Int, noise: Double, batch: ExtraBatch,
    location: SourceLocation
  ) {
    self.edits = edits
    self.rate = rate
    self.copies = copies
    self.seed = seed
    self.thesaurus = thesaurus
    self.pad = pad
    self.noise = noise
    self.batch = batch
    self.location = location
  }
}

/// `train.distill.unlabeled:` a table of in-domain texts without labels.
public struct UnlabeledSettings: Sendable, Equatable {
  public var format: DataFormat
  public var path: Located<String>
  public var textColumn: String
  /// Rows whose value here is a group of the validation or test split are dropped.
  public var groupBy: Located<String>?
  public var batch: ExtraBatch
  public var location: SourceLocation

  public init(
    format: DataFormat, path: Located<String>, textColumn: String, groupBy: Located<String>?,
    batch: ExtraBatch, location: SourceLocation
  ) {
    self.format = format
    self.path = path
    self.textColumn = textColumn
    self.groupBy = groupBy
    self.batch = batch
    self.location = location
  }
}

public enum AdapterInitialization: String, Sendable, Equatable, Hashable, CaseIterable {
  /// A Kaiming-uniform, B = 0.
  case lora
  /// B·A = the rank-r truncated SVD of W.
  case svd
  /// B·A = the rank-r truncated SVD of W, and the frozen W and b become what the adapter does
  /// not hold (W − s·B·A, b − C): the model starts exactly as loaded and decays into the SVD.
  case svdResidual = "svd_residual"
  /// B·A = the rank-r factors that best reproduce the layer's output on calibration inputs
  /// (the SVD of W·L with Σ = L·Lᵀ the inputs' covariance), the inputs' mean folded into C,
  /// and the frozen part the residual as with svdResidual.
  case svdWhitened = "svd_whitened"
}

/// `refit`: what happens to svd_whitened factors after the calibration pass.
public enum RefitMode: String, Sendable, Equatable, Hashable, CaseIterable {
  /// The factors stay those of each layer's own inputs in the loaded model.
  case none
  /// Node by node in forward order, the factors are refitted to reproduce the loaded layer's
  /// output from the inputs the compressed model (W-free, earlier nodes already refitted) gives
  /// it: reduced-rank regression, so errors stop accumulating through depth.
  case sequential
}

/// `budget.by`: what one more rank of a node is worth.
public enum BudgetCriterion: String, Sendable, Equatable, Hashable, CaseIterable {
  /// W's own singular values (σ²_{r+1} / ‖W‖²_F).
  case weights
  /// The output error on the calibration inputs the next rank removes, over the node's output
  /// variance (needs init svd_whitened).
  case whitened
}

public enum BiasCInitialization: String, Sendable, Equatable, Hashable, CaseIterable {
  case zeros
  /// C starts as a copy of the frozen bias b.
  case copy
  case none
}

public enum ConvForm: String, Sendable, Equatable, Hashable, CaseIterable {
  /// k×k conv in→r, then 1×1 r→out: cheaper once W is gone.
  case lowrank
  /// loralib's reshaped B·A kernel: trains the same way, compresses nothing.
  case loralib
}

public enum ScheduleShape: String, Sendable, Equatable, Hashable, CaseIterable {
  case linear
  case cosine
  case sine
}

/// How the frozen path's factor d falls from 1 to 0 over training progress p.
public struct DecaySchedule: Sendable, Equatable {
  public var shape: ScheduleShape
  /// Progress where d starts to fall; 0 <= start < end.
  public var start: Double
  /// Progress where d reaches 0; end <= 1.
  public var end: Double
  /// The `decay:` key's.
  public var location: SourceLocation

  public init(shape: ScheduleShape, start: Double, end: Double, location: SourceLocation) {
    self.shape = shape
    self.start = start
    self.end = end
    self.location = location
  }
}

public enum NoiseStatistics: String, Sendable, Equatable, Hashable, CaseIterable {
  /// One mean and variance for the whole weight.
  case global
  /// One mean and variance per output unit (per row of an out × in weight).
  case perOutput = "per_output"
}

/// The moment-matched noise added while W decays.
public struct NoiseSettings: Sendable, Equatable {
  /// Key `stats`.
  public var statistics: NoiseStatistics
  /// Key `clear_below`: noise off once d < this, in (0, 1]; nil (null) = never.
  public var clearBelow: Double?
  /// Multiplies the noise standard deviation; >= 0.
  public var scale: Double
  /// Key `spectral_cap`: the noise's spectral norm is kept at most this times `‖d·W‖₂`; nil:
  /// no cap.
  public var spectralCap: Double?
  /// The `noise:` key's.
  public var location: SourceLocation

  public init(
    statistics: NoiseStatistics, clearBelow: Double?, scale: Double, spectralCap: Double? = nil,
    location: SourceLocation
  ) {
    self.statistics = statistics
    self.clearBelow = clearBelow
    self.scale = scale
    self.spectralCap = spectralCap
    self.location = location
  }
}

public enum Task: String, Sendable, Equatable, Hashable, CaseIterable {
  case textClassification = "text-classification"
  case imageClassification = "image-classification"

  /// The model family that can do this task.
  public var family: ModelFamily {
    switch self {
    case .textClassification: return .bert
    case .imageClassification: return .vgg
    }
  }
}

public struct TrainSection: Sendable, Equatable {
  /// The `train:` key's.
  public var location: SourceLocation
  public var task: Located<Task>
  public var data: DataSection
  public var steps: Located<Int>
  /// 1...65536; default 32.
  public var batchSize: Located<Int>
  public var optimizer: OptimizerSettings
  /// Steps between evaluations; default max(1, steps / 10).
  public var evalEvery: Located<Int>
  public var seed: Int
  /// nil: no distillation.
  public var distill: DistillSettings?

  public init(
    location: SourceLocation, task: Located<Task>, data: DataSection, steps: Located<Int>,
    batchSize: Located<Int>, optimizer: OptimizerSettings, evalEvery: Located<Int>, seed: Int,
    distill: DistillSettings? = nil
  ) {
    self.distill = distill
    self.location = location
    self.task = task
    self.data = data
    self.steps = steps
    self.batchSize = batchSize
    self.optimizer = optimizer
    self.evalEvery = evalEvery
    self.seed = seed
  }
}

public struct DataSection: Sendable, Equatable {
  public var train: Located<DataSource>
  /// nil: the test set is carved out of `train` by `split`.
  public var test: Located<DataSource>?
  /// Label order (default, nil: sorted unique values); at least 2, no duplicates.
  public var labels: [Located<String>]?
  public var split: SplitSettings
  /// Text: tokens per example including [CLS]/[SEP]; 2...4096, default 128.
  public var maxLength: Located<Int>

  public init(
    train: Located<DataSource>, test: Located<DataSource>?, labels: [Located<String>]?,
    split: SplitSettings, maxLength: Located<Int>
  ) {
    self.train = train
    self.test = test
    self.labels = labels
    self.split = split
    self.maxLength = maxLength
  }
}

public enum DataFormat: String, Sendable, Equatable, Hashable, CaseIterable {
  case csv
  case tsv
  case jsonl
  case idx
}

public enum DataSource: Sendable, Equatable, Hashable {
  /// csv, tsv or jsonl with the named text and label columns.
  case table(format: DataFormat, path: String, textColumn: String, labelColumn: String)
  /// Format idx: IDX image and label files (.gz allowed).
  case images(imagesPath: String, labelsPath: String)

  /// The files this source reads.
  public var paths: [String] {
    switch self {
    case .table(_, let path, _, _): return [path]
    case .images(let images, let labels): return [images, labels]
    }
  }
}

/// How validation (and, without `data.test`, test) examples are carved out of `data.train`.
public struct SplitSettings: Sendable, Equatable {
  /// Fraction in [0, 1); default 0.1.
  public var validation: Double
  /// Fraction in [0, 1); default 0.2 without `data.test`, else 0.
  public var test: Double
  /// A column whose equal values stay on one side of every split.
  public var groupBy: String?
  public var seed: Int
  /// `part: "K/N"`: only the K-th (1-based) of N equal parts of the examples is used, so a
  /// two-stage flow can train its base on one half and fine-tune on the other.
  public var part: (index: Int, count: Int)?

  public init(
    validation: Double, test: Double, groupBy: String?, seed: Int,
    part: (index: Int, count: Int)? = nil
  ) {
    self.validation = validation
    self.test = test
    self.groupBy = groupBy
    self.seed = seed
    self.part = part
  }

  public static func == (lhs: SplitSettings, rhs: SplitSettings) -> Bool {
    lhs.validation == rhs.validation && lhs.test == rhs.test && lhs.groupBy == rhs.groupBy
      && lhs.seed == rhs.seed && lhs.part?.index == rhs.part?.index
      && lhs.part?.count == rhs.part?.count
  }
}

public struct OptimizerSettings: Sendable, Equatable {
  /// "adamw", the only optimizer format 1 knows.
  public var name: String
  /// Key `lr`; > 0, default 1e-3.
  public var learningRate: Double
  /// >= 0, default 0.
  public var weightDecay: Double
  /// Fraction of steps with a linearly rising learning rate; [0, 1), default 0.
  public var warmup: Double

  public init(name: String, learningRate: Double, weightDecay: Double, warmup: Double) {
    self.name = name
    self.learningRate = learningRate
    self.weightDecay = weightDecay
    self.warmup = warmup
  }
}

public struct OutputSection: Sendable, Equatable {
  /// Key `dir`: relative, without "..", default "checkpoints/<name>".
  public var directory: Located<String>
  /// Also write the W-free model.
  public var compress: Bool
  /// Also write `onnx/`: the deployed model (W-free when the run ends at d = 0, else as trained)
  /// as ONNX, with vocab.txt and surgeon.json.
  public var onnx: Bool
  /// Steps between saved training states; nil = none.
  public var checkpointEvery: Located<Int>?

  public init(
    directory: Located<String>, compress: Bool, onnx: Bool = false,
    checkpointEvery: Located<Int>?
  ) {
    self.directory = directory
    self.compress = compress
    self.onnx = onnx
    self.checkpointEvery = checkpointEvery
  }
}

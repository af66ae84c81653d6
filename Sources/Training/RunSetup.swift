import Datasets
import Foundation
import Manifest
import Models
import Plumbing
import Surgery
import Tensor

/// Everything `apply` needs before it writes anything: the compiled plan, the data, the
/// settings. Built from a manifest; every problem is a diagnostic at its manifest position.
public struct RunSetup: Sendable {
  public var manifest: Manifest
  public var rewrite: Rewrite
  public var source: (any ExampleSource)?
  public var settings: TrainerSettings?
  public var labelNames: [String]?
  /// The checkpoint directory the model came from (its vocab.txt travels with the output).
  public var checkpointDirectory: URL?
  /// The teacher of `train.distill`, loaded and checked against the student.
  public var distillation: Distillation?
  /// The extra examples the teacher labels (`train.distill.augment`, `unlabeled`).
  public var pools: [SoftLabelPool] = []

  /// The examples of part `index` of `count` (1-based): a shuffle with a fixed seed, so two
  /// manifests that take "1/2" and "2/2" of the same file see complementary halves whatever
  /// their split seeds.
  static func part(_ part: (index: Int, count: Int), of total: Int) -> [Int] {
    var random = RandomStream(seed: 0x5041_5254)  // "PART"
    var order = Array(0..<total)
    for i in stride(from: total - 1, to: 0, by: -1) {
      order.swapAt(i, random.nextInt(below: i + 1))
    }
    let start = total * (part.index - 1) / part.count
    let end = total * part.index / part.count
    return Array(order[start..<end]).sorted()
  }

  /// Resolves the model with its weights, applies the surgery, loads and splits the data.
  public static func prepare(
    _ manifest: Manifest, workingDirectory: URL, stepsOverride: Int? = nil,
    producers: [String: Manifest] = [:]
  ) -> (RunSetup?, [Diagnostic]) {
    var diagnostics: [Diagnostic] = []
    func report(_ location: SourceLocation, _ message: String, fix: String? = nil) {
      diagnostics.append(
        Diagnostic(location: location, severity: .error, message: message, fix: fix))
    }
    let (prepared, rewriteDiagnostics) = ManifestRewrite.resolveAndRewrite(
      manifest, weights: true, workingDirectory: workingDirectory, producers: producers)
    diagnostics += rewriteDiagnostics
    guard let prepared else { return (nil, diagnostics) }
    let rewrite = prepared.rewrite
    var checkpointDirectory: URL?
    if case .checkpoint(let path) = manifest.model.source.value, !path.hasPrefix("hf://") {
      checkpointDirectory = URL(fileURLWithPath: path, relativeTo: workingDirectory)
    }
    if manifest.output.compress {
      for case .lora(let rule) in manifest.surgery where rule.decay == nil {
        report(
          rule.location,
          "output.compress needs every wrapped layer to end at d = 0, and this rule has no decay",
          fix: "add decay: {start: 0.05, end: 0.85}, or set output.compress: false")
      }
    }
    var setup = RunSetup(
      manifest: manifest, rewrite: rewrite, source: nil, settings: nil, labelNames: nil,
      checkpointDirectory: checkpointDirectory)
    if let distill = manifest.train?.distill {
      let teacherPath = distill.teacher.value
      let directory = URL(fileURLWithPath: teacherPath, relativeTo: workingDirectory)
      do {
        let teacher = try CheckpointLoader.load(directory: directory).model
        let distillation = Distillation(
          teacher: teacher, temperature: Float(distill.temperature),
          logitsWeight: Float(distill.logits), featuresWeight: Float(distill.features),
          hiddenStatesWeight: Float(distill.hiddenStates), attentionWeight: Float(distill.attention)
        )
        if let problem = distillation.mismatch(with: rewrite.plan.model) {
          report(
            distill.teacher.location,
            "the teacher \(teacherPath) cannot teach this model: \(problem)",
            fix: "use a teacher fine-tuned from the same model on the same labels")
        } else {
          setup.distillation = distillation
        }
      } catch {
        report(
          distill.teacher.location,
          "cannot load the teacher checkpoint \(teacherPath): \(quotedDescription(of: error))",
          fix:
            "run the manifest that writes it first (e.g. a full fine-tuning run whose output.dir is \(teacherPath))"
        )
      }
    }
    guard let train = manifest.train else {
      return (diagnostics.contains { $0.severity == .error } ? nil : setup, diagnostics)
    }
    let missing = ManifestFiles.missingDataFiles(manifest, relativeTo: workingDirectory.path)
    diagnostics += missing
    if !missing.isEmpty || diagnostics.contains(where: { $0.severity == .error }) {
      return (nil, diagnostics)
    }
    func path(_ text: String) -> String {
      text.hasPrefix("/") ? text : workingDirectory.appendingPathComponent(text).path
    }
    let data = train.data
    let split = data.split
    do throws(DatasetError) {
      switch data.train.value {
      case .table(let format, let file, let text, let label):
        var texts = try TableReader.read(
          path: path(file), format: try TableFormat(format, file: file),
          textColumn: text, labelColumn: label, groupColumn: split.groupBy,
          labels: data.labels?.map(\.value))
        var testIndices: [Int] = []
        if let test = data.test,
          case .table(let testFormat, let testFile, let testText, let testLabel) = test.value
        {
          let extra = try TableReader.read(
            path: path(testFile), format: try TableFormat(testFormat, file: testFile),
            textColumn: testText, labelColumn: testLabel, groupColumn: split.groupBy,
            labels: texts.labelNames)
          testIndices = Array(texts.count..<(texts.count + extra.count))
          texts = LabeledTexts(
            texts: texts.texts + extra.texts, labels: texts.labels + extra.labels,
            labelNames: texts.labelNames,
            groups: texts.groups.map { $0 + (extra.groups ?? []) })
        }
        if let part = split.part {
          let kept = RunSetup.part(part, of: texts.count - testIndices.count)
          let all = kept + testIndices
          texts = LabeledTexts(
            texts: all.map { texts.texts[$0] }, labels: all.map { texts.labels[$0] },
            labelNames: texts.labelNames,
            groups: texts.groups.map { groups in all.map { groups[$0] } })
          testIndices = Array(kept.count..<all.count)
        }
        let trainCount = texts.count - testIndices.count
        var dataSplit = DataSplit.make(
          count: trainCount, validation: split.validation,
          test: testIndices.isEmpty ? split.test : 0,
          groups: texts.groups.map { Array($0.prefix(trainCount)) }, seed: UInt64(split.seed))
        if !testIndices.isEmpty { dataSplit.test = testIndices }
        guard let directory = checkpointDirectory,
          FileManager.default.fileExists(atPath: directory.appendingPathComponent("vocab.txt").path)
        else {
          report(
            manifest.model.source.location, "a text task needs the checkpoint's vocab.txt",
            fix: "use a checkpoint directory with vocab.txt (presets have none)")
          return (nil, diagnostics)
        }
        let tokenizer: WordPieceTokenizer
        do {
          tokenizer = try WordPieceTokenizer(
            vocabularyFile: directory.appendingPathComponent("vocab.txt"))
        } catch let problem {
          report(manifest.model.source.location, problem.description)
          return (nil, diagnostics)
        }
        setup.source = TextExamples(
          texts: texts, tokenizer: tokenizer, maxLength: data.maxLength.value, split: dataSplit)
        setup.labelNames = texts.labelNames
      case .images(let images, let labels):
        var examples = try IDXReader.read(images: path(images), labels: path(labels))
        var testIndices: [Int] = []
        if let test = data.test, case .images(let testImages, let testLabels) = test.value {
          let extra = try IDXReader.read(images: path(testImages), labels: path(testLabels))
          testIndices = Array(examples.count..<(examples.count + extra.count))
          var pixels = Tensor(
            zeros: [examples.count + extra.count] + Array(examples.pixels.shape.dropFirst()))
          pixels.withUnsafeMutableBufferPointer { target in
            examples.pixels.withUnsafeBufferPointer { a in
              extra.pixels.withUnsafeBufferPointer { b in
                target.baseAddress!.update(from: a.baseAddress!, count: a.count)
                (target.baseAddress! + a.count).update(from: b.baseAddress!, count: b.count)
              }
            }
          }
          examples = LabeledImages(pixels: pixels, labels: examples.labels + extra.labels)
        }
        if let part = split.part {
          let kept = RunSetup.part(part, of: examples.count - testIndices.count)
          let (pixels, labels) = examples.batch(kept + testIndices)
          examples = LabeledImages(pixels: pixels, labels: labels)
          testIndices = Array(kept.count..<examples.count)
        }
        let trainCount = examples.count - testIndices.count
        var dataSplit = DataSplit.make(
          count: trainCount, validation: split.validation,
          test: testIndices.isEmpty ? split.test : 0,
          seed: UInt64(split.seed))
        if !testIndices.isEmpty { dataSplit.test = testIndices }
        let classes = (examples.labels.max() ?? 0) + 1
        setup.source = ImageExamples(images: examples, classCount: Int(classes), split: dataSplit)
        setup.labelNames = data.labels?.map(\.value)
      }
    } catch {
      report(data.train.location, quotedDescription(of: error))
      return (nil, diagnostics)
    }
    if let source = setup.source, let classes = rewrite.plan.model.classCount,
      source.classCount > classes
    {
      report(
        manifest.model.headClasses?.location ?? manifest.model.source.location,
        "the data has \(source.classCount) classes but the model's head has \(classes)",
        fix: "set model.head: {classes: \(source.classCount)}")
      return (nil, diagnostics)
    }
    if prepared.needsCalibration, let source = setup.source {
      let (whitened, calibrationDiagnostics) = calibrate(
        prepared, source: source, batchSize: train.batchSize.value, seed: UInt64(train.seed))
      diagnostics += calibrationDiagnostics
      guard let whitened else { return (nil, diagnostics) }
      setup.rewrite = whitened
    }
    let steps = stepsOverride ?? train.steps.value
    setup.settings = TrainerSettings(
      steps: steps, batchSize: train.batchSize.value,
      learningRate: Float(train.optimizer.learningRate),
      weightDecay: Float(train.optimizer.weightDecay), warmup: train.optimizer.warmup,
      evaluateEvery: min(train.evalEvery.value, steps),
      checkpointEvery: manifest.output.checkpointEvery?.value, seed: UInt64(train.seed))
    if let distill = train.distill, let source = setup.source {
      let (pools, poolDiagnostics) = extraPools(
        distill, source: source, trainSeed: train.seed, batchSize: train.batchSize.value,
        path: path)
      diagnostics += poolDiagnostics
      if poolDiagnostics.contains(where: { $0.severity == .error }) { return (nil, diagnostics) }
      setup.pools = pools
    }
    return (diagnostics.contains { $0.severity == .error } ? nil : setup, diagnostics)
  }

  /// The widest layer input `init: svd_whitened` whitens (its covariance is 2 GB of doubles).
  static let largestWhitenedFanIn = 16_384

  /// The calibration pass of `init: svd_whitened` over the loaded model, then the rewrite that
  /// starts the adapters from it. Each rule's nodes see its first `calibration.batches` batches
  /// of a seeded shuffle of the training split (never validation or test).
  static func calibrate(
    _ prepared: ManifestRewrite, source: any ExampleSource, batchSize: Int, seed: UInt64
  ) -> (Rewrite?, [Diagnostic]) {
    let manifest = prepared.manifest
    let resolved = prepared.resolved
    let requests = prepared.calibrationRequests
    let counts = requests.mapValues(\.batches)
    let location = requests.mapValues(\.location)
    let at = location.values.min() ?? SourceLocation(file: manifest.file, line: 1, column: 1)
    // The covariance is fan_in × fan_in doubles: a VGG16 classifier's 25,088 inputs would need
    // 5 GB, so such a layer is refused rather than left to exhaust memory.
    var fanIns: [String: Int] = [:]
    var model = resolved.model
    model.visitWrappable(
      linear: { fanIns[$0.name] = $0.inFeatures },
      convolution: {
        fanIns[$0.name] = $0.inChannels / $0.groups * $0.kernelSize.0 * $0.kernelSize.1
      })
    if let (name, fanIn) = counts.keys.compactMap({ name in fanIns[name].map { (name, $0) } })
      .filter({ $0.1 > Self.largestWhitenedFanIn }).max(by: { $0.1 < $1.1 })
    {
      return (
        nil,
        [
          Diagnostic(
            location: location[name] ?? at, severity: .error,
            message:
              "init svd_whitened needs the \(fanIn)×\(fanIn) input covariance of \(name) (\(fanIn * fanIn * 8 / 1_000_000) MB); at most \(Self.largestWhitenedFanIn) inputs are whitened",
            fix: "exclude \(name) from this rule and wrap it with init: svd_residual")
        ]
      )
    }
    let needed = (counts.values.max() ?? 0) * batchSize
    let available = source.split.train.count
    if needed > available {
      return (
        nil,
        [
          Diagnostic(
            location: at, severity: .error,
            message:
              "calibration needs \(needed) training examples (\(counts.values.max() ?? 0) batches of \(batchSize)) and the training split has \(available)",
            fix: "lower calibration.batches to at most \(available / batchSize)")
        ]
      )
    }
    var order = BatchOrder(indices: source.split.train, seed: seed ^ 0x43_414C_4942)  // "CALIB"
    let batches = (0..<(counts.values.max() ?? 0)).map { _ in order.next(batchSize) }
    let moments: [String: InputMoments]
    do {
      moments = try Calibration.inputMoments(of: resolved.model, nodes: counts) {
        try source.batch(batches[$0])
      }
    } catch {
      return (
        nil,
        [
          Diagnostic(
            location: at, severity: .error, message: "the calibration pass failed: \(error)",
            fix: "check the training data, or use init: svd_residual")
        ]
      )
    }
    return prepared.calibrated(with: moments) { try source.batch(batches[$0]) }
  }
}

extension TableFormat {
  /// The reader for a manifest's table format (exhaustive: no silent fallback); `idx` is an
  /// image format and never names a table.
  init(_ format: DataFormat, file: String) throws(DatasetError) {
    switch format {
    case .csv: self = .csv
    case .tsv: self = .tsv
    case .jsonl: self = .jsonl
    case .idx:
      throw DatasetError(
        file: file, problem: "idx holds images, not a table of texts",
        fix: "use format: csv, tsv or jsonl for text data")
    }
  }
}

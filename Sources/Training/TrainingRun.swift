import Datasets
import Distributed
import Foundation
import Manifest
import Models
import ONNXExport
import Plumbing
import Surgery
import Tensor

/// What a run reports while it goes, in this order: notes; `started`; `step` (with `evaluated`
/// after the steps that evaluate); `trainingEnded`; notes and warnings about the outputs.
public enum RunEvent: Sendable {
  /// The training loop starts at `step` (0, or where a resumed run left off) of `steps`.
  case started(step: Int, steps: Int)
  /// One optimizer step done.
  case step(StepRecord)
  /// The validation split evaluated after the step of `after`.
  case evaluated(EvaluationRecord, after: StepRecord)
  /// The training loop ended (finished, stopped or diverged).
  case trainingEnded
  /// One line of the run's log: what it does, with what, and what it wrote.
  case note(String)
  /// One line about a problem that does not stop the run, naming its file.
  case warning(String)
}

/// How a run ended.
public enum RunOutcome: Sendable {
  /// Trained to the last step and wrote the outputs. The results on the process that writes
  /// them; nil on the others and for a manifest without `train` (the rewritten model only).
  case finished(RunResults?)
  /// Stopped after `step` as asked (`stopAfter`), its state saved for a resume.
  case stopped(step: Int)
  /// A non-finite loss or gradient, which every process reaches at the same step (the
  /// gradients are all-reduced first); the last good state is saved. `reason` is one sentence
  /// naming the step and where the state is.
  case diverged(reason: String)
}

/// A run that cannot go on, as the one line to show (`PATH: error: PROBLEM; FIX`).
public struct RunError: Error, CustomStringConvertible, Sendable {
  public var message: String
  public var description: String { message }

  public init(message: String) { self.message = message }
}

/// A prepared manifest run to its end: the training loop, resuming, the evaluation and
/// checkpoint timing, `stopAfter`, and the outputs (checkpoint, PEFT adapter, compressed model
/// and its reload check, ONNX, results, metrics, figures, report, predictions). Only the
/// primary process of `group` writes; every process trains its share of each batch.
public struct TrainingRun {
  public var manifest: Manifest
  /// The manifest's path as the user gave it (messages and the report name it).
  public var manifestPath: String
  public var setup: RunSetup
  public var workingDirectory: URL
  /// Continue the run whose state is in `output.dir/state`.
  public var resume: Bool
  /// Replace an existing `output.dir` (the old one goes once the new one is ready).
  public var overwrite: Bool
  /// Save the state after this step and stop (an interrupted run, for tests and schedulers).
  public var stopAfter: Int?
  public var group: any ProcessGroup

  public init(
    manifest: Manifest, manifestPath: String, setup: RunSetup, workingDirectory: URL,
    resume: Bool = false, overwrite: Bool = false, stopAfter: Int? = nil,
    group: any ProcessGroup = SingleProcess()
  ) {
    self.manifest = manifest
    self.manifestPath = manifestPath
    self.setup = setup
    self.workingDirectory = workingDirectory
    self.resume = resume
    self.overwrite = overwrite
    self.stopAfter = stopAfter
    self.group = group
  }

  /// `output.dir`.
  public var output: URL {
    URL(fileURLWithPath: manifest.output.directory.value, relativeTo: workingDirectory)
  }

  var state: URL { output.appendingPathComponent("state") }

  /// Refuses `resume` without a state and an existing `output.dir` without `resume` or
  /// `overwrite`: checked before anything is loaded.
  public static func checkDestination(
    of manifest: Manifest, workingDirectory: URL, resume: Bool, overwrite: Bool
  ) throws(RunError) {
    let output = URL(fileURLWithPath: manifest.output.directory.value, relativeTo: workingDirectory)
    let fileManager = FileManager.default
    let hasState =
      fileManager.fileExists(atPath: output.appendingPathComponent("state/state.json").path)
      || fileManager.fileExists(
        atPath: output.appendingPathComponent("state.old/state.json").path)
    if resume && !hasState {
      throw RunError(
        message:
          "\(manifest.output.directory.value): error: nothing to resume (no state/ here); run without --resume"
      )
    }
    try refuseExisting(output, manifest: manifest, resume: resume, overwrite: overwrite)
  }

  static func refuseExisting(_ output: URL, manifest: Manifest, resume: Bool, overwrite: Bool)
    throws(RunError)
  {
    if FileManager.default.fileExists(atPath: output.path) && !resume && !overwrite {
      throw RunError(
        message:
          "\(manifest.output.directory.value): error: the output directory exists; pass --resume to continue its run or --overwrite to replace it"
      )
    }
  }

  /// Runs the plan to its end, reporting through `report`; failures that end the run are a
  /// `RunError`.
  public func run(_ report: (RunEvent) -> Void) throws -> RunOutcome {
    func note(_ line: String) { report(.note(line)) }
    // One run per output directory, from here to the end of the run: a second would remove
    // this one's staging directory. Taken once every check has passed, so a refused run
    // leaves nothing behind.
    var outputLock: OutputLock?
    defer { outputLock?.release() }
    if group.isPrimary {
      do {
        outputLock = try OutputLock(destination: output)
      } catch {
        throw RunError(message: error.description)
      }
      // A run that ended between the destination check and the lock wrote the directory since.
      try Self.refuseExisting(output, manifest: manifest, resume: resume, overwrite: overwrite)
    }
    if FileManager.default.fileExists(atPath: output.path) {
      try refuseOverwritingInputs()
    }
    // Every rank has checked output.dir as it was before rank 0 creates or replaces it.
    try group.barrier()

    let plan = setup.rewrite.plan
    let name = manifest.name.value
    let summary = plan.summary(title: name)
    note(summary.table())
    guard let source = setup.source, let settings = setup.settings else {
      guard group.isPrimary else { return .finished(nil) }
      try writeOutputs(replacing: true) { staged in
        try CheckpointWriter.write(
          plan.model, to: staged, metadata: metadata(plan), labelNames: setup.labelNames)
        copyVocabulary(to: staged)
      }
      note("wrote \(manifest.output.directory.value)/ (no train section: rewritten model only)")
      return .finished(nil)
    }
    if settings.batchSize < group.size {
      throw RunError(
        message:
          "\(manifestPath): error: train.batch_size \(settings.batchSize) is smaller than the \(group.size) processes; every process needs at least one example per batch"
      )
    }
    if group.size > 1 && !setup.pools.isEmpty {
      throw RunError(
        message:
          "\(manifestPath): error: train.distill.augment and unlabeled train in one process only; run without mpirun, or remove them"
      )
    }
    // The files the setup just read, once the run is past its refusals (a resumed run takes
    // them again as it restarts: results.json names the last session's).
    let inputs =
      group.isPrimary
      ? RunInputs.fingerprints(of: manifest, workingDirectory: workingDirectory) : [:]
    var trainer = Trainer(
      plan: plan, source: source, settings: settings, group: group,
      distillation: setup.distillation, pools: setup.pools)
    // Only rank 0 writes the state (the ranks hold the same one).
    // Training time accumulates over the sessions of a resumed run (`started` is set below,
    // once the state is loaded and training begins).
    var started = Date()
    var earlierSeconds = 0.0
    func saveStateOnPrimary() throws {
      trainer.recordTrainSeconds(earlierSeconds + Date().timeIntervalSince(started))
      if group.isPrimary { try saveState(trainer, to: state) }
    }
    if resume {
      do {
        try StateStore.load(from: state, into: &trainer, manifest: manifest.text)
      } catch {
        let reason =
          error is DecodingError
          ? "state.json is damaged or not a surgeon training state (\(error))"
          : String(describing: error)
        throw RunError(
          message:
            "\(state.path): error: cannot resume: \(reason); fix or remove the state, or start over with --overwrite"
        )
      }
      note("resuming at step \(trainer.state.step) of \(settings.steps)")
    } else {
      // The output directory appears at once, holding the state before step 1: from here on a
      // kill at any moment leaves a run that --resume continues.
      // (--overwrite: the old directory goes only once the new one is ready.)
      if group.isPrimary {
        try writeOutputs(replacing: true) { staged in
          try saveState(trainer, to: staged.appendingPathComponent("state"))
        }
      }
    }
    let split = source.split
    note(
      "data: \(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test examples; \(settings.steps) steps of \(settings.batchSize); \(processes(trainer)); \(BLAS.threadCount) threads"
    )
    if let summary = WhitenedNode.summary(of: setup.rewrite.whitened) {
      note(summary)
    }
    if let summary = RefitChoice.summary(of: Array(setup.rewrite.refitChoices.values)) {
      note(summary)
    }
    if let distill = manifest.train?.distill {
      note("distilling from \(distill.teacher.value): \(DistillationRecord(distill).summary)")
    }
    for pool in trainer.pools {
      note(
        "distilling also on \(pool.name): \(pool.source.count) examples, \(pool.batchSize) per step, weight \(pool.weight)"
      )
    }
    if group.size > 1 && !plan.model.runningStatistics.isEmpty {
      note(
        "note: batch norm normalizes each process's share of a batch with the share's own statistics (running statistics are averaged over the processes), so this run is not the 1-process run; docs/distributed.md"
      )
    }
    report(.started(step: trainer.state.step, steps: settings.steps))
    earlierSeconds = trainer.state.trainSeconds
    started = Date()
    // Time in optimizer steps alone (evaluations and state saves excluded).
    var stepSeconds = 0.0
    var stepsRun = 0
    while !trainer.isFinished {
      let record: StepRecord
      do {
        let stepStarted = Date()
        record = try trainer.step()
        stepSeconds += Date().timeIntervalSince(stepStarted)
        stepsRun += 1
      } catch let stop as TrainingStopped {
        try saveStateOnPrimary()
        report(.trainingEnded)
        return .diverged(
          reason:
            "\(stop.description); the last good state (step \(trainer.state.step)) is in \(manifest.output.directory.value)/state"
        )
      }
      report(.step(record))
      if record.step % settings.evaluateEvery == 0 || trainer.isFinished {
        report(.evaluated(try trainer.evaluate(.validation), after: record))
      }
      if let every = settings.checkpointEvery, record.step % every == 0 || trainer.isFinished {
        try saveStateOnPrimary()
      }
      if let stopAfter, record.step == stopAfter, !trainer.isFinished {
        try saveStateOnPrimary()
        report(.trainingEnded)
        return .stopped(step: stopAfter)
      }
    }
    report(.trainingEnded)
    if settings.checkpointEvery == nil {
      try saveStateOnPrimary()
    }
    let trainSeconds = earlierSeconds + Date().timeIntervalSince(started)
    if stepsRun > 0 {
      let communication =
        trainer.reducedSteps > 0
        ? String(
          format: ", %.1f ms of it in the all-reduce",
          1000 * trainer.reduceSeconds / Double(trainer.reducedSteps)) : ""
      note(
        String(
          format: "%.3f s per training step (mean of %d)%@", stepSeconds / Double(stepsRun),
          stepsRun, communication))
    }
    trainer.finishSchedules()
    return .finished(
      try writeResults(&trainer, trainSeconds: trainSeconds, inputs: inputs, report: report))
  }

  /// Tests (sharded over the ranks), then rank 0 alone exports, reloads and reports; nil on
  /// the other ranks.
  private func writeResults(
    _ trainer: inout Trainer, trainSeconds: Double, inputs: [String: FileFingerprint],
    report: (RunEvent) -> Void
  ) throws -> RunResults? {
    let test = try trainer.evaluate(.test)
    guard group.isPrimary, let source = setup.source, let settings = setup.settings else {
      return nil
    }
    let split = source.split
    let name = manifest.name.value
    let finalPlan = trainer.plan
    // W-free: there are wrapped layers and all of them ended at d = 0.
    let endsWFree =
      !finalPlan.model.adapterRecords.isEmpty && finalPlan.model.nodesWithFrozenWeight.isEmpty
    let majority = majorityClassShare(source.labels, over: split.test)
    let validationMajority = majorityClassShare(source.labels, over: split.validation)
    let stuck = stuckAtChance(
      steps: trainer.state.steps, evaluations: trainer.state.evaluations,
      classes: source.classCount, majority: validationMajority)
    let finalSummary = finalPlan.summary(title: name)
    var results: RunResults?
    // Built beside output.dir and renamed in, results.json last: a reader that finds
    // results.json finds every other output complete.
    try writeOutputs(last: ["report.md", "results.json"]) { staged in
      try CheckpointWriter.write(
        finalPlan.model, to: staged, metadata: metadata(finalPlan),
        labelNames: setup.labelNames)
      copyVocabulary(to: staged)
      if let obstacle = PEFTExport.obstacle(finalPlan) {
        report(.note("no PEFT adapter: \(obstacle)"))
      } else {
        try PEFTExport.write(
          finalPlan, to: staged.appendingPathComponent("peft"),
          baseModel: setup.checkpointDirectory?.path ?? "")
        report(
          .note("wrote a Hugging Face PEFT adapter to \(manifest.output.directory.value)/peft/"))
      }
      var reloadAccuracy: Double?
      if manifest.output.compress {
        let compressed = staged.appendingPathComponent("compressed")
        let exported = finalPlan.model.exported()
        try CheckpointWriter.write(
          exported, to: compressed, metadata: ["surgeon.manifest": manifest.text],
          labelNames: setup.labelNames)
        copyVocabulary(to: compressed)
        let reloaded = try CheckpointLoader.load(directory: compressed).model
        reloadAccuracy = try trainer.measure(reloaded, on: split.test, sharded: false).accuracy
        if reloadAccuracy != test.exportedAccuracy {
          report(
            .warning(
              "\(output.appendingPathComponent("compressed").path): warning: the reloaded W-free model tests \(reloadAccuracy!) but the exported view tested \(test.exportedAccuracy)"
            ))
        }
      }
      if manifest.output.onnx {
        // The deployed model: W-free when every wrapped layer ended at d = 0, else as trained.
        try writeONNX(
          endsWFree ? finalPlan.model.exported() : finalPlan.model,
          to: staged.appendingPathComponent("onnx"))
        report(.note("wrote the ONNX model to \(manifest.output.directory.value)/onnx/"))
      }
      var written = RunResults(
        name: name, steps: settings.steps, trainSeconds: trainSeconds,
        params: .init(
          total: finalSummary.total, trainable: finalSummary.trainable,
          nonTrainable: finalSummary.nonTrainable, compressedTotal: finalSummary.compressedTotal),
        validationAccuracy: trainer.state.evaluations.last?.accuracy,
        testAccuracy: endsWFree ? test.exportedAccuracy : test.accuracy,
        testAccuracyWithW: endsWFree ? nil : test.accuracy,
        testAccuracyWFree: test.exportedAccuracy,
        exportedReloadTestAccuracy: reloadAccuracy, majorityClass: majority,
        stuckAtChance: stuck != nil, stuckReason: stuck, endsWFree: endsWFree,
        distillation: manifest.train?.distill.map(DistillationRecord.init),
        blasCore: BLASCore.loadedCore, cpuModel: Processor.current.model,
        cpuFeatures: Processor.current.featureList,
        vectorKernels: VectorKernelChoice.active.name)
      written.build = .current
      written.inputs = inputs
      if !setup.rewrite.whitened.isEmpty {
        written.whitened = setup.rewrite.whitened.sorted { $0.key < $1.key }.map {
          WhitenedStart(
            node: $0.key, rank: $0.value.rank,
            calibrationOutputError: $0.value.calibrationOutputError)
        }
      }
      if !setup.rewrite.refitChoices.isEmpty {
        written.refit = setup.rewrite.refitChoices.values.sorted { $0.node < $1.node }
      }
      if !trainer.pools.isEmpty {
        written.distillData = Dictionary(
          uniqueKeysWithValues: trainer.pools.map { pool in
            var record = pool.record
            record.perEpoch = pool.perEpoch(
              steps: settings.steps, trainingBatchSize: settings.batchSize,
              trainingExamples: split.train.count)
            record.examples = record.perEpoch.reduce(0, +)
            return (pool.name, record)
          })
      }
      results = written
      // The deployed model's prediction for every test example: paired comparisons between
      // runs (`surgeon compare`'s bootstrap intervals and McNemar tests) read it.
      let deployed = endsWFree ? finalPlan.exportedView : finalPlan.model
      let predictions = TestPredictions(
        model: endsWFree ? "w-free" : "as-trained", indices: split.test,
        labels: split.test.map { source.labels[$0] },
        predicted: try trainer.predictions(of: deployed, on: split.test))
      try OutputFiles.write(
        Data(try predictions.json().utf8), to: staged.appendingPathComponent("predictions.json"))
      try OutputFiles.write(
        Data(written.json().utf8), to: staged.appendingPathComponent("results.json"))
      try OutputFiles.write(
        Data(
          metricsLines(
            steps: trainer.state.steps, evaluations: trainer.state.evaluations + [test]
          ).utf8), to: staged.appendingPathComponent("metrics.jsonl"))
      let figures = try ReportFigures.write(
        trainer: trainer, test: test, majority: validationMajority,
        to: staged.appendingPathComponent("figures"))
      try OutputFiles.write(
        Data(
          reportMarkdown(
            results: written, summary: finalSummary, manifestPath: manifestPath, figures: figures,
            outputDirectory: manifest.output.directory.value, test: test
          ).utf8), to: staged.appendingPathComponent("report.md"))
    }
    if let stuck { report(.warning("\(manifestPath): warning: stuck at chance: \(stuck)")) }
    return results
  }

  /// Runs `write` on a staging directory beside `output`, then renames what it wrote into
  /// `output` (`last` at the end), or, `replacing`, renames the staging directory to `output`
  /// (an old `output` goes only then); any failure is one message naming the path and a fix,
  /// and leaves `output` as it was.
  func writeOutputs(
    replacing: Bool = false, last: [String] = [], _ write: (URL) throws -> Void
  ) throws {
    var staging: OutputStaging?
    do {
      staging = try OutputStaging(destination: output)
      try write(staging!.directory)
      if replacing {
        try staging!.replaceDestination()
      } else {
        try staging!.commit(last: last)
      }
    } catch let error as RunError {
      staging?.discard()
      throw error
    } catch {
      staging?.discard()
      throw RunError(message: OutputError.describing(error, at: output.path))
    }
  }

  /// Saves the training state; a failure (disk full, permissions) says so and that the
  /// previous state is kept.
  func saveState(_ trainer: Trainer, to state: URL) throws {
    do {
      try StateStore.save(trainer, manifest: manifest.text, to: state)
    } catch {
      throw RunError(
        message: OutputError.describing(error, at: state.path)
          + " (saving the training state after step \(trainer.state.step); the previous state, "
          + "if any, is kept)")
    }
  }

  /// Refuses an existing `output` that holds the run's own inputs (the checkpoint or a data
  /// file): --overwrite would destroy them, --resume write among them.
  func refuseOverwritingInputs() throws {
    var inputs: [String] = []
    if let checkpoint = setup.checkpointDirectory { inputs.append(checkpoint.path) }
    if let data = manifest.train?.data {
      for source in [data.train, data.test].compactMap({ $0 }) {
        inputs += source.value.paths.map {
          URL(fileURLWithPath: $0, relativeTo: workingDirectory).path
        }
      }
    }
    let roots = [output.standardizedFileURL, output.standardizedFileURL.resolvingSymlinksInPath()]
      .map { $0.path + "/" }
    for input in inputs {
      let url = URL(fileURLWithPath: input).standardizedFileURL
      let paths = [url.path, url.resolvingSymlinksInPath().path]
      if paths.contains(where: { path in roots.contains { (path + "/").hasPrefix($0) } }) {
        throw RunError(
          message:
            "\(manifest.output.directory.value): error: the run's own input \(input) is inside the output directory, which this run would replace or write into; choose another output.dir"
        )
      }
    }
  }

  func metadata(_ plan: TrainingPlan) -> [String: String] {
    let trainable =
      (try? JSONSerialization.data(withJSONObject: plan.trainable)).map {
        String(decoding: $0, as: UTF8.self)
      } ?? "[]"
    return ["surgeon.manifest": manifest.text, "surgeon.trainable": trainable]
  }

  func copyVocabulary(to directory: URL) {
    guard let source = setup.checkpointDirectory?.appendingPathComponent("vocab.txt"),
      FileManager.default.fileExists(atPath: source.path)
    else { return }
    let target = directory.appendingPathComponent("vocab.txt")
    try? FileManager.default.removeItem(at: target)
    try? FileManager.default.copyItem(at: source, to: target)
  }

  /// `onnx/`: model.onnx, vocab.txt (BERT) and surgeon.json.
  func writeONNX(_ model: Model, to directory: URL) throws {
    let package: ONNXPackage
    do {
      package = try ONNXPackage(
        model: model, labels: setup.labelNames, maxLength: manifest.train?.data.maxLength.value,
        task: manifest.train?.task.value.rawValue)
    } catch {
      throw RunError(
        message:
          "\(manifest.file): error: output.onnx: cannot export the model: \(error.description)")
    }
    try OutputFiles.createDirectory(directory)
    for file in try package.files() {
      try OutputFiles.write(file.contents, to: directory.appendingPathComponent(file.name))
    }
    copyVocabulary(to: directory)
  }

  /// "1 process" or "2 processes (Open MPI (libmpi.so.40), ... bytes per step)".
  func processes(_ trainer: Trainer) -> String {
    guard group.size > 1 else { return "1 process" }
    let values = trainer.reducedValuesPerStep
    return
      "\(group.size) processes (\(group.label), data-parallel: all-reduce of \(values) values = \(values * 4) bytes per step)"
  }
}

import Datasets
import Distributed
import Foundation
import Manifest
import Models
import ONNXExport
import Surgery
import Tensor
import Training

enum ApplyCommand: Command {
  static let usage = """
    Usage: surgeon apply MANIFEST [--resume] [--overwrite] [--steps N] [--stop-after N]
                         [--progress auto|bar|lines|none] [--update-lock]

    Rewrites the model as the manifest says, compiles the training plan, trains (with the decay
    and noise schedules), evaluates on the validation split with W and as exported, tests, and
    writes output.dir: model.safetensors + config.json, compressed/ (output.compress),
    onnx/ (output.onnx), results.json, metrics.jsonl, report.md, figures/ and state/ (for
    --resume). Everything is checked before anything is written, including the manifest's
    expect: counts and, when NAME.lock.json sits beside it, that the plan has not drifted from
    the lock. One run at a time per output.dir (a lock file beside it names the running process).

    Options:
      --resume      continue an interrupted run from output.dir/state (bitwise the same result)
      --overwrite   replace an existing output.dir
      --steps N     train N steps instead of train.steps (smoke tests)
      --stop-after N  save the state after step N and stop, as an interrupted run would
                    (exit 3); --resume continues it
      --progress P  bar (a live bar with ETA), lines (periodic plain lines), none; auto: a bar on
                    a terminal, lines otherwise
      --update-lock rewrite NAME.lock.json to this run's plan instead of comparing with it

    Under `mpirun -np N` the run is data-parallel (docs/distributed.md): each process trains on
    its share of every batch, gradients are summed with MPI_Allreduce, rank 0 writes the outputs.
    """

  /// False on ranks other than 0 of a data-parallel run: only rank 0 logs.
  nonisolated(unsafe) static var logs = true

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["steps", "progress", "stop-after"],
      flags: ["resume", "overwrite", "update-lock"])
    guard parsed.positionals.count == 1 else {
      throw UsageError(message: "give exactly one MANIFEST")
    }
    let steps = try parsed.integer("steps", in: 1...10_000_000)
    let stopAfter = try parsed.integer("stop-after", in: 1...10_000_000)
    let progressMode = parsed.value("progress") ?? "auto"
    guard ["auto", "bar", "lines", "none"].contains(progressMode) else {
      throw UsageError(message: "--progress must be auto, bar, lines or none")
    }
    if parsed.flag("resume") && parsed.flag("overwrite") {
      throw UsageError(message: "--resume and --overwrite exclude each other")
    }
    let group: any ProcessGroup
    do {
      group = try joinProcessGroup()
    } catch {
      throw CommandError(message: "surgeon apply: error: \(error)")
    }
    logs = group.isPrimary
    do {
      try run(parsed, steps: steps, stopAfter: stopAfter, progressMode: progressMode, group: group)
      group.finalize()
    } catch let status as ExitStatus {
      // Every rank stops at the same point (--stop-after, invalid manifest): a normal end.
      group.finalize()
      throw status
    } catch let stop as AgreedStop {
      group.finalize()
      // Every rank stopped; rank 0 says why.
      if !group.isPrimary { throw ExitStatus(code: 1) }
      throw CommandError(message: stop.message)
    } catch {
      // One rank failed where the others may wait in a collective: end them all.
      if group.size > 1 {
        let message = (error as? CommandError)?.message ?? "\(error)"
        printError("surgeon apply (rank \(group.rank) of \(group.size)): error: \(message)")
        group.abort(1)
      }
      throw error
    }
  }

  /// A stop every rank reaches at the same step (a non-finite loss or gradient is non-finite on
  /// all ranks after the all-reduce).
  struct AgreedStop: Error {
    var message: String
  }

  static func run(
    _ parsed: Arguments, steps: Int?, stopAfter: Int?, progressMode: String,
    group: any ProcessGroup
  ) throws {
    let path = parsed.positionals[0]
    let workingDirectory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    let (decoded, decodeDiagnostics) = ManifestDecoder.decode(contentsOf: path)
    guard let manifest = decoded else {
      if logs { printError(render(decodeDiagnostics, as: .text)) }
      throw ExitStatus(code: 1)
    }
    let output = URL(fileURLWithPath: manifest.output.directory.value, relativeTo: workingDirectory)
    let state = output.appendingPathComponent("state")
    let fileManager = FileManager.default
    let hasState =
      fileManager.fileExists(atPath: state.appendingPathComponent("state.json").path)
      || fileManager.fileExists(
        atPath: output.appendingPathComponent("state.old/state.json").path)
    if parsed.flag("resume") && !hasState {
      throw CommandError(
        message:
          "\(manifest.output.directory.value): error: nothing to resume (no state/ here); run without --resume"
      )
    }
    if fileManager.fileExists(atPath: output.path) && !parsed.flag("resume")
      && !parsed.flag("overwrite")
    {
      throw CommandError(
        message:
          "\(manifest.output.directory.value): error: the output directory exists; pass --resume to continue its run or --overwrite to replace it"
      )
    }
    log(
      "surgeon apply \(path): \(BLASCore.description(environment: ProcessInfo.processInfo.environment))"
    )
    log("surgeon apply \(path): preparing the model and data")
    let (prepared, diagnostics) = RunSetup.prepare(
      manifest, workingDirectory: workingDirectory, stepsOverride: steps,
      producers: ManifestCheck.producers(near: [path]))
    if !diagnostics.isEmpty && logs { printError(render(diagnostics, as: .text)) }
    guard let setup = prepared else { throw ExitStatus(code: 1) }
    // The declared counts and the locked scope, with the ranks the weights decided. With
    // --update-lock only rank 0 writes the lock; the others do not compare with the old one.
    let review = ManifestCheck.review(
      manifest, setup.rewrite, ranksDecided: true,
      lock: !parsed.flag("update-lock") ? .check : group.isPrimary ? .update : .skip)
    if !review.isEmpty && logs { printError(render(review, as: .text)) }
    if review.contains(where: { $0.severity == .error }) { throw ExitStatus(code: 1) }
    // One run per output directory, from here to the end of the run: a second would remove
    // this one's staging directory. Taken once every check has passed, so a refused run
    // leaves nothing behind.
    var outputLock: OutputLock?
    defer { outputLock?.release() }
    if group.isPrimary {
      do {
        outputLock = try OutputLock(destination: output)
      } catch {
        throw CommandError(message: error.description)
      }
      // A run that ended between the check above and the lock wrote the directory since.
      if fileManager.fileExists(atPath: output.path) && !parsed.flag("resume")
        && !parsed.flag("overwrite")
      {
        throw CommandError(
          message:
            "\(manifest.output.directory.value): error: the output directory exists; pass --resume to continue its run or --overwrite to replace it"
        )
      }
    }
    if fileManager.fileExists(atPath: output.path) {
      try refuseOverwritingInputs(
        output, manifest: manifest, setup: setup, workingDirectory: workingDirectory)
    }
    // Every rank has checked output.dir as it was before rank 0 creates or replaces it.
    try group.barrier()

    let plan = setup.rewrite.plan
    let name = manifest.name.value
    let summary = plan.summary(title: name)
    log(summary.table())
    guard let source = setup.source, let settings = setup.settings else {
      guard group.isPrimary else { return }
      try writeOutputs(to: output, replacing: true) { staged in
        try CheckpointWriter.write(
          plan.model, to: staged, metadata: metadata(manifest, plan),
          labelNames: setup.labelNames)
        copyVocabulary(setup, to: staged)
      }
      log("wrote \(manifest.output.directory.value)/ (no train section: rewritten model only)")
      return
    }
    if settings.batchSize < group.size {
      throw CommandError(
        message:
          "\(path): error: train.batch_size \(settings.batchSize) is smaller than the \(group.size) processes; every process needs at least one example per batch"
      )
    }
    if group.size > 1 && !setup.pools.isEmpty {
      throw CommandError(
        message:
          "\(path): error: train.distill.augment and unlabeled train in one process only; run without mpirun, or remove them"
      )
    }
    var trainer = Trainer(
      plan: plan, source: source, settings: settings, group: group,
      distillation: setup.distillation, pools: setup.pools)
    // Only rank 0 writes the state (the ranks hold the same one).
    func saveStateOnPrimary() throws {
      if group.isPrimary { try Self.saveState(trainer, manifest.text, to: state) }
    }
    if parsed.flag("resume") {
      do {
        try StateStore.load(from: state, into: &trainer, manifest: manifest.text)
      } catch {
        let reason =
          error is DecodingError
          ? "state.json is damaged or not a surgeon training state (\(error))"
          : String(describing: error)
        throw CommandError(
          message:
            "\(state.path): error: cannot resume: \(reason); fix or remove the state, or start over with --overwrite"
        )
      }
      log("resuming at step \(trainer.state.step) of \(settings.steps)")
    } else {
      // The output directory appears at once, holding the state before step 1: from here on a
      // kill at any moment leaves a run that --resume continues.
      // (--overwrite: the old directory goes only once the new one is ready.)
      if group.isPrimary {
        try writeOutputs(to: output, replacing: true) { staged in
          try saveState(trainer, manifest.text, to: staged.appendingPathComponent("state"))
        }
      }
    }
    let split = source.split
    log(
      "data: \(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test examples; \(settings.steps) steps of \(settings.batchSize); \(processes(group, trainer)); \(BLAS.threadCount) threads"
    )
    if let distill = manifest.train?.distill {
      log("distilling from \(distill.teacher.value): \(DistillationRecord(distill).summary)")
    }
    for pool in trainer.pools {
      log(
        "distilling also on \(pool.name): \(pool.source.count) examples, \(pool.batchSize) per step, weight \(pool.weight)"
      )
    }
    if group.size > 1 && !plan.model.runningStatistics.isEmpty {
      log(
        "note: batch norm normalizes each process's share of a batch with the share's own statistics (running statistics are averaged over the processes), so this run is not the 1-process run; docs/distributed.md"
      )
    }
    let progress = Progress(
      total: settings.steps, mode: group.isPrimary ? progressMode : "none",
      startStep: trainer.state.step)
    let started = Date()
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
        progress.finish()
        throw AgreedStop(
          message:
            "\(path): error: \(stop.description); the last good state (step \(trainer.state.step)) is in \(manifest.output.directory.value)/state"
        )
      }
      progress.update(record)
      if record.step % settings.evaluateEvery == 0 || trainer.isFinished {
        let evaluation = try trainer.evaluate(.validation)
        progress.note(
          String(
            format: "step %d: validation accuracy %.3f with W (d %.2f), %.3f W-free; loss %.4f",
            record.step, evaluation.accuracy, record.decay, evaluation.exportedAccuracy,
            record.loss))
      }
      if let every = settings.checkpointEvery, record.step % every == 0 || trainer.isFinished {
        try saveStateOnPrimary()
      }
      if let stopAfter, record.step == stopAfter, !trainer.isFinished {
        try saveStateOnPrimary()
        progress.finish()
        log("stopped after step \(stopAfter) (--stop-after); continue with --resume")
        throw ExitStatus(code: 3)
      }
    }
    progress.finish()
    if settings.checkpointEvery == nil {
      try saveStateOnPrimary()
    }
    let trainSeconds = Date().timeIntervalSince(started)
    if stepsRun > 0 {
      let communication =
        trainer.reducedSteps > 0
        ? String(
          format: ", %.1f ms of it in the all-reduce",
          1000 * trainer.reduceSeconds / Double(trainer.reducedSteps)) : ""
      log(
        String(
          format: "%.3f s per training step (mean of %d)%@", stepSeconds / Double(stepsRun),
          stepsRun, communication))
    }
    trainer.finishSchedules()

    // Test (sharded over the ranks), then rank 0 alone exports, reloads and reports.
    let test = try trainer.evaluate(.test)
    guard group.isPrimary else { return }
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
    try writeOutputs(to: output, last: ["report.md", "results.json"]) { staged in
      try CheckpointWriter.write(
        finalPlan.model, to: staged, metadata: metadata(manifest, finalPlan),
        labelNames: setup.labelNames)
      copyVocabulary(setup, to: staged)
      if let obstacle = PEFTExport.obstacle(finalPlan) {
        log("no PEFT adapter: \(obstacle)")
      } else {
        try PEFTExport.write(
          finalPlan, to: staged.appendingPathComponent("peft"),
          baseModel: setup.checkpointDirectory?.path ?? "")
        log("wrote a Hugging Face PEFT adapter to \(manifest.output.directory.value)/peft/")
      }
      var reloadAccuracy: Double?
      if manifest.output.compress {
        let compressed = staged.appendingPathComponent("compressed")
        let exported = finalPlan.model.exported()
        try CheckpointWriter.write(
          exported, to: compressed, metadata: ["surgeon.manifest": manifest.text],
          labelNames: setup.labelNames)
        copyVocabulary(setup, to: compressed)
        let reloaded = try CheckpointLoader.load(directory: compressed).model
        reloadAccuracy = try trainer.measure(reloaded, on: split.test, sharded: false).accuracy
        if reloadAccuracy != test.exportedAccuracy {
          printError(
            "\(output.appendingPathComponent("compressed").path): warning: the reloaded W-free model tests \(reloadAccuracy!) but the exported view tested \(test.exportedAccuracy)"
          )
        }
      }
      if manifest.output.onnx {
        // The deployed model: W-free when every wrapped layer ended at d = 0, else as trained.
        try writeONNX(
          endsWFree ? finalPlan.model.exported() : finalPlan.model,
          to: staged.appendingPathComponent("onnx"), setup: setup, manifest: manifest)
        log("wrote the ONNX model to \(manifest.output.directory.value)/onnx/")
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
        cpuFeatures: Processor.current.featureList)
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
            results: written, summary: finalSummary, manifestPath: path, figures: figures,
            outputDirectory: manifest.output.directory.value, test: test
          ).utf8), to: staged.appendingPathComponent("report.md"))
    }
    guard let results else { return }
    if let stuck { printError("\(path): warning: stuck at chance: \(stuck)") }
    let shown = endsWFree ? "W-free" : "with W"
    print(
      String(
        format:
          "%@: test accuracy %.3f (%@; majority class %.3f), %d parameters after compression; %.0f s of training",
        name, results.testAccuracy, shown, majority, finalSummary.compressedTotal, trainSeconds))
    print("outputs: \(manifest.output.directory.value)/ (report.md, results.json, figures/)")
  }

  /// Runs `write` on a staging directory beside `output`, then renames what it wrote into
  /// `output` (`last` at the end), or, `replacing`, renames the staging directory to `output`
  /// (an old `output` goes only then); any failure is one message naming the path and a fix,
  /// and leaves `output` as it was.
  static func writeOutputs(
    to output: URL, replacing: Bool = false, last: [String] = [], _ write: (URL) throws -> Void
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
    } catch let error as CommandError {
      staging?.discard()
      throw error
    } catch {
      staging?.discard()
      throw CommandError(message: OutputError.describing(error, at: output.path))
    }
  }

  /// Saves the training state; a failure (disk full, permissions) says so and that the
  /// previous state is kept.
  static func saveState(_ trainer: Trainer, _ manifest: String, to state: URL) throws {
    do {
      try StateStore.save(trainer, manifest: manifest, to: state)
    } catch {
      throw CommandError(
        message: OutputError.describing(error, at: state.path)
          + " (saving the training state after step \(trainer.state.step); the previous state, "
          + "if any, is kept)")
    }
  }

  /// Refuses an existing `output` that holds the run's own inputs (the checkpoint or a data
  /// file): --overwrite would destroy them, --resume write among them.
  static func refuseOverwritingInputs(
    _ output: URL, manifest: Manifest, setup: RunSetup, workingDirectory: URL
  ) throws {
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
        throw CommandError(
          message:
            "\(manifest.output.directory.value): error: the run's own input \(input) is inside the output directory, which this run would replace or write into; choose another output.dir"
        )
      }
    }
  }

  static func metadata(_ manifest: Manifest, _ plan: TrainingPlan) -> [String: String] {
    let trainable =
      (try? JSONSerialization.data(withJSONObject: plan.trainable)).map {
        String(decoding: $0, as: UTF8.self)
      } ?? "[]"
    return ["surgeon.manifest": manifest.text, "surgeon.trainable": trainable]
  }

  static func copyVocabulary(_ setup: RunSetup, to directory: URL) {
    guard let source = setup.checkpointDirectory?.appendingPathComponent("vocab.txt"),
      FileManager.default.fileExists(atPath: source.path)
    else { return }
    let target = directory.appendingPathComponent("vocab.txt")
    try? FileManager.default.removeItem(at: target)
    try? FileManager.default.copyItem(at: source, to: target)
  }

  /// `onnx/`: model.onnx, vocab.txt (BERT) and surgeon.json.
  static func writeONNX(_ model: Model, to directory: URL, setup: RunSetup, manifest: Manifest)
    throws
  {
    let onnx: ONNXModel
    let bytes: [UInt8]
    do {
      onnx = try ONNXExporter.model(for: model)
      bytes = try onnx.serialized()
    } catch {
      throw CommandError(
        message:
          "\(manifest.file): error: output.onnx: cannot export the model: \(error.description)")
    }
    let description = DeploymentDescription(
      model: model, graph: onnx.graph, labels: setup.labelNames,
      maxLength: manifest.train?.data.maxLength.value, task: manifest.train?.task.value.rawValue)
    try OutputFiles.createDirectory(directory)
    try OutputFiles.write(Data(bytes), to: directory.appendingPathComponent("model.onnx"))
    copyVocabulary(setup, to: directory)
    try OutputFiles.write(
      Data(try description.json().utf8), to: directory.appendingPathComponent("surgeon.json"))
  }

  static func log(_ message: String) {
    if logs { printError(message) }
  }

  /// "1 process" or "2 processes (Open MPI (libmpi.so.40), ... bytes per step)".
  static func processes(_ group: any ProcessGroup, _ trainer: Trainer) -> String {
    guard group.size > 1 else { return "1 process" }
    let values = trainer.reducedValuesPerStep
    return
      "\(group.size) processes (\(group.label), data-parallel: all-reduce of \(values) values = \(values * 4) bytes per step)"
  }
}

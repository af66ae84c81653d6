import Datasets
import Foundation
import Manifest
import Models
import Surgery
import Tensor
import Training

enum ApplyCommand: Command {
  static let usage = """
    Usage: surgeon apply MANIFEST [--resume] [--overwrite] [--steps N] [--stop-after N]
                         [--progress auto|bar|lines|none]

    Rewrites the model as the manifest says, compiles the training plan, trains (with the decay
    and noise schedules), evaluates on the validation split with W and as exported, tests, and
    writes output.dir: model.safetensors + config.json, compressed/ (output.compress),
    results.json, metrics.jsonl, report.md, figures/ and state/ (for --resume). Everything is
    checked before anything is written.

    Options:
      --resume      continue an interrupted run from output.dir/state (bitwise the same result)
      --overwrite   replace an existing output.dir
      --steps N     train N steps instead of train.steps (smoke tests)
      --stop-after N  save the state after step N and stop, as an interrupted run would
                    (exit 3); --resume continues it
      --progress P  bar (a live bar with ETA), lines (periodic plain lines), none; auto: a bar on
                    a terminal, lines otherwise
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["steps", "progress", "stop-after"], flags: ["resume", "overwrite"])
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
    let path = parsed.positionals[0]
    let workingDirectory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    let (decoded, decodeDiagnostics) = ManifestDecoder.decode(contentsOf: path)
    guard let manifest = decoded else {
      printError(render(decodeDiagnostics, as: .text))
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
    log("surgeon apply \(path): preparing the model and data")
    let (prepared, diagnostics) = RunSetup.prepare(
      manifest, workingDirectory: workingDirectory, stepsOverride: steps,
      producers: ManifestCheck.producers(near: [path]))
    if !diagnostics.isEmpty { printError(render(diagnostics, as: .text)) }
    guard let setup = prepared else { throw ExitStatus(code: 1) }
    if parsed.flag("overwrite") { try? fileManager.removeItem(at: output) }
    try fileManager.createDirectory(at: output, withIntermediateDirectories: true)

    let plan = setup.rewrite.plan
    let name = manifest.name.value
    let summary = plan.summary(title: name)
    log(summary.table())
    guard let source = setup.source, let settings = setup.settings else {
      try CheckpointWriter.write(
        plan.model, to: output, metadata: metadata(manifest, plan), labelNames: setup.labelNames)
      copyVocabulary(setup, to: output)
      log("wrote \(manifest.output.directory.value)/ (no train section: rewritten model only)")
      return
    }
    var trainer = Trainer(
      plan: plan, source: source, settings: settings, distillation: setup.distillation)
    if parsed.flag("resume") {
      do {
        try StateStore.load(from: state, into: &trainer, manifest: manifest.text)
      } catch {
        throw CommandError(message: "\(state.path): error: cannot resume: \(error)")
      }
      log("resuming at step \(trainer.state.step) of \(settings.steps)")
    }
    let split = source.split
    log(
      "data: \(split.train.count) train, \(split.validation.count) validation, \(split.test.count) test examples; \(settings.steps) steps of \(settings.batchSize); \(BLAS.threadCount) threads"
    )
    let progress = Progress(
      total: settings.steps, mode: progressMode, startStep: trainer.state.step)
    let started = Date()
    while !trainer.isFinished {
      let record: StepRecord
      do {
        record = try trainer.step()
      } catch let stop as TrainingStopped {
        try StateStore.save(trainer, manifest: manifest.text, to: state)
        progress.finish()
        throw CommandError(
          message:
            "\(path): error: \(stop.description); the last good state (step \(trainer.state.step)) is in \(manifest.output.directory.value)/state"
        )
      }
      progress.update(record)
      if record.step % settings.evaluateEvery == 0 || trainer.isFinished {
        let evaluation = try trainer.evaluate("validation")
        progress.note(
          String(
            format: "step %d: validation accuracy %.3f with W (d %.2f), %.3f W-free; loss %.4f",
            record.step, evaluation.accuracy, record.decay, evaluation.exportedAccuracy,
            record.loss))
      }
      if let every = settings.checkpointEvery, record.step % every == 0 || trainer.isFinished {
        try StateStore.save(trainer, manifest: manifest.text, to: state)
      }
      if let stopAfter, record.step == stopAfter, !trainer.isFinished {
        try StateStore.save(trainer, manifest: manifest.text, to: state)
        progress.finish()
        log("stopped after step \(stopAfter) (--stop-after); continue with --resume")
        throw ExitStatus(code: 3)
      }
    }
    progress.finish()
    if settings.checkpointEvery == nil {
      try StateStore.save(trainer, manifest: manifest.text, to: state)
    }
    let trainSeconds = Date().timeIntervalSince(started)
    trainer.finishSchedules()

    // Test, export, reload.
    let test = try trainer.evaluate("test")
    let finalPlan = trainer.plan
    // W-free: there are wrapped layers and all of them ended at d = 0.
    let endsWFree =
      !finalPlan.model.adapterRecords.isEmpty && finalPlan.model.nodesWithFrozenWeight.isEmpty
    try CheckpointWriter.write(
      finalPlan.model, to: output, metadata: metadata(manifest, finalPlan),
      labelNames: setup.labelNames)
    copyVocabulary(setup, to: output)
    if let obstacle = PEFTExport.obstacle(finalPlan) {
      log("no PEFT adapter: \(obstacle)")
    } else {
      try PEFTExport.write(
        finalPlan, to: output.appendingPathComponent("peft"),
        baseModel: setup.checkpointDirectory?.path ?? "")
      log("wrote a Hugging Face PEFT adapter to \(manifest.output.directory.value)/peft/")
    }
    var reloadAccuracy: Double?
    if manifest.output.compress {
      let compressed = output.appendingPathComponent("compressed")
      let exported = finalPlan.model.exported()
      try CheckpointWriter.write(
        exported, to: compressed, metadata: ["surgeon.manifest": manifest.text],
        labelNames: setup.labelNames)
      copyVocabulary(setup, to: compressed)
      let reloaded = try CheckpointLoader.load(directory: compressed).model
      reloadAccuracy = try trainer.measure(reloaded, on: split.test).accuracy
      if reloadAccuracy != test.exportedAccuracy {
        printError(
          "\(compressed.path): warning: the reloaded W-free model tests \(reloadAccuracy!) but the exported view tested \(test.exportedAccuracy)"
        )
      }
    }
    let majority = majorityClassShare(source.labels, over: split.test)
    let validationMajority = majorityClassShare(source.labels, over: split.validation)
    let stuck = stuckAtChance(
      steps: trainer.state.steps, evaluations: trainer.state.evaluations,
      classes: source.classCount, majority: validationMajority)
    let finalSummary = finalPlan.summary(title: name)
    let results = RunResults(
      name: name, steps: settings.steps, trainSeconds: trainSeconds,
      params: .init(
        total: finalSummary.total, trainable: finalSummary.trainable,
        nonTrainable: finalSummary.nonTrainable, compressedTotal: finalSummary.compressedTotal),
      validationAccuracy: trainer.state.evaluations.last?.accuracy,
      testAccuracy: endsWFree ? test.exportedAccuracy : test.accuracy,
      testAccuracyWithW: endsWFree ? nil : test.accuracy, testAccuracyWFree: test.exportedAccuracy,
      exportedReloadTestAccuracy: reloadAccuracy, majorityClass: majority,
      stuckAtChance: stuck != nil, stuckReason: stuck, endsWFree: endsWFree)
    try Data(results.json().utf8).write(
      to: output.appendingPathComponent("results.json"), options: .atomic)
    try Data(
      metricsLines(steps: trainer.state.steps, evaluations: trainer.state.evaluations + [test])
        .utf8
    ).write(to: output.appendingPathComponent("metrics.jsonl"), options: .atomic)
    let figures = try ReportFigures.write(
      trainer: trainer, test: test, majority: validationMajority,
      to: output.appendingPathComponent("figures"))
    try Data(
      reportMarkdown(
        results: results, summary: finalSummary, manifestPath: path, figures: figures,
        outputDirectory: manifest.output.directory.value, test: test
      ).utf8
    ).write(to: output.appendingPathComponent("report.md"), options: .atomic)
    if let stuck { printError("\(path): warning: stuck at chance: \(stuck)") }
    let shown = endsWFree ? "W-free" : "with W"
    print(
      String(
        format:
          "%@: test accuracy %.3f (%@; majority class %.3f), %d parameters after compression; %.0f s of training",
        name, results.testAccuracy, shown, majority, finalSummary.compressedTotal, trainSeconds))
    print("outputs: \(manifest.output.directory.value)/ (report.md, results.json, figures/)")
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

  static func log(_ message: String) {
    printError(message)
  }
}

/// A progress bar with step, loss, d, it/s and ETA on a terminal; plain lines otherwise.
final class Progress {
  let total: Int
  let bar: Bool
  let quiet: Bool
  let start = Date()
  let startStep: Int
  var lastLine = Date.distantPast
  var drawn = false

  init(total: Int, mode: String, startStep: Int) {
    self.total = total
    self.startStep = startStep
    quiet = mode == "none"
    bar = mode == "bar" || (mode == "auto" && isatty(2) == 1)
  }

  func update(_ record: StepRecord) {
    guard !quiet else { return }
    let elapsed = Date().timeIntervalSince(start)
    let done = record.step - startStep
    let rate = elapsed > 0 ? Double(done) / elapsed : 0
    let remaining = rate > 0 ? Double(total - record.step) / rate : 0
    let eta = String(format: "%d:%02d", Int(remaining) / 60, Int(remaining) % 60)
    if bar {
      let width = 30
      let filled = width * record.step / max(1, total)
      let line =
        "[" + String(repeating: "█", count: filled)
        + String(repeating: "·", count: width - filled) + "] "
        + String(
          format: "%d/%d loss %.4f d %.2f%@ %.2f it/s ETA %@", record.step, total, record.loss,
          record.decay, record.noise ? " noise" : "", rate, eta)
      FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
      drawn = true
    } else if Date().timeIntervalSince(lastLine) >= 10 || record.step == total {
      lastLine = Date()
      printError(
        String(
          format: "step %d/%d  loss %.4f  d %.2f%@  %.2f it/s  ETA %@", record.step, total,
          record.loss, record.decay, record.noise ? "  noise" : "", rate, eta))
    }
  }

  func note(_ message: String) {
    guard !quiet else { return }
    if bar && drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    printError(message)
  }

  func finish() {
    if bar && drawn { FileHandle.standardError.write(Data("\n".utf8)) }
  }
}

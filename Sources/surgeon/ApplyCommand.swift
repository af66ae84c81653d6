import Distributed
import Foundation
import Manifest
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
      let message = (error as? RunError)?.message ?? (error as? CommandError)?.message
      // One rank failed where the others may wait in a collective: end them all.
      if group.size > 1 {
        let shown = message ?? "\(error)"
        printError("surgeon apply (rank \(group.rank) of \(group.size)): error: \(shown)")
        group.abort(1)
      }
      if let message { throw CommandError(message: message) }
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
    try TrainingRun.checkDestination(
      of: manifest, workingDirectory: workingDirectory, resume: parsed.flag("resume"),
      overwrite: parsed.flag("overwrite"))
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
    let run = TrainingRun(
      manifest: manifest, manifestPath: path, setup: setup, workingDirectory: workingDirectory,
      resume: parsed.flag("resume"), overwrite: parsed.flag("overwrite"), stopAfter: stopAfter,
      group: group)
    var progress: Progress?
    let outcome = try run.run { event in
      switch event {
      case .started(let step, let steps):
        progress = Progress(
          total: steps, mode: group.isPrimary ? progressMode : "none", startStep: step)
      case .step(let record):
        progress?.update(record)
      case .evaluated(let evaluation, let record):
        progress?.note(evaluation, after: record)
      case .trainingEnded:
        progress?.finish()
      case .note(let line):
        log(line)
      case .warning(let line):
        printError(line)
      }
    }
    switch outcome {
    case .finished(let results):
      guard let results else { return }
      let shown = results.endsWFree ? "W-free" : "with W"
      print(
        String(
          format:
            "%@: test accuracy %.3f (%@; majority class %.3f), %d parameters after compression; %.0f s of training",
          results.name, results.testAccuracy, shown, results.majorityClass,
          results.params.compressedTotal, results.trainSeconds))
      print("outputs: \(manifest.output.directory.value)/ (report.md, results.json, figures/)")
    case .stopped(let step):
      log("stopped after step \(step) (--stop-after); continue with --resume")
      throw ExitStatus(code: 3)
    case .diverged(let reason):
      throw AgreedStop(message: "\(path): error: \(reason)")
    }
  }

  static func log(_ message: String) {
    if logs { printError(message) }
  }
}

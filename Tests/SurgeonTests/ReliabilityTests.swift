import Foundation
import Models
import SafeTensors
import Tensor
import XCTest

/// `surgeon apply` against hostile manifests and checkpoints, failing file systems and kills at
/// random moments (issue 15): every failure is one clear message and exit 1 (usage errors 2),
/// nothing is half-written, and a killed run always resumes to the same model.
final class ReliabilityTests: XCTestCase {
  /// The bad-manifest corpus of the manifest tests (read from the source tree).
  private static let badManifests = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("ManifestTests/Fixtures/bad")

  private var workspace: URL!

  override func setUpWithError() throws {
    workspace = try makeTinyBertWorkspace(
      prefix: "surgeon-reliability", seed: 2, rows: 80, extraWords: 4, groups: false,
      quotesText: false)
    addTeardownBlock { [workspace] in
      // Read-only directories made by a test must be writable again to be removed.
      if let workspace {
        let enumerator = FileManager.default.enumerator(atPath: workspace.path)
        while let name = enumerator?.nextObject() as? String {
          chmod(workspace.appendingPathComponent(name).path, 0o755)
        }
        try? FileManager.default.removeItem(at: workspace)
      }
    }
  }

  private func manifest(
    name: String, steps: Int = 12, checkpointEvery: Int = 4, directory: String? = nil,
    checkpoint: String = "checkpoints/tiny-bert"
  ) -> String {
    """
    surgeon: 1
    name: \(name)
    model:
      family: bert
      checkpoint: \(checkpoint)
    surgery:
      - lora:
          layers: [query, value]
          rank: 2
          decay: {start: 0.2, end: 0.8}
      - train: [classifier]
    train:
      task: text-classification
      data:
        train: {format: csv, path: tiny.csv, text: text, label: label}
        labels: ["no", "yes"]
        split: {validation: 0.2, test: 0.2, seed: 0}
        max_length: 12
      steps: \(steps)
      batch_size: 8
      optimizer: {name: adamw, lr: 1.0e-2}
      eval_every: 4
    output:
    \(directory.map { "  dir: \($0)\n" } ?? "")  compress: true
      checkpoint_every: \(checkpointEvery)

    """
  }

  private func write(_ text: String, _ name: String) throws -> String {
    try text.write(
      to: workspace.appendingPathComponent(name), atomically: true, encoding: .utf8)
    return name
  }

  private func file(_ path: String) -> URL { workspace.appendingPathComponent(path) }

  private func exists(_ path: String) -> Bool {
    FileManager.default.fileExists(atPath: file(path).path)
  }

  /// Every file and directory under the workspace, relative.
  private func listing() -> Set<String> {
    Set(FileManager.default.enumerator(atPath: workspace.path)?.allObjects as? [String] ?? [])
  }

  /// A refused run: exit 1, each of `phrases` in its message, no crash report, and the
  /// workspace's listing still `before`.
  private func assertRefused(
    _ run: SurgeonRun, saying phrases: [String], unchanged before: Set<String>,
    _ context: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(run.status, 1, run.error, file: file, line: line)
    for phrase in phrases {
      XCTAssertTrue(run.error.contains(phrase), "\(context): \(run.error)", file: file, line: line)
    }
    assertNoCrashReport(run.error, context)
    XCTAssertEqual(listing(), before, context, file: file, line: line)
  }

  /// A failed run's standard error must be a diagnostic, not a crash report.
  private func assertNoCrashReport(_ error: String, _ context: String) {
    for sign in ["Fatal error", "Stack dump", "Current stack trace", "Illegal instruction"] {
      XCTAssertFalse(error.contains(sign), "\(context): \(error)")
    }
  }

  private func assertModelsBitwiseEqual(_ a: String, _ b: String, _ context: String) throws {
    let x = try SafeTensorsFile.read(contentsOf: file(a))
    let y = try SafeTensorsFile.read(contentsOf: file(b))
    XCTAssertEqual(Set(x.tensors.keys), Set(y.tensors.keys), context)
    for (name, tensor) in x.tensors {
      guard case .float(let p) = tensor, case .float(let q)? = y.tensors[name] else { continue }
      XCTAssertTrue(p.isBitwiseEqual(to: q), "\(context): \(name) differs")
    }
  }

  // MARK: - Hostile manifests through the command

  /// Every manifest of the bad corpus that has an error: `surgeon apply` exits 1 with the
  /// diagnostic, no crash report, and writes nothing at all.
  func testEveryBadManifestStopsApplyBeforeAnythingIsWritten() throws {
    let names = try FileManager.default.contentsOfDirectory(atPath: Self.badManifests.path)
      .filter { $0.hasSuffix(".yaml") }.sorted()
    var tried = 0
    for name in names {
      let text = try String(
        contentsOf: Self.badManifests.appendingPathComponent(name), encoding: .utf8)
      let expected = text.split(separator: "\n").prefix { $0.hasPrefix("# expect: ") }
      guard let firstError = expected.first(where: { $0.contains(": error: ") }) else { continue }
      try Data(text.utf8).write(to: file(name))
      let before = listing()
      let run = try runSurgeon(["apply", name, "--progress", "none"], in: workspace)
      XCTAssertEqual(run.status, 1, "\(name): \(run.error)")
      // The first expected diagnostic, as the decoder states it, is in the message.
      let message = firstError.dropFirst("# expect: ".count).split(separator: ": ", maxSplits: 2)
      XCTAssertTrue(run.error.contains(String(message.last ?? "")), "\(name): \(run.error)")
      assertNoCrashReport(run.error, name)
      XCTAssertEqual(listing(), before, "\(name): apply wrote files")
      tried += 1
    }
    XCTAssertGreaterThanOrEqual(tried, 60)
    print("reliability: \(tried) bad manifests refused by surgeon apply with exit 1")
  }

  /// Binary garbage, NUL bytes, a 2 MB line and 20,000 levels of nesting, through the command.
  func testHostileManifestBytesAreOneErrorEach() throws {
    var random = RandomStream(seed: 15)
    let cases: [(String, [UInt8], String)] = [
      ("garbage.yaml", (0..<4096).map { _ in UInt8(random.nextInt(below: 256)) }, "error:"),
      ("nul.yaml", Array("surgeon: 1\nname: t\u{0}\n".utf8), "NUL byte"),
      ("long-line.yaml", Array(("name: " + String(repeating: "x", count: 2 << 20)).utf8), "limit"),
      (
        "deep.yaml", Array((String(repeating: "[", count: 20_000) + "\n").utf8),
        "error:"
      ),
      ("two-documents.yaml", Array("surgeon: 1\n---\nsurgeon: 1\n".utf8), "error:"),
    ]
    for (name, bytes, expected) in cases {
      try Data(bytes).write(to: file(name))
      let before = listing()
      let run = try runSurgeon(["apply", name], in: workspace)
      XCTAssertEqual(run.status, 1, "\(name): \(run.error)")
      XCTAssertTrue(run.error.contains(expected), "\(name): \(run.error)")
      XCTAssertTrue(run.error.hasPrefix(name), "\(name): the message names the file")
      assertNoCrashReport(run.error, name)
      XCTAssertEqual(listing(), before, name)
    }
  }

  /// A checkpoint with only `pytorch_model.bin` is refused with the one-line conversion, and
  /// nothing is written.
  func testAPickleOnlyCheckpointIsRefusedWithTheConversionCommand() throws {
    let pickle = file("checkpoints/pickled")
    try FileManager.default.createDirectory(at: pickle, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: file("checkpoints/tiny-bert/config.json"),
      to: pickle.appendingPathComponent("config.json"))
    try FileManager.default.copyItem(
      at: file("checkpoints/tiny-bert/vocab.txt"), to: pickle.appendingPathComponent("vocab.txt"))
    try Data("not really a pickle".utf8).write(
      to: pickle.appendingPathComponent("pytorch_model.bin"))
    let path = try write(manifest(name: "pickle-run", checkpoint: "checkpoints/pickled"), "p.yaml")
    let before = listing()
    let run = try runSurgeon(["apply", path], in: workspace)
    assertRefused(
      run, saying: ["pytorch_model.bin", "save_file("], unchanged: before, "pickle")
  }

  // MARK: - Exit codes

  func testUsageErrorsExitTwoAndRunErrorsExitOne() throws {
    let path = try write(manifest(name: "codes"), "codes.yaml")
    for arguments in [
      ["apply"], ["apply", path, path], ["apply", path, "--resume", "--overwrite"],
      ["apply", path, "--steps", "0"], ["apply", path, "--steps", "many"],
      ["apply", path, "--progress", "loud"], ["apply", path, "--resum"],
      ["validate"], ["frobnicate"],
    ] {
      let run = try runSurgeon(arguments, in: workspace)
      XCTAssertEqual(run.status, 2, "\(arguments): \(run.error)")
      XCTAssertTrue(run.error.contains("error:"), "\(arguments): \(run.error)")
      assertNoCrashReport(run.error, "\(arguments)")
    }
    for arguments in [["apply", "missing.yaml"], ["apply", path, "--resume"]] {
      let run = try runSurgeon(arguments, in: workspace)
      XCTAssertEqual(run.status, 1, "\(arguments): \(run.error)")
      assertNoCrashReport(run.error, "\(arguments)")
    }
    XCTAssertFalse(exists("checkpoints/codes"))
  }

  // MARK: - Nothing half-written

  /// --overwrite on a directory that holds the run's own checkpoint is refused; the checkpoint
  /// survives.
  func testOverwriteNeverDeletesTheRunsInputs() throws {
    let path = try write(manifest(name: "inputs", directory: "checkpoints"), "inputs.yaml")
    let refused = try runSurgeon(["apply", path], in: workspace)
    XCTAssertEqual(refused.status, 1, refused.error)
    XCTAssertTrue(refused.error.contains("the output directory exists"), refused.error)
    let overwrite = try runSurgeon(["apply", path, "--overwrite"], in: workspace)
    XCTAssertEqual(overwrite.status, 1, overwrite.error)
    XCTAssertTrue(overwrite.error.contains("the run's own input"), overwrite.error)
    XCTAssertTrue(exists("checkpoints/tiny-bert/model.safetensors"))
  }

  /// A file where the output directory must go: one message naming it, nothing written.
  func testAFileInTheWayOfTheOutputDirectory() throws {
    try Data("x".utf8).write(to: file("blocker"))
    let path = try write(manifest(name: "blocked", directory: "blocker/run"), "blocked.yaml")
    let before = listing()
    let run = try runSurgeon(["apply", path], in: workspace)
    assertRefused(
      run, saying: ["Not a directory", "a file stands where a directory is needed"],
      unchanged: before, "blocker")
  }

  /// A directory that cannot be written: "Permission denied" (or, as root, for whom mode bits
  /// do not apply, a directory of sysfs, which refuses even root) and the fix.
  func testAnUnwritableOutputDirectoryIsAClearMessage() throws {
    let readOnly = file("readonly")
    try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: true)
    chmod(readOnly.path, 0o555)
    var target = "readonly/run"
    if geteuid() == 0 {
      // Root ignores mode bits; sysfs refuses mkdir to everyone.
      guard mkdir("/sys/kernel/surgeon-probe", 0o755) != 0 else {
        rmdir("/sys/kernel/surgeon-probe")
        throw XCTSkip("running as root and /sys/kernel accepts mkdir: no unwritable directory")
      }
      try FileManager.default.createSymbolicLink(
        atPath: file("sysfs").path, withDestinationPath: "/sys/kernel")
      target = "sysfs/run"
    }
    let path = try write(manifest(name: "denied", directory: target), "denied.yaml")
    let run = try runSurgeon(["apply", path], in: workspace)
    XCTAssertEqual(run.status, 1, run.error)
    XCTAssertTrue(
      run.error.contains("Permission denied") || run.error.contains("Operation not permitted"),
      run.error)
    XCTAssertTrue(run.error.contains("make the directory writable"), run.error)
    XCTAssertTrue(
      run.error.contains(workspace.appendingPathComponent(target).deletingLastPathComponent().path),
      run.error)
    assertNoCrashReport(run.error, "read-only")
  }

  /// A full disk (a file-size limit, `ulimit -f`, with SIGXFSZ ignored, so that write(2) fails
  /// with EFBIG as it fails with ENOSPC on a full disk) while the final outputs are written: a
  /// clear message, exit 1, no output half-written (no model, no results, no staging
  /// directory), the state kept; a resume with room finishes bitwise the same.
  func testADiskFullDuringTheOutputsLeavesNothingHalfWrittenAndResumes() throws {
    try skipUnderThreadSanitizer()
    try runSurgeonChecked(["apply", try write(manifest(name: "room"), "room.yaml")])
    let state =
      try FileManager.default.attributesOfItem(
        atPath: file("checkpoints/room/state/state.safetensors").path)[.size] as? Int ?? 0
    let model =
      try FileManager.default.attributesOfItem(
        atPath: file("checkpoints/room/model.safetensors").path)[.size] as? Int ?? 0
    XCTAssertLessThan(state, model, "the test needs the state smaller than the model")
    let path = try write(manifest(name: "full"), "full.yaml")
    // Room for every state file, not for the model.
    let limit = (state + model) / 2 / 1024
    let shell = try runLimited(kilobytes: limit, "apply \(path) --progress none")
    XCTAssertEqual(shell.status, 1, shell.error)
    XCTAssertTrue(shell.error.contains("File too large"), shell.error)
    XCTAssertTrue(shell.error.contains("free disk space"), shell.error)
    assertNoCrashReport(shell.error, "disk full")
    XCTAssertTrue(exists("checkpoints/full/state/state.json"))
    for name in ["model.safetensors", "results.json", "report.md", "compressed", "figures"] {
      XCTAssertFalse(exists("checkpoints/full/\(name)"), "\(name) was written")
    }
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: file("checkpoints").path)
        .filter { $0.contains(".partial-") }, [])
    try runSurgeonChecked(["apply", path, "--resume", "--progress", "none"])
    try assertModelsBitwiseEqual(
      "checkpoints/room/model.safetensors", "checkpoints/full/model.safetensors", "disk full")
    // --overwrite with no room even for the first state: refused, and the old run is intact.
    let before = try Data(contentsOf: file("checkpoints/room/results.json"))
    let overwrite = try runLimited(
      kilobytes: max(1, state / 2 / 1024), "apply room.yaml --overwrite --progress none")
    XCTAssertEqual(overwrite.status, 1, overwrite.error)
    XCTAssertTrue(overwrite.error.contains("File too large"), overwrite.error)
    XCTAssertEqual(try Data(contentsOf: file("checkpoints/room/results.json")), before)
    XCTAssertTrue(exists("checkpoints/room/model.safetensors"))
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: file("checkpoints").path)
        .filter { $0.hasPrefix(".") }, [])
  }

  // MARK: - Kills at random moments

  /// SIGKILL at random moments (mostly while the state is being saved: one save per step) again
  /// and again; after each kill the output directory, if any, holds a complete state, and the
  /// next launch (`--resume` when the directory exists) continues. Each round ends with the
  /// model and the compressed model bitwise the uninterrupted run's; rounds repeat until
  /// SURGEON_RELIABILITY_KILLS kills (default 30) have been made.
  func testKillsAtRandomMomentsAlwaysResumeToTheSameModel() throws {
    let steps = 40
    let started = Date()
    try runSurgeonChecked([
      "apply", try write(manifest(name: "whole", steps: steps, checkpointEvery: 1), "w.yaml"),
      "--progress", "none",
    ])
    let wholeSeconds = Date().timeIntervalSince(started)
    let wanted =
      ProcessInfo.processInfo.environment["SURGEON_RELIABILITY_KILLS"].flatMap { Int($0) } ?? 30
    var random = RandomStream(seed: UInt64(Date().timeIntervalSince1970 * 1000))
    var kills = 0
    var killsMidWrite = 0
    var killsBeforeOutput = 0
    var launches = 0
    var rounds = 0
    while kills < wanted {
      rounds += 1
      guard rounds <= 10 * wanted else { return XCTFail("\(kills) kills in \(rounds) runs") }
      let name = "killed-\(rounds)"
      let path = try write(manifest(name: name, steps: steps, checkpointEvery: 1), "\(name).yaml")
      let output = "checkpoints/\(name)"
      var finished = false
      var roundLaunches = 0
      while !finished {
        launches += 1
        roundLaunches += 1
        guard roundLaunches < 100 else { return XCTFail("\(name) never finished") }
        let resume = exists(output)
        let process = Process()
        process.executableURL = Bundle.main.bundleURL.appendingPathComponent("surgeon")
        process.arguments = ["apply", path, "--progress", "none"] + (resume ? ["--resume"] : [])
        process.currentDirectoryURL = workspace
        var environment = ProcessInfo.processInfo.environment
        environment["SURGEON_THREADS"] = "1"
        process.environment = environment
        let errorFile = file("stderr-\(launches)")
        try Data().write(to: errorFile)
        let errorHandle = try FileHandle(forWritingTo: errorFile)
        defer {
          try? errorHandle.close()
          try? FileManager.default.removeItem(at: errorFile)
        }
        process.standardError = errorHandle
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Anywhere in the first 60% of a whole run's time; the last launch of a round finishes.
        let delay =
          kills < wanted ? Double(random.nextInt(below: 1000)) / 1000 * 0.6 * wholeSeconds : 1e9
        let deadline = Date().addingTimeInterval(delay)
        while process.isRunning && Date() < deadline { usleep(200) }
        guard process.isRunning else {
          process.waitUntilExit()
          let message = (try? String(contentsOf: errorFile, encoding: .utf8)) ?? ""
          XCTAssertEqual(
            process.terminationStatus, 0, "\(name) launch \(roundLaunches): \(message)")
          guard process.terminationStatus == 0 else { return }
          finished = true
          continue
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        kills += 1
        let names = (try? FileManager.default.contentsOfDirectory(atPath: file(output).path)) ?? []
        let parent =
          (try? FileManager.default.contentsOfDirectory(atPath: file("checkpoints").path)) ?? []
        if names.contains("state.new") || names.contains("state.old")
          || names.contains(where: { $0.hasPrefix(".") })
          || parent.contains(where: { $0.hasPrefix(".\(name).partial-") })
        {
          killsMidWrite += 1
        }
        // The invariant: an output directory always holds a state to resume from.
        if exists(output) {
          XCTAssertTrue(
            exists("\(output)/state/state.json") || exists("\(output)/state.old/state.json"),
            "kill \(kills) left \(names) without a state")
        } else {
          killsBeforeOutput += 1
        }
      }
      try assertModelsBitwiseEqual(
        "checkpoints/whole/model.safetensors", "\(output)/model.safetensors", name)
      try assertModelsBitwiseEqual(
        "checkpoints/whole/compressed/model.safetensors", "\(output)/compressed/model.safetensors",
        name)
      let a =
        try JSONSerialization.jsonObject(
          with: Data(contentsOf: file("checkpoints/whole/results.json"))) as? [String: Any]
      let b =
        try JSONSerialization.jsonObject(with: Data(contentsOf: file("\(output)/results.json")))
        as? [String: Any]
      XCTAssertEqual(a?["test_accuracy"] as? Double, b?["test_accuracy"] as? Double, name)
    }
    print(
      "reliability: \(kills) SIGKILLs in \(rounds) runs (\(launches) launches; \(killsMidWrite) left a write in progress, \(killsBeforeOutput) came before the output directory existed); every run resumed to the bitwise-same model"
    )
  }

  // MARK: - Helpers

  /// ThreadSanitizer's runtime itself faults (SIGBUS, exit 66) at start under a file-size
  /// limit, so the `ulimit -f` tests run in the plain and AddressSanitizer builds only.
  func skipUnderThreadSanitizer() throws {
    if dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil {
      throw XCTSkip("ThreadSanitizer's runtime faults under a file-size limit (ulimit -f)")
    }
  }

  @discardableResult
  private func runSurgeonChecked(_ arguments: [String]) throws -> SurgeonRun {
    let run = try runSurgeon(arguments, in: workspace)
    XCTAssertEqual(run.status, 0, "\(arguments): \(run.error)")
    return run
  }

  /// Runs surgeon with `arguments` under a file-size limit (write(2) past it fails with EFBIG,
  /// SIGXFSZ ignored), its standard error through a pipe, which the limit does not apply to.
  /// (The limit once made surgeon trap: FileHandle.write of its own log to a limited file.)
  private func runLimited(kilobytes: Int, _ arguments: String) throws -> SurgeonRun {
    try runShell(
      "( ulimit -f \(kilobytes); trap '' XFSZ; exec \"$SURGEON\" \(arguments) ) 2>&1 | cat >&2; "
        + "exit ${PIPESTATUS[0]}")
  }

  /// Runs `script` with bash (whose `ulimit -f` counts KiB) in the workspace, `$SURGEON` naming the built binary.
  private func runShell(_ script: String) throws -> SurgeonRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-c", script]
    process.currentDirectoryURL = workspace
    var environment = ProcessInfo.processInfo.environment
    environment["SURGEON_THREADS"] = "1"
    environment["SURGEON"] = Bundle.main.bundleURL.appendingPathComponent("surgeon").path
    process.environment = environment
    let errorFile = file("shell-stderr")
    try Data().write(to: errorFile)
    let handle = try FileHandle(forWritingTo: errorFile)
    process.standardError = handle
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try handle.close()
    let error = try String(contentsOf: errorFile, encoding: .utf8)
    try FileManager.default.removeItem(at: errorFile)
    return SurgeonRun(status: process.terminationStatus, output: "", error: error)
  }
}

extension ReliabilityTests {
  /// A learning rate that blows the weights up: exit 1, the step and the reason, the last good
  /// state kept (a --resume starts from it and stops at the same step again).
  func testDivergenceStopsWithTheStepAndKeepsTheLastGoodState() throws {
    let text = tinyClassifierManifest(
      name: "diverge", steps: 30, learningRate: "1.0e+38", evalEvery: 10, checkpointEvery: 1)
    try Data(text.utf8).write(to: workspace.appendingPathComponent("diverge.yaml"))
    let run = try runSurgeon(["apply", "diverge.yaml", "--progress", "none"], in: workspace)
    XCTAssertEqual(run.status, 1, run.error)
    let step = try XCTUnwrap(
      run.error.range(of: #"at step \d+"#, options: .regularExpression).map {
        String(run.error[$0])
      }, run.error)
    XCTAssertTrue(
      run.error.contains("the loss is") || run.error.contains("not finite"), run.error)
    XCTAssertTrue(run.error.contains("the last good state"), run.error)
    let state = workspace.appendingPathComponent("checkpoints/diverge/state/state.json")
    let saved = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(contentsOf: state)) as? [String: Any])
    let good = try XCTUnwrap(saved["step"] as? Int)
    XCTAssertEqual("at step \(good + 1)", step, "the state is the step before the divergence")
    XCTAssertFalse(
      FileManager.default.fileExists(
        atPath: workspace.appendingPathComponent("checkpoints/diverge/model.safetensors").path))
    let again = try runSurgeon(
      ["apply", "diverge.yaml", "--resume", "--progress", "none"], in: workspace)
    XCTAssertEqual(again.status, 1, again.error)
    XCTAssertTrue(again.error.contains(step), again.error)
  }

  /// The tiny-BERT classifier job both state tests run: `name` is also its output directory
  /// under checkpoints/.
  private func tinyClassifierManifest(
    name: String, steps: Int, learningRate: String, evalEvery: Int, checkpointEvery: Int? = nil
  ) -> String {
    """
    surgeon: 1
    name: \(name)
    model:
      family: bert
      checkpoint: checkpoints/tiny-bert
    surgery:
      - train: [classifier]
    train:
      task: text-classification
      data:
        train: {format: csv, path: tiny.csv, text: text, label: label}
        split: {validation: 0.2, test: 0.2, seed: 0}
        max_length: 12
      steps: \(steps)
      batch_size: 8
      optimizer: {name: adamw, lr: \(learningRate)}
      eval_every: \(evalEvery)
    \(checkpointEvery.map { "output:\n  checkpoint_every: \($0)\n" } ?? "")
    """
  }
}

extension ReliabilityTests {
  /// A damaged state (state.json not JSON, state.safetensors truncated): --resume is one message
  /// that names the state and says how to start over; nothing is written.
  func testADamagedStateIsRefusedWithAClearMessage() throws {
    try Data(
      tinyClassifierManifest(name: "damage", steps: 6, learningRate: "1.0e-3", evalEvery: 3).utf8
    ).write(
      to: workspace.appendingPathComponent("damage.yaml"))
    let stopped = try runSurgeon(
      ["apply", "damage.yaml", "--stop-after", "2", "--progress", "none"], in: workspace)
    XCTAssertEqual(stopped.status, 3, stopped.error)
    let state = workspace.appendingPathComponent("checkpoints/damage/state")
    let json = state.appendingPathComponent("state.json")
    let tensors = state.appendingPathComponent("state.safetensors")
    let goodJSON = try Data(contentsOf: json)
    try Data("{\"step\": ".utf8).write(to: json)
    let damagedJSON = try runSurgeon(["apply", "damage.yaml", "--resume"], in: workspace)
    XCTAssertEqual(damagedJSON.status, 1, damagedJSON.error)
    XCTAssertTrue(damagedJSON.error.contains("cannot resume"), damagedJSON.error)
    XCTAssertTrue(damagedJSON.error.contains("state.json is damaged"), damagedJSON.error)
    XCTAssertTrue(damagedJSON.error.contains("--overwrite"), damagedJSON.error)
    try goodJSON.write(to: json)
    let bytes = try Data(contentsOf: tensors)
    try bytes.prefix(bytes.count / 2).write(to: tensors)
    let truncated = try runSurgeon(["apply", "damage.yaml", "--resume"], in: workspace)
    XCTAssertEqual(truncated.status, 1, truncated.error)
    XCTAssertTrue(truncated.error.contains("state.safetensors"), truncated.error)
    XCTAssertTrue(truncated.error.contains("--overwrite"), truncated.error)
    for run in [damagedJSON, truncated] {
      for sign in ["Fatal error", "Stack dump"] { XCTAssertFalse(run.error.contains(sign)) }
    }
    XCTAssertFalse(
      FileManager.default.fileExists(
        atPath: workspace.appendingPathComponent("checkpoints/damage/model.safetensors").path))
  }
}

extension ReliabilityTests {
  /// Standard error on a full file system (a file-size limit of 0): the messages are lost but
  /// the exit status is still 1, not a trap in FileHandle.write.
  func testStandardErrorOnAFullDiskDoesNotCrash() throws {
    try skipUnderThreadSanitizer()
    try Data("surgeon: 2\n".utf8).write(to: workspace.appendingPathComponent("v2.yaml"))
    let run = try runShellForExit(
      "( ulimit -f 0; trap '' XFSZ; exec \"$SURGEON\" apply v2.yaml 2>log.txt ); echo $? >&2")
    XCTAssertEqual(run, "1")
  }

  private func runShellForExit(_ script: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-c", script]
    process.currentDirectoryURL = workspace
    var environment = ProcessInfo.processInfo.environment
    environment["SURGEON"] = Bundle.main.bundleURL.appendingPathComponent("surgeon").path
    process.environment = environment
    let pipe = Pipe()
    process.standardError = pipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

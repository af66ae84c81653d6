import Foundation
import Models
import SafeTensors
import Tensor
import XCTest

/// `mpirun -np 2 surgeon apply` on the tiny BERT fixture: the same final tensors as one process
/// with the same global batch (within float32 summation-order rounding), rank 0 alone writes,
/// and an interrupted 2-process run resumes bitwise. Skipped only where `mpirun` is absent.
final class DistributedTests: XCTestCase {
  private static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

  private var workspace: URL!

  override func setUpWithError() throws {
    workspace = try makeTinyBertWorkspace(
      prefix: "surgeon-mpi", seed: 3, rows: 120, extraWords: 5, groups: true)
    addTeardownBlock { [workspace] in try? FileManager.default.removeItem(at: workspace!) }
  }

  /// The tiny model's config has dropout 0.1 (attention and hidden): the masks must not depend
  /// on the number of processes. A batch of 7 splits unevenly (4 + 3) over two processes.
  private func manifest(name: String) throws -> String {
    let text = """
      surgeon: 1
      name: \(name)
      model:
        family: bert
        checkpoint: checkpoints/tiny-bert
      surgery:
        - lora:
            layers: [query, value, dense]
            rank: 4
            bias_c: zeros
            decay: {start: 0.1, end: 0.7}
            noise: {stats: per_output, clear_below: 0.3, scale: 0.5}
        - train: [classifier]
      train:
        task: text-classification
        data:
          train: {format: csv, path: tiny.csv, text: text, label: label}
          labels: ["no", "yes"]
          split: {validation: 0.2, test: 0.2, group_by: group, seed: 0}
          max_length: 16
        steps: 24
        batch_size: 7
        optimizer: {name: adamw, lr: 3.0e-3}
        eval_every: 8
      output:
        compress: false
        checkpoint_every: 6

      """
    try text.write(
      to: workspace.appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
    return "\(name).yaml"
  }

  private static var mpirun: URL? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").map {
      URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun")
    }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
  }

  /// Runs the built `surgeon` under `mpirun -np processes` (one BLAS thread per process).
  private func runMPI(_ processes: Int, _ arguments: [String], mpirun: URL) throws -> SurgeonRun {
    let scratch = workspace.appendingPathComponent("run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    let outputURL = scratch.appendingPathComponent("stdout")
    let errorURL = scratch.appendingPathComponent("stderr")
    try Data().write(to: outputURL)
    try Data().write(to: errorURL)
    let process = Process()
    process.executableURL = mpirun
    process.arguments =
      ["-np", "\(processes)", "--oversubscribe", "--bind-to", "none"]
      + [Bundle.main.bundleURL.appendingPathComponent("surgeon").path] + arguments
    process.currentDirectoryURL = workspace
    var environment = ProcessInfo.processInfo.environment
    environment["SURGEON_THREADS"] = "1"
    // CI runs as root; Open MPI refuses root unless told twice.
    environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    process.environment = environment
    let output = try FileHandle(forWritingTo: outputURL)
    let error = try FileHandle(forWritingTo: errorURL)
    process.standardOutput = output
    process.standardError = error
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try output.close()
    try error.close()
    return SurgeonRun(
      status: process.terminationStatus,
      output: try String(contentsOf: outputURL, encoding: .utf8),
      error: try String(contentsOf: errorURL, encoding: .utf8))
  }

  private func trainedTensors(_ run: String) throws -> [String: Tensor] {
    let file = try SafeTensorsFile.read(
      contentsOf: workspace.appendingPathComponent("checkpoints/\(run)/model.safetensors"))
    let trainable = try XCTUnwrap(
      JSONSerialization.jsonObject(with: Data(file.metadata["surgeon.trainable"]!.utf8))
        as? [String])
    var result: [String: Tensor] = [:]
    for name in trainable {
      guard case .float(let tensor)? = file.tensors[name] else { continue }
      result[name] = tensor
    }
    return result
  }

  /// The trained tensors as one vector: ‖a − b‖ ≤ 1e-5 ‖b‖ (elements near zero, such as a
  /// balanced classifier's bias, differ relatively more; docs/distributed.md).
  private func assertClose(
    _ a: [String: Tensor], _ b: [String: Tensor], file: StaticString = #filePath,
    line: UInt = #line
  ) throws {
    XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
    var difference = 0.0
    var norm = 0.0
    for (name, x) in a {
      guard let y = b[name] else { continue }
      var delta = x
      delta.add(y, scaledBy: -1)
      difference += delta.dot(delta)
      norm += y.dot(y)
    }
    XCTAssertGreaterThan(norm, 0, file: file, line: line)
    let relative = difference.squareRoot() / norm.squareRoot()
    XCTAssertLessThanOrEqual(
      relative, 1e-5, "relative difference \(relative)", file: file, line: line)
    print("DistributedTests: relative difference 2 vs 1 process: \(relative)")
  }

  func testTwoProcessesTrainAsOneAndResume() throws {
    guard let mpirun = Self.mpirun else {
      throw XCTSkip("mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)")
    }
    let single = try runSurgeon(
      ["apply", try manifest(name: "single"), "--progress", "none"], in: workspace)
    XCTAssertEqual(single.status, 0, single.error)
    XCTAssertTrue(single.error.contains("; 1 process;"), single.error)

    let parallel = try runMPI(
      2, ["apply", try manifest(name: "parallel"), "--progress", "lines"], mpirun: mpirun)
    XCTAssertEqual(parallel.status, 0, parallel.error)
    // The log says how many processes ran and what travels per step (only the trainable
    // tensors: 3,810 values for this plan, plus the loss).
    XCTAssertTrue(
      parallel.error.contains(
        "2 processes (Open MPI (libmpi.so.40), data-parallel: all-reduce of 3811 values = 15244 bytes per step)"
      ), parallel.error)
    // Rank 0 alone logs and reports.
    XCTAssertEqual(parallel.output.components(separatedBy: "test accuracy").count - 1, 1)
    XCTAssertEqual(parallel.error.components(separatedBy: "preparing the model").count - 1, 1)
    for name in ["model.safetensors", "results.json", "metrics.jsonl", "report.md", "state"] {
      XCTAssertTrue(
        FileManager.default.fileExists(
          atPath: workspace.appendingPathComponent("checkpoints/parallel/\(name)").path), name)
    }

    // The same global batch, one process or two: the trained tensors agree within float32
    // summation-order rounding.
    let a = try trainedTensors("parallel")
    let b = try trainedTensors("single")
    XCTAssertTrue(a.keys.contains("classifier.weight"))
    try assertClose(a, b)
    // Training moved the adapters (B starts at zero), so the comparison is not vacuous.
    let up = try XCTUnwrap(a["bert.encoder.layer.0.attention.self.query.lora_B"])
    XCTAssertGreaterThan(up.dot(up), 0)
    // The global mean loss per step is the same too.
    func losses(_ run: String) throws -> [Double] {
      try String(
        contentsOf: workspace.appendingPathComponent("checkpoints/\(run)/metrics.jsonl"),
        encoding: .utf8
      ).split(separator: "\n").compactMap {
        let object = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        return object?["type"] as? String == "step" ? object?["loss"] as? Double : nil
      }
    }
    let parallelLosses = try losses("parallel")
    let singleLosses = try losses("single")
    XCTAssertEqual(parallelLosses.count, 24)
    XCTAssertEqual(singleLosses.count, 24)
    for (x, y) in zip(parallelLosses, singleLosses) { XCTAssertEqual(x, y, accuracy: 1e-5) }

    // Interrupted after step 10 and resumed, two processes end bitwise as the whole run did.
    let interrupted = try manifest(name: "interrupted")
    let stopped = try runMPI(
      2, ["apply", interrupted, "--stop-after", "10", "--progress", "none"], mpirun: mpirun)
    XCTAssertEqual(stopped.status, 3, stopped.error)
    XCTAssertTrue(stopped.error.contains("continue with --resume"), stopped.error)
    let continued = try runMPI(
      2, ["apply", interrupted, "--resume", "--progress", "none"], mpirun: mpirun)
    XCTAssertEqual(continued.status, 0, continued.error)
    XCTAssertTrue(continued.error.contains("resuming at step 10 of 24"), continued.error)
    let c = try trainedTensors("interrupted")
    XCTAssertEqual(Set(c.keys), Set(a.keys))
    for (name, x) in a {
      XCTAssertTrue(c[name]?.isBitwiseEqual(to: x) == true, "\(name) differs after resume")
    }
  }

  /// VGG (dropout 0.5 in its classifier, no batch norm) on Fashion-MNIST's test images: a
  /// batch of 9 split 5 + 4 trains as one process does.
  func testTwoProcessesTrainVGGAsOne() throws {
    guard let mpirun = Self.mpirun else {
      throw XCTSkip("mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)")
    }
    let images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
    guard FileManager.default.fileExists(atPath: images) else {
      throw XCTSkip("Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)")
    }
    try FileManager.default.copyItem(
      at: Self.fixtures.appendingPathComponent("tiny-vgg"),
      to: workspace.appendingPathComponent("checkpoints/tiny-vgg"))
    for name in ["vgg-single", "vgg-parallel"] {
      try """
      surgeon: 1
      name: \(name)
      model:
        family: vgg
        checkpoint: checkpoints/tiny-vgg
      surgery:
        - lora:
            layers: [conv, fc]
            rank: 4
            bias_c: zeros
            decay: {start: 0.1, end: 0.7}
            noise: {stats: per_output, clear_below: 0.3}
        - train: [head]
      train:
        task: image-classification
        data:
          train:
            format: idx
            images: \(images)
            labels: /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
          split: {validation: 0.1, test: 0.1, seed: 0, part: "1/50"}
        steps: 12
        batch_size: 9
        optimizer: {name: adamw, lr: 3.0e-3}
        eval_every: 6
      output:
        compress: false

      """.write(
        to: workspace.appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
    }
    let single = try runSurgeon(
      ["apply", "vgg-single.yaml", "--progress", "none"], in: workspace)
    XCTAssertEqual(single.status, 0, single.error)
    let parallel = try runMPI(
      2, ["apply", "vgg-parallel.yaml", "--progress", "none"], mpirun: mpirun)
    XCTAssertEqual(parallel.status, 0, parallel.error)
    XCTAssertTrue(parallel.error.contains("2 processes"), parallel.error)
    try assertClose(try trainedTensors("vgg-parallel"), try trainedTensors("vgg-single"))
  }

  /// Under a launcher, a libmpi that cannot be loaded is an error, not N single-process runs.
  func testLaunchedWithoutLoadableMPIFails() throws {
    let path = try manifest(name: "nompi")
    let process = Process()
    process.executableURL = Bundle.main.bundleURL.appendingPathComponent("surgeon")
    process.arguments = ["apply", path, "--progress", "none"]
    process.currentDirectoryURL = workspace
    var environment = ProcessInfo.processInfo.environment
    environment["SURGEON_THREADS"] = "1"
    environment["OMPI_COMM_WORLD_SIZE"] = "2"
    environment["SURGEON_LIBMPI"] = "/nonexistent/libmpi.so.40"
    process.environment = environment
    let errorPipe = Pipe()
    process.standardError = errorPipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let error = String(
      decoding: errorPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 1, error)
    XCTAssertTrue(error.contains("launched by mpirun but libmpi cannot be loaded"), error)
    XCTAssertFalse(
      FileManager.default.fileExists(
        atPath: workspace.appendingPathComponent("checkpoints/nompi").path))
  }
}

import Foundation
import Manifest
import Models
import Surgery
import Tensor
import Training

/// `surgeon-bench forward`: MiniLM's forward pass against `cblas_sgemm` alone on the same GEMM
/// shapes, in one run, so the ratio does not depend on how busy the machine is.

struct GEMMShape: Hashable {
  var m: Int
  var n: Int
  var k: Int
  var transposeB: Bool
  var count: Int
  var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(count) }
}

/// The GEMMs of one BERT forward pass, grouped by shape.
func forwardGEMMs(_ c: BertConfiguration, batch: Int, length: Int) -> [GEMMShape] {
  let rows = batch * length
  let h = c.hiddenSize
  let headSize = h / c.headCount
  let layers = c.layerCount
  return [
    GEMMShape(m: rows, n: h, k: h, transposeB: true, count: 4 * layers),
    GEMMShape(m: rows, n: c.intermediateSize, k: h, transposeB: true, count: layers),
    GEMMShape(m: rows, n: h, k: c.intermediateSize, transposeB: true, count: layers),
    GEMMShape(
      m: length, n: length, k: headSize, transposeB: true, count: layers * batch * c.headCount),
    GEMMShape(
      m: length, n: headSize, k: length, transposeB: false, count: layers * batch * c.headCount),
    GEMMShape(m: batch, n: h, k: h, transposeB: true, count: 1),
  ]
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
  let start = DispatchTime.now().uptimeNanoseconds
  try body()
  return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  return sorted[sorted.count / 2]
}

func option(_ name: String, _ fallback: String) -> String {
  let arguments = CommandLine.arguments
  guard let index = arguments.firstIndex(of: "--" + name), index + 1 < arguments.count else {
    return fallback
  }
  return arguments[index + 1]
}

func benchmarkForward() throws {
  let checkpoint = option("checkpoint", "checkpoints/all-minilm-l6-v2")
  let batchSize = Int(option("batch", "32")) ?? 32
  let length = Int(option("length", "64")) ?? 64
  let repeats = Int(option("repeats", "7")) ?? 7
  let threads = Int(option("threads", "2")) ?? 2
  BLAS.setThreadCount(threads)
  let loaded = try CheckpointLoader.load(directory: URL(fileURLWithPath: checkpoint))
  guard case .bert(let model) = loaded.model else {
    print("surgeon-bench: error: \(checkpoint) is not a BERT checkpoint")
    exit(1)
  }
  var random = RandomStream(seed: 0)
  let ids = (0..<(batchSize * length)).map { index -> Int32 in
    index % length == 0 ? 101 : Int32(1000 + random.nextInt(below: 20_000))
  }
  let batch = TextBatch(batchSize: batchSize, length: length, inputIDs: ids)

  // Alternate the two sides so that a slow spell of the machine hits both.
  let shapes = forwardGEMMs(model.configuration, batch: batchSize, length: length)
  let largest = shapes.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max()!
  let a = Tensor.uniform(shape: [largest], low: -1, high: 1, random: &random)
  let b = Tensor.uniform(shape: [largest], low: -1, high: 1, random: &random)
  var c = Tensor(zeros: [largest])
  func gemmsOnly() {
    a.withUnsafeBufferPointer { a in
      b.withUnsafeBufferPointer { b in
        c.withUnsafeMutableBufferPointer { c in
          for shape in shapes {
            for _ in 0..<shape.count {
              BLAS.gemm(
                transposeA: false, transposeB: shape.transposeB, m: shape.m, n: shape.n,
                k: shape.k, a: a.baseAddress!, lda: shape.k, b: b.baseAddress!,
                ldb: shape.transposeB ? shape.k : shape.n, c: c.baseAddress!, ldc: shape.n)
            }
          }
        }
      }
    }
  }
  var forwardTimes: [Double] = []
  var gemmTimes: [Double] = []
  _ = try model.forward(batch, mode: .evaluation, random: &random)
  gemmsOnly()
  for _ in 0..<repeats {
    forwardTimes.append(
      try seconds { _ = try model.forward(batch, mode: .evaluation, random: &random) })
    gemmTimes.append(seconds { gemmsOnly() })
  }
  let flops = shapes.reduce(0) { $0 + $1.flops }
  let forward = median(forwardTimes)
  let gemm = median(gemmTimes)
  print(
    "MiniLM forward, batch \(batchSize) × \(length) tokens, \(threads) BLAS threads, median of \(repeats)"
  )
  print(
    String(
      format: "  forward pass:            %.4f s  %.1f GFLOP/s (GEMM FLOPs / forward time)",
      forward, flops / forward / 1e9))
  print(
    String(format: "  cblas_sgemm, same shapes: %.4f s  %.1f GFLOP/s", gemm, flops / gemm / 1e9))
  print(String(format: "  forward GFLOP/s ÷ sgemm GFLOP/s: %.2f", gemm / forward))
  let json: [String: Any] = [
    "forward_seconds": forward, "sgemm_seconds": gemm, "gemm_gflop": flops / 1e9,
    "forward_gflops": flops / forward / 1e9, "sgemm_gflops": flops / gemm / 1e9,
    "forward_vs_sgemm_efficiency": gemm / forward, "batch": batchSize, "length": length,
    "threads": threads, "repeats": repeats,
  ]
  let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
  print(String(decoding: data, as: UTF8.self))
}

/// One training step (forward, backward, AdamW) of a manifest's compiled plan on random ids, at
/// two points of the schedule: during the noisy decay stage and after it.
func benchmarkTrainStep() throws {
  let path = option("manifest", "manifests/minilm-rotten-tomatoes.yaml")
  let batchSize = Int(option("batch", "32")) ?? 32
  let length = Int(option("length", "64")) ?? 64
  let repeats = Int(option("repeats", "5")) ?? 5
  BLAS.setThreadCount(Int(option("threads", "2")) ?? 2)
  let (manifest, diagnostics) = ManifestDecoder.decode(contentsOf: path)
  guard let manifest else {
    print(render(diagnostics, as: .text))
    exit(1)
  }
  let directory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
  let (resolved, _) = ModelResolver.resolve(
    manifest.model, needsWeights: true, workingDirectory: directory)
  guard let resolved, let rewrite = Rewriter.apply(manifest, to: resolved, initializes: true).0
  else {
    print("surgeon-bench: error: \(path) does not resolve")
    exit(1)
  }
  var plan = rewrite.plan
  var optimizer = AdamW(plan: plan, learningRate: 1e-3)
  var random = RandomStream(seed: 0)
  let ids = (0..<(batchSize * length)).map { index -> Int32 in
    index % length == 0 ? 101 : Int32(1000 + random.nextInt(below: 20_000))
  }
  let batch = TextBatch(
    batchSize: batchSize, length: length, inputIDs: ids,
    labels: (0..<batchSize).map { Int32($0 % 2) })
  func step() throws {
    guard case .bert(let model) = plan.model else { return }
    let (outputs, tape) = try model.forward(batch, mode: .training, random: &random)
    var gradients = plan.makeGradients()
    if let tape { model.backward(tape: tape, outputs: outputs, gradients: &gradients) }
    optimizer.apply(gradients, to: &plan)
  }
  for (label, progress) in [("decay stage (p = 0.5)", 0.5), ("after decay (p = 0.95)", 0.95)] {
    plan.setProgress(progress)
    try step()
    var times: [Double] = []
    for _ in 0..<repeats { times.append(try seconds { try step() }) }
    print(String(format: "  train step, %@: %.3f s (median of %d)", label, median(times), repeats))
  }
}

BLAS.relaunchWithSleepingIdleWorkers()
Memory.keepFreedBuffersMapped()
let usage = """
  Usage: surgeon-bench forward [--checkpoint DIR] [--batch 32] [--length 64] [--repeats 7] [--threads 2]
  """
switch CommandLine.arguments.dropFirst().first {
case "train-step":
  do { try benchmarkTrainStep() } catch {
    print("surgeon-bench: error: \(error)")
    exit(1)
  }
case "forward":
  do { try benchmarkForward() } catch {
    print("surgeon-bench: error: \(error)")
    exit(1)
  }
default:
  print(usage)
  exit(2)
}

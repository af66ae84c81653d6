import CBLAS
import Foundation
import Models
import Surgery
import Tensor
import Training

/// `forward`: MiniLM's evaluation forward pass against `cblas_sgemm` alone on the GEMMs that
/// pass makes (recorded), alternating in one run so the ratio does not depend on the machine's
/// load.
func benchmarkForward(_ options: Options) throws {
  let checkpoint = options.string("checkpoint", "checkpoints/all-minilm-l6-v2")
  let (batchSize, length) = (try options.integer("batch", 32), try options.integer("length", 64))
  let repeats = try options.integer("repeats", 7)
  let loaded = try CheckpointLoader.load(directory: URL(fileURLWithPath: checkpoint))
  guard case .bert(let model) = loaded.model else {
    throw BenchError("\(checkpoint) is not a BERT checkpoint")
  }
  let batch = randomTextBatch(batchSize: batchSize, length: length, labelled: false)
  var random = RandomStream(seed: 0)
  let calls = try GEMMRecorder.record {
    _ = try model.forward(batch, mode: .evaluation, random: &random)
  }
  var replay = GEMMReplay(calls)
  var (forwardTimes, gemmTimes) = ([Double](), [Double]())
  replay.run()
  for _ in 0..<repeats {
    forwardTimes.append(
      try seconds { _ = try model.forward(batch, mode: .evaluation, random: &random) })
    gemmTimes.append(seconds { replay.run() })
  }
  let forward: Double = median(forwardTimes)
  let gemm: Double = median(gemmTimes)
  let flops: Double = replay.flops
  print("MiniLM evaluation forward, batch \(batchSize) × \(length), median of \(repeats)")
  print(
    String(
      format: "  forward pass:               %.4f s  %6.1f GFLOP/s", forward, flops / forward / 1e9)
  )
  print(
    String(
      format: "  cblas_sgemm on its %4d GEMMs: %.4f s  %6.1f GFLOP/s", calls.count, gemm,
      flops / gemm / 1e9))
  try printJSON([
    "forward_seconds": forward, "sgemm_seconds": gemm, "gemm_gflop": flops / 1e9,
    "gemm_calls": calls.count, "forward_gflops": flops / forward / 1e9,
    "sgemm_gflops": flops / gemm / 1e9, "forward_vs_sgemm_efficiency": gemm / forward,
    "batch": batchSize, "length": length, "threads": BLAS.threadCount, "repeats": repeats,
  ])
}

/// `bert-train`: one training step of a BERT manifest's plan at two points of its schedule — the
/// decay stage (progress 0.5; noisy when the manifest has noise) and after it (progress 0.95:
/// d = 0, no noise) — then `cblas_sgemm` alone on the decay step's own GEMMs, alternating with
/// decay steps.
func benchmarkBertTraining(_ options: Options) throws {
  let path = options.string("manifest", "manifests/minilm-config-b.yaml")
  let (batchSize, length) = (try options.integer("batch", 32), try options.integer("length", 64))
  let repeats = try options.integer("repeats", 5)
  let rank = options.string("rank", "").isEmpty ? nil : try options.integer("rank", 16)
  var plan = try rewrite(manifest: path, rank: rank).plan
  let batch = Batch.text(randomTextBatch(batchSize: batchSize, length: length, labelled: true))
  var optimizer = AdamW(plan: plan, learningRate: 1e-3)
  let (decayProgress, afterProgress) = (
    try options.number("decay-progress", 0.5), try options.number("after-progress", 0.95)
  )
  func step(at progress: Double) throws -> Double {
    plan.setProgress(progress)
    return try seconds { try trainingStep(plan: &plan, optimizer: &optimizer, batch: batch) }
  }
  plan.setProgress(decayProgress)
  let decay = plan.model.decayFactors.values.max() ?? 1
  let noise = plan.hasActiveNoise
  _ = try step(at: decayProgress)
  _ = try step(at: afterProgress)
  var (decayTimes, afterTimes) = ([Double](), [Double]())
  for _ in 0..<repeats {
    decayTimes.append(try step(at: decayProgress))
    afterTimes.append(try step(at: afterProgress))
  }
  let peak = peakResidentMegabytes()
  plan.setProgress(decayProgress)
  let calls = try GEMMRecorder.record {
    try trainingStep(plan: &plan, optimizer: &optimizer, batch: batch)
  }
  if options.string("list-gemms", "no") == "yes" { printGEMMTable(calls) }
  var replay = GEMMReplay(calls)
  var (pairedStep, pairedGEMM) = ([Double](), [Double]())
  // `--gemm-replay no` skips the sgemm-alone comparison (for workloads too large to repeat).
  if options.string("gemm-replay", "yes") != "no" {
    replay.run()
    for _ in 0..<repeats {
      pairedStep.append(try step(at: decayProgress))
      pairedGEMM.append(seconds { replay.run() })
    }
  }
  let decaySeconds: Double = median(decayTimes)
  let afterSeconds: Double = median(afterTimes)
  let flops: Double = replay.flops
  print("\(path): training step, batch \(batchSize) × \(length), median of \(repeats)")
  print(
    String(
      format: "  decay stage (d = %.3f, noise %@): %.3f s", decay, noise ? "on" : "off",
      decaySeconds))
  print(String(format: "  after decay (d = 0, noise off):     %.3f s", afterSeconds))
  print(String(format: "  peak RSS %.0f MB", peak))
  var fields: [String: Any] = [
    "workload": "bert-train", "manifest": path, "decay_seconds": decaySeconds,
    "after_seconds": afterSeconds, "decay": Double(decay), "noise": noise,
    "peak_rss_mb": peak, "step_gflop": flops / 1e9, "gemm_calls": calls.count,
    "batch": batchSize, "length": length, "rank": rank ?? 0, "threads": BLAS.threadCount,
    "repeats": repeats,
  ]
  if !pairedStep.isEmpty {
    let stepSeconds: Double = median(pairedStep)
    let gemmSeconds: Double = median(pairedGEMM)
    print(
      String(
        format:
          "  the decay step's %d GEMMs, %.1f GFLOP: sgemm alone %.3f s (%.1f GFLOP/s), in the step %.1f GFLOP/s",
        calls.count, flops / 1e9, gemmSeconds, flops / gemmSeconds / 1e9,
        flops / stepSeconds / 1e9))
    fields["paired_step_seconds"] = stepSeconds
    fields["sgemm_seconds"] = gemmSeconds
    fields["step_gflops"] = flops / stepSeconds / 1e9
    fields["sgemm_gflops"] = flops / gemmSeconds / 1e9
    fields["gemm_efficiency"] = gemmSeconds / stepSeconds
  }
  try printJSON(fields)
}

/// `bert-eval`: the evaluation forward pass of the manifest's model before surgery (dense) and of
/// its compressed export (W gone, only the rank-r factors), alternating.
func benchmarkBertInference(_ options: Options) throws {
  let path = options.string("manifest", "manifests/minilm-rotten-tomatoes.yaml")
  let (batchSize, length) = (try options.integer("batch", 32), try options.integer("length", 64))
  let repeats = try options.integer("repeats", 7)
  let rank = options.string("rank", "").isEmpty ? nil : try options.integer("rank", 16)
  let surgery = try rewrite(manifest: path, rank: rank)
  guard case .bert(let dense) = surgery.original,
    case .bert(let compressed) = surgery.plan.model.exported()
  else { throw BenchError("\(path) is not a BERT manifest") }
  let batch = randomTextBatch(batchSize: batchSize, length: length, labelled: false)
  var random = RandomStream(seed: 0)
  var (denseTimes, compressedTimes, gemmTimes) = ([Double](), [Double](), [Double]())
  // The dense forward's own GEMMs, replayed through `cblas_sgemm` alone between the passes: the
  // time the dense forward would take if everything outside its GEMMs were free.
  let calls = try GEMMRecorder.record {
    _ = try dense.forward(batch, mode: .evaluation, random: &random)
  }
  var replay = GEMMReplay(calls)
  let replays = options.string("gemm-replay", "yes") != "no"
  if replays { replay.run() }
  _ = try compressed.forward(batch, mode: .evaluation, random: &random)
  for _ in 0..<repeats {
    denseTimes.append(
      try seconds { _ = try dense.forward(batch, mode: .evaluation, random: &random) })
    compressedTimes.append(
      try seconds { _ = try compressed.forward(batch, mode: .evaluation, random: &random) })
    if replays { gemmTimes.append(seconds { replay.run() }) }
  }
  let denseSeconds: Double = median(denseTimes)
  let compressedSeconds: Double = median(compressedTimes)
  print("\(path): evaluation forward, batch \(batchSize) × \(length), median of \(repeats)")
  print(String(format: "  dense model:      %.4f s", denseSeconds))
  print(
    String(
      format: "  compressed model: %.4f s (%.2f× faster)", compressedSeconds,
      denseSeconds / compressedSeconds))
  var fields: [String: Any] = [
    "workload": "bert-eval", "manifest": path, "dense_seconds": denseSeconds,
    "compressed_seconds": compressedSeconds,
    "compressed_inference_speedup": denseSeconds / compressedSeconds,
    "dense_parameters": surgery.original.parameterCount,
    "compressed_parameters": surgery.plan.model.exported().parameterCount,
    "batch": batchSize, "length": length, "threads": BLAS.threadCount, "repeats": repeats,
    "dense_gemm_gflop": replay.flops / 1e9, "dense_gemm_calls": calls.count,
  ]
  if replays {
    let gemmSeconds: Double = median(gemmTimes)
    print(
      String(
        format: "  the dense forward's %d GEMMs, %.1f GFLOP: sgemm alone %.4f s (%.1f GFLOP/s)",
        calls.count, replay.flops / 1e9, gemmSeconds, replay.flops / gemmSeconds / 1e9))
    fields["dense_sgemm_seconds"] = gemmSeconds
    fields["dense_sgemm_gflops"] = replay.flops / gemmSeconds / 1e9
  }
  try printJSON(fields)
}

/// `vgg-train`: one ConvLoRA training step of a VGG manifest's plan in the noisy decay stage
/// (progress 0.5) on random images. `--conv both` times the im2col and oneDNN convolutions
/// side by side (alternating steps, so both see the same machine load); `seconds` is always the
/// default backend's.
func benchmarkVGGTraining(_ options: Options) throws {
  let path = options.string("manifest", "Scripts/bench/vgg-fashion-mnist-convlora.yaml")
  let batchSize = try options.integer("batch", 64)
  let repeats = try options.integer("repeats", 7)
  let conv = options.string("conv", "auto")
  let backends: [ConvolutionBackend?]
  switch conv {
  case "auto": backends = [nil]
  case "both": backends = [nil, .im2col, .onednn]
  default:
    guard let backend = ConvolutionBackend(rawValue: conv) else {
      throw BenchError("--conv \(conv): use auto, both, im2col or onednn")
    }
    backends = [backend]
  }
  var plan = try rewrite(manifest: path, rank: nil).plan
  guard case .vgg(let model) = plan.model else { throw BenchError("\(path) is not a VGG manifest") }
  let c = model.configuration
  var random = RandomStream(seed: 0)
  let pixels = Tensor.normal(
    shape: [batchSize, c.inChannels, c.imageSize, c.imageSize], random: &random)
  let batch = Batch.images(pixels: pixels, labels: (0..<batchSize).map { Int32($0 % c.classCount) })
  var optimizer = AdamW(plan: plan, learningRate: 3e-3)
  let progress = try options.number("progress", 0.5)
  plan.setProgress(progress)
  let noise = plan.hasActiveNoise
  let environment = ConvolutionBackend.forced
  defer { ConvolutionBackend.forced = environment }
  var times = [[Double]](repeating: [], count: backends.count)
  for backend in backends {
    // A first step per backend creates its primitives (oneDNN) and buffers.
    ConvolutionBackend.forced = backend ?? environment
    try trainingStep(plan: &plan, optimizer: &optimizer, batch: batch)
  }
  for _ in 0..<repeats {
    for (index, backend) in backends.enumerated() {
      ConvolutionBackend.forced = backend ?? environment
      times[index].append(
        try seconds { try trainingStep(plan: &plan, optimizer: &optimizer, batch: batch) })
    }
  }
  print("\(path): training step, batch \(batchSize), median of \(repeats)")
  var fields: [String: Any] = [
    "workload": "vgg-train", "manifest": path, "seconds": median(times[0]), "noise": noise,
    "peak_rss_mb": peakResidentMegabytes(), "batch": batchSize, "threads": BLAS.threadCount,
    "repeats": repeats, "conv_backend": environment?.rawValue ?? "auto",
  ]
  for (index, backend) in backends.enumerated() {
    let label = backend?.rawValue ?? (environment?.rawValue ?? "auto")
    print(
      String(
        format: "  decay stage (noise %@), convolutions %@: %.4f s", noise ? "on" : "off", label,
        median(times[index])))
    if let backend { fields["seconds_\(backend.rawValue)"] = median(times[index]) }
  }
  if conv == "both" {
    fields["conv_layers"] = try timeConvolutions(
      plan.model, pixels: pixels, repeats: repeats, restoring: environment)
  }
  try printJSON(fields)
}

/// Each convolution of a VGG model (adapter included) timed alone, forward and backward, on
/// both backends (alternating): the measurement behind `ConvolutionBackend`'s rule.
private func timeConvolutions(
  _ model: Model, pixels: Tensor, repeats: Int, restoring environment: ConvolutionBackend?
) throws -> [[String: Any]] {
  guard case .vgg(let vgg) = model else { return [] }
  defer { ConvolutionBackend.forced = environment }
  var x = pixels
  var rows: [[String: Any]] = []
  for feature in vgg.features {
    switch feature {
    case .convolution(let layer):
      var times: [ConvolutionBackend: [Double]] = [:]
      var output = x
      for _ in 0..<(repeats + 1) {
        for backend in ConvolutionBackend.allCases {
          ConvolutionBackend.forced = backend
          let time = seconds {
            var random = RandomStream(seed: 1)
            let (y, cache) = layer.forward(x, mode: .training, random: &random)
            var gradients = GradientSet()
            _ = layer.backward(cache: cache, outputGradient: y, gradients: &gradients)
            output = y
          }
          times[backend, default: []].append(time)
        }
      }
      // The first round creates primitives and buffers.
      let im2col = median(Array(times[.im2col]!.dropFirst()))
      let onednn = median(Array(times[.onednn]!.dropFirst()))
      let shape = "\(x.shape) → \(output.shape)"
      print(
        String(
          format: "  %@ %@: im2col %.2f ms, onednn %.2f ms (forward + backward)", layer.name,
          shape, im2col * 1e3, onednn * 1e3))
      rows.append([
        "layer": layer.name, "input": x.shape, "output": output.shape, "im2col_seconds": im2col,
        "onednn_seconds": onednn,
      ])
      x = output
    case .maxPool(let pool):
      x = pool.forward(x).output
    case .batchNorm, .relu:
      continue
    }
  }
  return rows
}

/// `kernels`: surgeon's own (non-GEMM) kernels on MiniLM's shapes at batch 32 × 64, each timed
/// alone: where a step's time goes outside BLAS.
func benchmarkKernels(_ options: Options) throws {
  let repeats = try options.integer("repeats", 7)
  let rows = try options.integer("batch", 32) * (try options.integer("length", 64))
  var random = RandomStream(seed: 0)
  let wide = Tensor.normal(shape: [rows, 1536], random: &random)
  let narrow = Tensor.normal(shape: [rows, 384], random: &random)
  let scores = Tensor.normal(shape: [rows * 12, 64], random: &random)
  let norm = LayerNorm(name: "norm", features: 384, epsilon: 1e-12)
  let (_, normCache) = norm.forward(narrow)
  let dropout = Dropout(probability: 0.1)
  var weight = Tensor.normal(shape: [1536, 384], random: &random)
  let mask = [Int32](repeating: 1, count: rows)
  let kernels: [(String, () -> Void)] = [
    ("GELU forward [\(rows)×1536]", { _ = Activation.gelu.forward(wide) }),
    (
      "GELU backward [\(rows)×1536]",
      {
        _ = Activation.gelu.backward(input: wide, output: wide, outputGradient: wide)
      }
    ),
    (
      "softmax [\(rows * 12)×64]",
      {
        var copy = scores
        copy.withUnsafeMutableBufferPointer {
          MultiHeadAttention.maskedSoftmax(
            $0.baseAddress!, mask: mask, batch: rows / 64, heads: 12, length: 64)
        }
      }
    ),
    ("LayerNorm forward [\(rows)×384]", { _ = norm.forward(narrow) }),
    (
      "LayerNorm backward [\(rows)×384]",
      {
        var gradients = GradientSet(trainable: [])
        _ = norm.backward(cache: normCache, outputGradient: narrow, gradients: &gradients)
      }
    ),
    (
      "dropout mask [\(rows)×1536]",
      {
        var stream = random
        _ = dropout.forward(wide, mode: .training, random: &stream)
      }
    ),
    (
      "normal noise [1536×384]",
      {
        weight.withUnsafeMutableBufferPointer {
          random.fillNormal($0, mean: 0, standardDeviation: 1)
        }
      }
    ),
  ]
  var product = Tensor(zeros: [rows, 1536])
  func gemm(_ n: Int, _ k: Int, oneDNN: Bool) {
    wide.withUnsafeBufferPointer { a in
      weight.withUnsafeBufferPointer { b in
        product.withUnsafeMutableBufferPointer { c in
          if oneDNN {
            BatchedGEMM.multiply(
              samples: 1, heads: 1, m: rows, n: n, k: k, a: a.baseAddress!,
              MatrixGrid(sample: rows * k, head: rows * k, row: k, column: 1), b: b.baseAddress!,
              MatrixGrid(sample: n * k, head: n * k, row: 1, column: k), c: c.baseAddress!,
              MatrixGrid(sample: rows * n, head: rows * n, row: n, column: 1))
          } else {
            cblas_sgemm(
              CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(n), Int32(k), 1,
              a.baseAddress!, Int32(k), b.baseAddress!, Int32(k), 0, c.baseAddress!, Int32(n))
          }
        }
      }
    }
  }
  let gemms: [(String, () -> Void)] = [
    ("sgemm [\(rows)×384×384] NT", { gemm(384, 384, oneDNN: false) }),
    ("oneDNN [\(rows)×384×384] NT", { gemm(384, 384, oneDNN: true) }),
    ("sgemm [\(rows)×1536×384] NT", { gemm(1536, 384, oneDNN: false) }),
    ("oneDNN [\(rows)×1536×384] NT", { gemm(1536, 384, oneDNN: true) }),
    ("sgemm [\(rows)×384×1536] NT", { gemm(384, 1536, oneDNN: false) }),
    ("oneDNN [\(rows)×384×1536] NT", { gemm(384, 1536, oneDNN: true) }),
  ]
  var fields: [String: Any] = ["repeats": repeats, "threads": BLAS.threadCount]
  for (name, body) in gemms + kernels {
    body()
    var (times, cpuTimes) = ([Double](), [Double]())
    for _ in 0..<repeats {
      let cpuStart = processCPUSeconds()
      times.append(seconds(body))
      cpuTimes.append(processCPUSeconds() - cpuStart)
    }
    let (value, cpu): (Double, Double) = (median(times), median(cpuTimes))
    print(
      "  " + name.padding(toLength: 34, withPad: " ", startingAt: 0)
        + String(format: "%8.3f ms wall %8.3f ms CPU", value * 1000, cpu * 1000))
    fields[name] = value
    fields[name + " cpu"] = cpu
  }
  try printJSON(fields)
}

/// The recorded GEMMs grouped by shape, largest FLOP share first.
func printGEMMTable(_ calls: [GEMMCall]) {
  var groups: [GEMMCall: Int] = [:]
  for call in calls { groups[call, default: 0] += 1 }
  let total = calls.reduce(0) { $0 + $1.flops }
  print("  GEMM shapes (m × n × k, op(A) op(B), β): calls, GFLOP, share")
  for (call, count) in groups.sorted(by: {
    $0.key.flops * Double($0.value) > $1.key.flops * Double($1.value)
  }) {
    let flops = call.flops * Double(count)
    print(
      String(
        format: "    %5d × %5d × %5d  %@%@ β%.0f: %5d calls %7.2f GFLOP %5.1f%%", call.m, call.n,
        call.k, call.transposeA ? "T" : "N", call.transposeB ? "T" : "N", call.beta, count,
        flops / 1e9, 100 * flops / total))
  }
}

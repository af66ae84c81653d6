import Foundation
import Manifest
import Models
import Surgery
import Tensor
import Training

/// Wall-clock seconds of `body`.
func seconds(_ body: () throws -> Void) rethrows -> Double {
  let start = DispatchTime.now().uptimeNanoseconds
  try body()
  return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  return sorted.isEmpty ? .nan : sorted[sorted.count / 2]
}

/// CPU seconds used by all of this process's threads so far (less sensitive to a busy machine
/// than wall time).
func processCPUSeconds() -> Double {
  var time = timespec()
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
  return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// The peak resident set size of this process so far, in MB (Linux reports kilobytes).
func peakResidentMegabytes() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_maxrss) / 1024
}

struct BenchError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

/// `--name value` options after the subcommand.
struct Options {
  private var values: [String: String] = [:]

  init(_ arguments: [String]) throws {
    var index = 0
    while index < arguments.count {
      let argument = arguments[index]
      guard argument.hasPrefix("--"), index + 1 < arguments.count else {
        throw BenchError("unexpected argument '\(argument)' (options are --name value)")
      }
      values[String(argument.dropFirst(2))] = arguments[index + 1]
      index += 2
    }
  }

  func string(_ name: String, _ fallback: String) -> String { values[name] ?? fallback }

  func integer(_ name: String, _ fallback: Int) throws -> Int {
    guard let text = values[name] else { return fallback }
    guard let value = Int(text), value > 0 else {
      throw BenchError("--\(name) takes a positive integer, not '\(text)'")
    }
    return value
  }

  func number(_ name: String, _ fallback: Double) throws -> Double {
    guard let text = values[name] else { return fallback }
    guard let value = Double(text) else { throw BenchError("--\(name) takes a number") }
    return value
  }
}

/// Prints `fields` as one JSON object line (sorted keys), with the BLAS core and the processor
/// the numbers were measured on.
func printJSON(_ fields: [String: Any]) throws {
  var fields = fields
  fields["blas_core"] = BLASCore.loadedCore
  fields["cpu_model"] = Processor.current.model
  fields["cpu_features"] = Processor.current.featureList
  fields["vector_kernels"] = VectorKernelChoice.active.name
  if let from = ProcessInfo.processInfo.environment[BLASCore.correctedFromVariable] {
    fields["blas_core_corrected_from"] = from
  }
  let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
  print(String(decoding: data, as: UTF8.self))
}

/// A manifest's rewrite, as `surgeon apply` builds it (weights loaded, adapters initialised);
/// `rank` overrides every `lora:` rule's rank (and alpha, keeping the scale at 1).
func rewrite(manifest path: String, rank: Int?) throws -> Rewrite {
  let (decoded, diagnostics) = ManifestDecoder.decode(contentsOf: path)
  guard var manifest = decoded else {
    throw BenchError(render(diagnostics, as: .text))
  }
  if let rank {
    manifest.surgery = manifest.surgery.map { rule in
      guard case .lora(var lora) = rule else { return rule }
      lora.rank = Located(rank, at: lora.rank.location)
      if let alpha = lora.alpha { lora.alpha = Located(Double(rank), at: alpha.location) }
      return .lora(lora)
    }
  }
  let directory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
  let (result, rewriteDiagnostics) = ManifestRewrite.resolveAndRewrite(
    manifest, weights: true, workingDirectory: directory)
  guard let result else { throw BenchError(render(rewriteDiagnostics, as: .text)) }
  if result.needsCalibration {
    throw BenchError(
      "\(path): init svd_whitened needs a calibration pass over the training data; benchmark a manifest without calibration"
    )
  }
  return result.rewrite
}

/// Random token ids (`[CLS]` first) and alternating labels.
func randomTextBatch(batchSize: Int, length: Int, labelled: Bool) -> TextBatch {
  var random = RandomStream(seed: 0)
  let ids = (0..<(batchSize * length)).map { index -> Int32 in
    index % length == 0 ? 101 : Int32(1000 + random.nextInt(below: 20_000))
  }
  return TextBatch(
    batchSize: batchSize, length: length, inputIDs: ids,
    labels: labelled ? (0..<batchSize).map { Int32($0 % 2) } : nil)
}

/// `cblas_sgemm` alone on a recorded list of GEMM shapes, on scratch buffers.
struct GEMMReplay {
  let calls: [GEMMCall]
  private let a: Tensor
  private let b: Tensor
  private var c: Tensor

  init(_ calls: [GEMMCall]) {
    self.calls = calls
    let largest = calls.map { max($0.m * $0.k, $0.k * $0.n, $0.m * $0.n) }.max() ?? 1
    var random = RandomStream(seed: 1)
    a = Tensor.uniform(shape: [largest], low: -1, high: 1, random: &random)
    b = Tensor.uniform(shape: [largest], low: -1, high: 1, random: &random)
    c = Tensor(zeros: [largest])
  }

  var flops: Double { calls.reduce(0) { $0 + $1.flops } }

  /// One pass over every call, in the recorded order.
  mutating func run() {
    let calls = calls
    a.withUnsafeBufferPointer { a in
      b.withUnsafeBufferPointer { b in
        c.withUnsafeMutableBufferPointer { c in
          for call in calls {
            BLAS.gemm(
              transposeA: call.transposeA, transposeB: call.transposeB, m: call.m, n: call.n,
              k: call.k, a: a.baseAddress!, lda: call.transposeA ? call.m : call.k,
              b: b.baseAddress!, ldb: call.transposeB ? call.k : call.n, beta: call.beta,
              c: c.baseAddress!, ldc: call.n)
          }
        }
      }
    }
  }
}

/// One training step as `Trainer.step` makes it: loss and gradients, global-norm clipping at 1,
/// AdamW.
func trainingStep(plan: inout TrainingPlan, optimizer: inout AdamW, batch: Batch) throws {
  var random = RandomStream(seed: 3)
  let (_, _, gradients) = try plan.lossAndGradients(batch, random: &random)
  var squares = 0.0
  for name in plan.trainable {
    if let gradient = gradients[name] { squares += gradient.dot(gradient) }
  }
  let norm = squares.squareRoot()
  var clipped = gradients
  if norm > 1 {
    clipped = GradientSet(trainable: gradients.trainable)
    for (name, gradient) in gradients.tensors {
      var copy = gradient
      copy.scale(by: Float(1 / norm))
      clipped.accumulate(name, copy)
    }
  }
  optimizer.apply(clipped, to: &plan)
}

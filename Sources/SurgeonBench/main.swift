import Foundation
import Tensor

// surgeon-bench: the Swift side of Scripts/bench.sh. Each subcommand prints a human summary and,
// as its last line, one JSON object.
// Before any work, as `surgeon` does: re-execute once when OpenBLAS picked kernels below what
// this CPU runs (OPENBLAS_CORETYPE is read only when OpenBLAS loads).
if case .switchCore(let from, let to)? = BLASCore.startupDecision(
  environment: ProcessInfo.processInfo.environment)
{
  setenv("OPENBLAS_CORETYPE", to, 1)
  setenv(BLASCore.correctedFromVariable, from, 1)
  var arguments = CommandLine.arguments.map { strdup($0) } + [nil]
  execv("/proc/self/exe", &arguments)
  unsetenv("OPENBLAS_CORETYPE")
  unsetenv(BLASCore.correctedFromVariable)
}
if case .failure(let error) = VectorKernelChoice.checkedSetting() {
  FileHandle.standardError.write(Data("surgeon-bench: error: \(error)\n".utf8))
  exit(2)
}
Memory.keepFreedBuffersMapped()
let usage = """
  Usage: surgeon-bench COMMAND [--name value ...]   (every command: --threads 2)
    forward    [--checkpoint DIR] [--batch 32] [--length 64] [--repeats 7]
    bert-train [--manifest manifests/minilm-config-b.yaml] [--batch 32] [--length 64] [--rank R] [--repeats 5]
               [--gemm-replay yes|no]
    bert-eval  [--manifest manifests/minilm-rotten-tomatoes.yaml] [--batch 32] [--length 64] [--rank R] [--repeats 7]
               [--gemm-replay yes|no]
    kernels    [--batch 32] [--length 64] [--repeats 7]
    vgg-train  [--manifest Scripts/bench/vgg-fashion-mnist-convlora.yaml] [--batch 64] [--repeats 7]
  """
let commands: [String: (Options) throws -> Void] = [
  "forward": benchmarkForward, "bert-train": benchmarkBertTraining,
  "bert-eval": benchmarkBertInference, "vgg-train": benchmarkVGGTraining,
  "kernels": benchmarkKernels,
]
let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first, let command = commands[name] else {
  print(usage)
  exit(2)
}
do {
  let options = try Options(Array(arguments.dropFirst()))
  BLAS.setThreadCount(try options.integer("threads", 2))
  try command(options)
} catch {
  print("surgeon-bench: error: \(error)")
  exit(1)
}

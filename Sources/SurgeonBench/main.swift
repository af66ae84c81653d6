import Foundation
import Tensor

// surgeon-bench: the Swift side of Scripts/bench.sh. Each subcommand prints a human summary and,
// as its last line, one JSON object.
Memory.keepFreedBuffersMapped()
let usage = """
  Usage: surgeon-bench COMMAND [--name value ...]   (every command: --threads 2)
    forward    [--checkpoint DIR] [--batch 32] [--length 64] [--repeats 7]
    bert-train [--manifest manifests/minilm-config-b.yaml] [--batch 32] [--length 64] [--rank R] [--repeats 5]
    bert-eval  [--manifest manifests/minilm-rotten-tomatoes.yaml] [--batch 32] [--length 64] [--rank R] [--repeats 7]
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

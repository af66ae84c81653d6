import Datasets
import Foundation
import Models
import Plumbing
import Tensor

/// surgeon's command line: argument parsing and printing only; the work is in the libraries.
let version = BuildIdentity.releaseVersion

let overview = """
  surgeon \(version): declarative model surgery for BERT and VGG (LoRA adapters that can replace
  the frozen weights they wrap).

  Usage: surgeon <command> [options]

  Commands:
    apply      rewrite, train, evaluate, compress and report as a manifest says
    export     the W-free model of a checkpoint, or (--merge) a plain one transformers loads
    predict    classify a CSV/TSV/JSONL of texts or IDX images; JSON lines or CSV out
    compare    run a manifest over methods × ranks × learning rates × seeds; table and figures
    validate   check manifests (syntax, schema, selectors against the model, data files)
    plan       what a manifest's rules select and do, node by node, from headers only; --lock
    summary    per-node trainable/frozen parameter counts of a manifest, checkpoint or preset
    schema     the JSON Schema of the manifest format
    forward    run a checkpoint on inputs from a safetensors file (outputs, loss, gradients)
    tokenize   WordPiece ids of JSON strings read line by line from standard input

  Options:
    --version  print the version (with the executable's CRC-32), the BLAS core and the CPU's
               features
    --blas-core-choice
               print the OpenBLAS core surgeon runs on here (for OPENBLAS_CORETYPE)
    --help     print this help (`surgeon <command> --help` for a command's)
  """

func printError(_ message: String) {
  writeStandardError(message + "\n")
}

/// Writes to standard error with write(2): on a full disk or a closed pipe the text is lost
/// instead of the process trapping, as `FileHandle.write` would.
func writeStandardError(_ text: String) {
  let bytes = Array(text.utf8)
  var offset = 0
  while offset < bytes.count {
    let written = bytes.withUnsafeBytes {
      write(2, $0.baseAddress! + offset, $0.count - offset)
    }
    if written < 0 && errno == EINTR { continue }
    guard written > 0 else { return }
    offset += written
  }
}

/// Runs one subcommand; returns the exit status.
func run(_ arguments: [String]) -> Int32 {
  guard let command = arguments.first else {
    print(overview)
    return 2
  }
  let rest = Array(arguments.dropFirst())
  let commands: [String: Command.Type] = [
    "summary": SummaryCommand.self, "forward": ForwardCommand.self,
    "tokenize": TokenizeCommand.self, "validate": ValidateCommand.self,
    "schema": SchemaCommand.self, "apply": ApplyCommand.self,
    "export": ExportCommand.self, "compare": CompareCommand.self, "plan": PlanCommand.self,
    "predict": PredictCommand.self,
  ]
  switch command {
  case "--version", "version":
    print("surgeon \(BuildIdentity.current.description)")
    print(BLASCore.description(environment: ProcessInfo.processInfo.environment))
    return 0
  case "--check-vector-kernels":
    // For the test command: both builds of surgeon's vector loops, compared bit for bit in this
    // (release) binary.
    guard let differing = VectorKernelAgreement.differences() else {
      print("vector kernels: this CPU cannot run the AVX2 build; nothing to compare")
      return 0
    }
    if differing.isEmpty {
      print("vector kernels: the baseline and AVX2 builds agree bit for bit")
      return 0
    }
    print("vector kernels: the builds differ in \(differing.joined(separator: ", "))")
    return 1
  case "--blas-core-choice":
    print(BLASCore.loadedCore)
    return 0
  case "--help", "-h", "help":
    print(overview)
    return 0
  default:
    guard let type = commands[command] else {
      let suggestion =
        closestName(to: command, in: commands.keys.sorted()).map { " (did you mean '\($0)'?)" }
        ?? ""
      printError("surgeon: error: unknown command '\(command)'\(suggestion)\n\n\(overview)")
      return 2
    }
    if rest.contains("--help") || rest.contains("-h") {
      print(type.usage)
      return 0
    }
    do {
      try type.run(rest)
      return 0
    } catch let error as UsageError {
      printError("surgeon \(command): error: \(error.message)\n\n\(type.usage)")
      return 2
    } catch let error as CommandError {
      printError(error.message)
      return 1
    } catch let status as ExitStatus {
      return status.code
    } catch let error as UserError {
      // It names its own file; a "surgeon COMMAND: error:" before it would be a second prefix.
      printError(error.description)
      return 1
    } catch {
      printError("surgeon \(command): error: \(error)")
      return 1
    }
  }
}

/// A subcommand: its usage text and what it does.
protocol Command {
  static var usage: String { get }
  static func run(_ arguments: [String]) throws
}

/// Before any work: when OpenBLAS picked kernels below what this CPU runs, re-executes once with
/// `OPENBLAS_CORETYPE` set (OpenBLAS reads it only when it loads).
func correctBLASCore() {
  let environment = ProcessInfo.processInfo.environment
  guard case .switchCore(let from, let to)? = BLASCore.startupDecision(environment: environment)
  else { return }
  setenv("OPENBLAS_CORETYPE", to, 1)
  setenv(BLASCore.correctedFromVariable, from, 1)
  var arguments = CommandLine.arguments.map { strdup($0) } + [nil]
  execv("/proc/self/exe", &arguments)
  // Still here: the exec failed; run on OpenBLAS's pick rather than not at all.
  printError("surgeon: warning: could not re-run with OPENBLAS_CORETYPE=\(to): errno \(errno)")
  unsetenv("OPENBLAS_CORETYPE")
  unsetenv(BLASCore.correctedFromVariable)
}

correctBLASCore()
// A misspelt SURGEON_CONV is an error, not a silent fall back to the measured rule.
do {
  ConvolutionBackend.forced = try ConvolutionBackend.fromEnvironment()
} catch {
  printError("surgeon: error: \(error)")
  exit(2)
}
// So is a SURGEON_VECTOR_KERNELS this CPU cannot run or that names no build.
if case .failure(let error) = VectorKernelChoice.checkedSetting() {
  printError("surgeon: error: \(error)")
  exit(2)
}
Memory.keepFreedBuffersMapped()
// Two cores: the thread pool is sized deliberately (SURGEON_THREADS overrides); the processes
// mpirun starts on one host share its cores.
let processesHere = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap {
  Int($0)
}
BLAS.setThreadCount(
  ProcessInfo.processInfo.environment["SURGEON_THREADS"].flatMap { Int($0) }
    ?? max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, processesHere ?? 1)))
exit(run(Array(CommandLine.arguments.dropFirst())))

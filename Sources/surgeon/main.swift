import Foundation
import Models
import Tensor

/// surgeon's command line: argument parsing and printing only; the work is in the libraries.
let version = "0.1.0"

let overview = """
  surgeon \(version): declarative model surgery for BERT and VGG (LoRA adapters that can replace
  the frozen weights they wrap).

  Usage: surgeon <command> [options]

  Commands:
    apply      rewrite, train, evaluate, compress and report as a manifest says
    export     the W-free model of a checkpoint surgeon wrote
    compare    run a manifest over methods × ranks × learning rates × seeds; table and figures
    validate   check manifests (syntax, schema, selectors against the model, data files)
    summary    per-node trainable/frozen parameter counts of a manifest, checkpoint or preset
    schema     the JSON Schema of the manifest format
    forward    run a checkpoint on inputs from a safetensors file (outputs, loss, gradients)
    tokenize   WordPiece ids of JSON strings read line by line from standard input

  Options:
    --version  print the version
    --help     print this help (`surgeon <command> --help` for a command's)
  """

func printError(_ message: String) {
  FileHandle.standardError.write(Data((message + "\n").utf8))
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
    "export": ExportCommand.self, "compare": CompareCommand.self,
  ]
  switch command {
  case "--version", "version":
    print("surgeon \(version)")
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

// Only the commands that run models relaunch (one exec, before any BLAS call).
if ["apply", "forward"].contains(CommandLine.arguments.dropFirst().first ?? "") {
  BLAS.relaunchWithSleepingIdleWorkers()
}
// Two cores: the BLAS pool is sized deliberately (SURGEON_THREADS overrides).
BLAS.setThreadCount(
  ProcessInfo.processInfo.environment["SURGEON_THREADS"].flatMap { Int($0) }
    ?? ProcessInfo.processInfo.activeProcessorCount)
exit(run(Array(CommandLine.arguments.dropFirst())))

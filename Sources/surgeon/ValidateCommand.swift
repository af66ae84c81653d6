import Foundation
import Manifest
import Surgery

enum ValidateCommand: Command {
  static let usage = """
    Usage: surgeon validate FILE... [--format text|github|json] [--no-model] [--strict]
                                   [--update-lock]

    Checks manifests: YAML syntax, every key and value of the format, every selector resolved
    against the model's graph (config.json or a preset is enough; no weights are read), the
    adapter ranks, and that data files exist (a missing data file is a warning here, since CI
    machines rarely hold the data; surgeon apply stops on it). A checkpoint that another of the
    given manifests writes is checked as that manifest's model. A checkpoint's weights are
    never read: config.json and the safetensors header give every shape. When NAME.lock.json
    sits beside NAME.yaml (surgeon plan NAME.yaml --lock), the resolved plan must match it, and
    the counts must meet the manifest's expect: block. Errors and warnings name file:line:col.

    Options:
      --format F   text (default: file:line:col: error: …), github (::error annotations), json
      --no-model   skip everything that needs the model (selectors, ranks, checkpoint files)
      --strict     warnings are errors (and are printed as errors)
      --update-lock  rewrite the lock files of the given manifests to the current plan

    Exit status: 0 valid, 1 invalid, 2 usage error.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments, options: ["format"], flags: ["no-model", "strict", "update-lock"])
    if parsed.flag("no-model") && parsed.flag("update-lock") {
      throw UsageError(message: "--update-lock needs the model; drop --no-model")
    }
    guard !parsed.positionals.isEmpty else { throw UsageError(message: "give at least one FILE") }
    let formatName = parsed.value("format") ?? "text"
    guard let format = DiagnosticFormat(rawValue: formatName) else {
      throw UsageError(message: "--format must be text, github or json, not '\(formatName)'")
    }
    let decoded = parsed.positionals.map { ($0, ManifestDecoder.decode(contentsOf: $0)) }
    var producers = ManifestCheck.producers(near: parsed.positionals)
    for (_, (manifest, _)) in decoded {
      if let manifest {
        producers[ModelResolver.normalized(manifest.output.directory.value)] = manifest
      }
    }
    var all: [Diagnostic] = []
    for (_, (manifest, diagnostics)) in decoded {
      all += diagnostics
      if let manifest {
        all += ManifestCheck.diagnostics(
          for: manifest, resolvesModel: !parsed.flag("no-model"), producers: producers,
          updatesLock: parsed.flag("update-lock"))
      }
    }
    if parsed.flag("strict") {
      // Promoted, they are errors in every format (GitHub shows ::error, not ::warning).
      all = all.map { diagnostic in
        var promoted = diagnostic
        promoted.severity = .error
        return promoted
      }
    }
    let rendered = render(all, as: format)
    if format == .json {
      print(rendered)
    } else if !rendered.isEmpty {
      printError(rendered)
    }
    if all.contains(where: { $0.severity == .error }) {
      throw ExitStatus(code: 1)
    }
    if format == .text {
      let files = parsed.positionals.count
      print("\(files) manifest\(files == 1 ? "" : "s") valid")
    }
  }
}

/// Ends the command with an exit status and nothing more to print.
struct ExitStatus: Error {
  var code: Int32
}

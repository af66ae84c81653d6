import Foundation
import Manifest
import Surgery

enum ValidateCommand: Command {
  static let usage = """
    Usage: surgeon validate FILE... [--format text|github|json] [--no-model]

    Checks manifests: YAML syntax, every key and value of the format, every selector resolved
    against the model's graph (config.json or a preset is enough; no weights are read), the
    adapter ranks, and that data files exist. Errors and warnings name file:line:col.

    Options:
      --format F   text (default: file:line:col: error: …), github (::error annotations), json
      --no-model   skip everything that needs the model (selectors, ranks, checkpoint files)

    Exit status: 0 valid, 1 invalid, 2 usage error.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: ["format"], flags: ["no-model"])
    guard !parsed.positionals.isEmpty else { throw UsageError(message: "give at least one FILE") }
    let formatName = parsed.value("format") ?? "text"
    guard let format = DiagnosticFormat(rawValue: formatName) else {
      throw UsageError(message: "--format must be text, github or json, not '\(formatName)'")
    }
    var all: [Diagnostic] = []
    for path in parsed.positionals {
      all += ManifestCheck.diagnostics(
        forFile: path, resolvesModel: !parsed.flag("no-model"))
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

/// The checks `validate` runs, shared with `summary MANIFEST`.
enum ManifestCheck {
  static let workingDirectory = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)

  static func diagnostics(forFile path: String, resolvesModel: Bool) -> [Diagnostic] {
    let (manifest, diagnostics) = ManifestDecoder.decode(contentsOf: path)
    guard let manifest else { return diagnostics }
    var result = diagnostics
    result += ManifestFiles.missingDataFiles(manifest, relativeTo: workingDirectory.path)
    if resolvesModel {
      result += rewrite(manifest).diagnostics
    }
    return result.sorted {
      ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column)
    }
  }

  /// The manifest's surgery on its model with zero weights (shapes and counts only).
  static func rewrite(_ manifest: Manifest) -> (rewrite: Rewrite?, diagnostics: [Diagnostic]) {
    let (resolved, resolveDiagnostics) = ModelResolver.resolve(
      manifest.model, needsWeights: false, workingDirectory: workingDirectory)
    guard let resolved else { return (nil, resolveDiagnostics) }
    let (rewrite, rewriteDiagnostics) = Rewriter.apply(
      manifest, to: resolved, initializes: false)
    return (rewrite, resolveDiagnostics + rewriteDiagnostics)
  }
}

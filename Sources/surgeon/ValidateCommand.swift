import Foundation
import Manifest
import Surgery

enum ValidateCommand: Command {
  static let usage = """
    Usage: surgeon validate FILE... [--format text|github|json] [--no-model] [--strict]

    Checks manifests: YAML syntax, every key and value of the format, every selector resolved
    against the model's graph (config.json or a preset is enough; no weights are read), the
    adapter ranks, and that data files exist (a missing data file is a warning here, since CI
    machines rarely hold the data; surgeon apply stops on it). A checkpoint that another of the
    given manifests writes is checked as that manifest's model. Errors and warnings name
    file:line:col.

    Options:
      --format F   text (default: file:line:col: error: …), github (::error annotations), json
      --no-model   skip everything that needs the model (selectors, ranks, checkpoint files)
      --strict     warnings fail validation too

    Exit status: 0 valid, 1 invalid, 2 usage error.
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: ["format"], flags: ["no-model", "strict"])
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
          for: manifest, resolvesModel: !parsed.flag("no-model"), producers: producers)
      }
    }
    let rendered = render(all, as: format)
    if format == .json {
      print(rendered)
    } else if !rendered.isEmpty {
      printError(rendered)
    }
    if all.contains(where: { $0.severity == .error || parsed.flag("strict") }) {
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

  /// The manifests beside `paths` (same directories) by the output directory each writes, so
  /// a stage-2 manifest resolves its not-yet-written checkpoint as its stage 1's model.
  static func producers(near paths: [String]) -> [String: Manifest] {
    var result: [String: Manifest] = [:]
    // Directories as the user wrote them, so messages name files the way they do.
    let directories = Set(paths.map { ($0 as NSString).deletingLastPathComponent })
    for directory in directories.sorted() {
      let names =
        (try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory))
        ?? []
      for name in names.sorted() where name.hasSuffix(".yaml") || name.hasSuffix(".yml") {
        let path = directory.isEmpty ? name : directory + "/" + name
        if let manifest = ManifestDecoder.decode(contentsOf: path).manifest {
          result[ModelResolver.normalized(manifest.output.directory.value)] = manifest
        }
      }
    }
    return result
  }

  /// The checks beyond decoding: data files (warnings here) and, with `resolvesModel`, the
  /// surgery on the model's graph.
  static func diagnostics(
    for manifest: Manifest, resolvesModel: Bool, producers: [String: Manifest] = [:]
  ) -> [Diagnostic] {
    var result = ManifestFiles.missingDataFiles(manifest, relativeTo: workingDirectory.path).map {
      missing in
      var warning = missing
      warning.severity = .warning
      warning.fix = (missing.fix.map { $0 + " " } ?? "") + "(surgeon apply stops here)"
      return warning
    }
    if resolvesModel {
      result += rewrite(manifest, producers: producers).diagnostics
    }
    return result.sorted {
      ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column)
    }
  }

  /// The manifest's surgery on its model with zero weights (shapes and counts only).
  static func rewrite(_ manifest: Manifest, producers: [String: Manifest] = [:]) -> (
    rewrite: Rewrite?, diagnostics: [Diagnostic]
  ) {
    let (resolved, resolveDiagnostics) = ModelResolver.resolve(
      manifest.model, needsWeights: false, workingDirectory: workingDirectory,
      producers: producers)
    guard let resolved else { return (nil, resolveDiagnostics) }
    let (rewrite, rewriteDiagnostics) = Rewriter.apply(
      manifest, to: resolved, initializes: false)
    return (rewrite, resolveDiagnostics + rewriteDiagnostics)
  }
}

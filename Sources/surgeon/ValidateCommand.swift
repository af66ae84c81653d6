import Foundation
import Manifest
import Plumbing
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
    for manifest: Manifest, resolvesModel: Bool, producers: [String: Manifest] = [:],
    updatesLock: Bool = false
  ) -> [Diagnostic] {
    var result = ManifestFiles.missingDataFiles(manifest, relativeTo: workingDirectory.path).map {
      missing in
      var warning = missing
      warning.severity = .warning
      warning.fix = (missing.fix.map { $0 + " " } ?? "") + "(surgeon apply stops here)"
      return warning
    }
    if resolvesModel {
      let checked = rewrite(manifest, producers: producers)
      result += checked.diagnostics
      if let plan = checked.rewrite {
        result += review(
          manifest, plan, ranksDecided: false, lock: updatesLock ? .update : .check)
      }
    }
    return result.sorted {
      ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column)
    }
  }

  /// What happens with the manifest's lock file.
  enum LockMode {
    /// Compare the plan with the lock when there is one.
    case check
    /// Write the plan as the lock.
    case update
    /// Neither (a process that is not the one writing it).
    case skip
  }

  /// The plan against the manifest's `expect:` block and its lock file; a failed lock write is
  /// an error.
  static func review(
    _ manifest: Manifest, _ plan: Rewrite, ranksDecided: Bool, lock mode: LockMode
  ) -> [Diagnostic] {
    var result = PlanReview.expectationDiagnostics(manifest, plan, ranksDecided: ranksDecided)
    let lockPath = ScopeLock.path(forManifest: manifest.file)
    let current = ScopeLock(plan, manifest: manifest)
    let start = SourceLocation(file: manifest.file, line: 1, column: 1)
    if mode == .skip { return result }
    if mode == .update {
      if let problem = write(current, to: lockPath) {
        result.append(Diagnostic(location: start, severity: .error, message: problem))
      }
      return result
    }
    guard FileManager.default.fileExists(atPath: lockPath) else { return result }
    do throws(ScopeLockError) {
      let locked = try ScopeLock.read(lockPath)
      result += locked.drift(
        to: current, rules: plan.rules, manifest: manifest, lockPath: lockPath)
    } catch {
      result.append(
        Diagnostic(location: start, severity: .error, message: error.message, fix: error.fix))
    }
    return result
  }

  /// Writes a lock file; nil, or what went wrong.
  static func write(_ lock: ScopeLock, to path: String) -> String? {
    do {
      try DurableFile.write(Data(lock.json().utf8), to: URL(fileURLWithPath: path))
      return nil
    } catch {
      return "cannot write \(path): \(error.localizedDescription)"
    }
  }

  /// The manifest's surgery on its model with zero weights (shapes and counts only).
  static func rewrite(_ manifest: Manifest, producers: [String: Manifest] = [:]) -> (
    rewrite: Rewrite?, diagnostics: [Diagnostic]
  ) {
    let (result, diagnostics) = ManifestRewrite.resolveAndRewrite(
      manifest, weights: false, workingDirectory: workingDirectory, producers: producers)
    return (result?.rewrite, diagnostics)
  }
}

import Foundation
import Manifest
import Plumbing

/// The checks `validate` runs on a manifest beyond decoding (data files, the surgery on the
/// model's graph, `expect:` and the lock), shared with `apply`, `plan` and
/// `summary MANIFEST`.
public enum ManifestCheck {
  public static let workingDirectory = URL(
    fileURLWithPath: FileManager.default.currentDirectoryPath)

  /// The manifests beside `paths` (same directories) by the output directory each writes, so
  /// a stage-2 manifest resolves its not-yet-written checkpoint as its stage 1's model.
  public static func producers(near paths: [String]) -> [String: Manifest] {
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
  public static func diagnostics(
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
  public enum LockMode {
    /// Compare the plan with the lock when there is one.
    case check
    /// Write the plan as the lock.
    case update
    /// Neither (a process that is not the one writing it).
    case skip
  }

  /// The plan against the manifest's `expect:` block and its lock file; a failed lock write is
  /// an error.
  public static func review(
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
  public static func write(_ lock: ScopeLock, to path: String) -> String? {
    do {
      try DurableFile.write(Data(lock.json().utf8), to: URL(fileURLWithPath: path))
      return nil
    } catch {
      return "cannot write \(path): \(error.localizedDescription)"
    }
  }

  /// The manifest's surgery on its model with zero weights (shapes and counts only).
  public static func rewrite(_ manifest: Manifest, producers: [String: Manifest] = [:]) -> (
    rewrite: Rewrite?, diagnostics: [Diagnostic]
  ) {
    let (result, diagnostics) = ManifestRewrite.resolveAndRewrite(
      manifest, weights: false, workingDirectory: workingDirectory, producers: producers)
    return (result?.rewrite, diagnostics)
  }
}

import Foundation

/// Checks of a decoded manifest against the file system, kept apart from decoding so that a
/// manifest can be validated on a machine that does not hold its data.
public enum ManifestFiles {
  /// An error for every data file (train and test; table path, or IDX images and labels) that
  /// does not exist as a file; relative paths resolve against `directory`.
  public static func missingDataFiles(_ manifest: Manifest, relativeTo directory: String)
    -> [Diagnostic]
  {
    guard let data = manifest.train?.data else { return [] }
    var diagnostics: [Diagnostic] = []
    var files: [(key: String, path: String, location: SourceLocation)] = []
    for case (let key, let source?) in [
      ("train.data.train", data.train), ("train.data.test", data.test),
    ] {
      files += source.value.paths.map { (key, $0, source.location) }
    }
    if let unlabeled = manifest.train?.distill?.unlabeled {
      files.append(("train.distill.unlabeled", unlabeled.path.value, unlabeled.path.location))
    }
    if let thesaurus = manifest.train?.distill?.augment?.thesaurus {
      files.append(("train.distill.augment.thesaurus", thesaurus.value, thesaurus.location))
    }
    for (key, path, location) in files {
      let resolved =
        path.hasPrefix("/")
        ? path : URL(fileURLWithPath: directory).appendingPathComponent(path).path
      var isDirectory: ObjCBool = false
      let exists = FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory)
      guard !exists || isDirectory.boolValue else { continue }
      let problem = exists ? "is a directory, not a file" : "does not exist"
      diagnostics.append(
        Diagnostic(
          location: location, severity: .error,
          message: "\(key): data file '\(path)' \(problem)",
          fix: "put the file there or fix the path"))
    }
    return diagnostics
  }
}

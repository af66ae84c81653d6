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
    let sources = [("train.data.train", data.train), ("train.data.test", data.test)]
    for case (let key, let source?) in sources {
      for path in source.value.paths {
        let resolved =
          path.hasPrefix("/")
          ? path : URL(fileURLWithPath: directory).appendingPathComponent(path).path
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory)
        guard !exists || isDirectory.boolValue else { continue }
        let problem = exists ? "is a directory, not a file" : "does not exist"
        diagnostics.append(
          Diagnostic(
            location: source.location, severity: .error,
            message: "\(key): data file '\(path)' \(problem)",
            fix: "put the file there or fix the path"))
      }
    }
    return diagnostics
  }
}

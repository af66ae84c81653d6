import Foundation
import Manifest
import Plumbing
import Surgery

/// The files a run reads and did not write — the model's and the teacher's checkpoint files,
/// the data tables or image files, the thesaurus — each with its fingerprint, so results.json
/// names exactly what a result came from (`inputs`; docs/manifest.md). A sweep's records keep
/// them, and `surgeon compare` refuses to mix records of one base checkpoint with runs of
/// another.
public enum RunInputs {
  /// The files of a checkpoint directory that a load reads (whichever exist).
  static let checkpointFiles = [
    "config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt",
  ]

  /// The input files `manifest` names, as it names them (relative paths stay relative to the
  /// working directory; `hf://ORG/NAME` becomes its local directory), in a stable order,
  /// without duplicates. Checkpoint directories are listed by the files a load reads, whether
  /// or not they exist.
  public static func paths(of manifest: Manifest) -> [String] {
    var paths: [String] = []
    func checkpoint(_ directory: String) {
      let local =
        directory.hasPrefix("hf://")
        ? ModelResolver.localDirectory(forHub: String(directory.dropFirst("hf://".count)))
        : directory
      let trimmed = local.hasSuffix("/") ? String(local.dropLast()) : local
      paths += checkpointFiles.map { trimmed + "/" + $0 }
    }
    if case .checkpoint(let directory) = manifest.model.source.value { checkpoint(directory) }
    if let train = manifest.train {
      paths += train.data.train.value.paths
      if let test = train.data.test { paths += test.value.paths }
      if let distill = train.distill {
        checkpoint(distill.teacher.value)
        if let thesaurus = distill.augment?.thesaurus { paths.append(thesaurus.value) }
        if let unlabeled = distill.unlabeled { paths.append(unlabeled.path.value) }
      }
    }
    var seen: Set<String> = []
    return paths.filter { seen.insert($0).inserted }
  }

  /// The fingerprint of every input file of `manifest` that exists, by its path as
  /// `paths(of:)` names it.
  public static func fingerprints(of manifest: Manifest, workingDirectory: URL) -> [String:
    FileFingerprint]
  {
    var fingerprints: [String: FileFingerprint] = [:]
    for path in paths(of: manifest) {
      let url = URL(fileURLWithPath: path, relativeTo: workingDirectory)
      if let fingerprint = FileFingerprint.of(path: url.path) { fingerprints[path] = fingerprint }
    }
    return fingerprints
  }
}

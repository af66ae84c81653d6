import Foundation
import Manifest
import Plumbing
import Training
import XCTest

/// Which files a run names as its inputs (results.json's `inputs`).
final class RunInputsTests: XCTestCase {
  private func decode(_ text: String) throws -> Manifest {
    let (manifest, diagnostics) = ManifestDecoder.decode(text: text, file: "run.yaml")
    return try XCTUnwrap(manifest, "\(diagnostics)")
  }

  /// The model's and the teacher's checkpoint files (a hub name as its local directory), the
  /// training and test data, the thesaurus and the unlabeled texts, each once, in that order.
  func testEveryFileTheManifestReadsIsNamedOnce() throws {
    let manifest = try decode(
      """
      surgeon: 1
      name: inputs
      model: {family: bert, checkpoint: "hf://org/student", head: {classes: 2}}
      surgery:
        - lora: {layers: [query], rank: 2, decay: {start: 0.1, end: 0.6}}
      train:
        task: text-classification
        data:
          train: {format: csv, path: data/train.csv, text: text, label: label}
          test: {format: csv, path: data/train.csv, text: text, label: label}
        steps: 4
        distill:
          teacher: runs/teacher/
          augment: {edits: [synonym], thesaurus: data/roget.csv}
          unlabeled: {format: csv, path: /srv/plots.csv, text: text}
      output: {dir: out}
      """)
    let checkpoint = ["config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt"]
    XCTAssertEqual(
      RunInputs.paths(of: manifest),
      checkpoint.map { "checkpoints/hf/org/student/" + $0 } + ["data/train.csv"]
        + checkpoint.map { "runs/teacher/" + $0 } + ["data/roget.csv", "/srv/plots.csv"])

    let images = try decode(
      """
      surgeon: 1
      name: images
      model: {family: vgg, preset: vgg11, weights: random}
      surgery: []
      train:
        task: image-classification
        data:
          train: {format: idx, images: train-images.gz, labels: train-labels.gz}
        steps: 4
      output: {dir: out}
      """)
    XCTAssertEqual(RunInputs.paths(of: images), ["train-images.gz", "train-labels.gz"])
  }

  /// Fingerprints are taken of the files that exist, relative paths inside the working
  /// directory, keyed by the path as the manifest names it.
  func testFingerprintsAreOfTheFilesThatExist() throws {
    let workspace = FileManager.default.temporaryDirectory.appendingPathComponent(
      "run-inputs-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(
      at: workspace.appendingPathComponent("data"), withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: workspace) }
    try Data("123456789".utf8).write(to: workspace.appendingPathComponent("data/train.csv"))
    let manifest = try decode(
      """
      surgeon: 1
      name: inputs
      model: {family: bert, checkpoint: base, head: {classes: 2}}
      surgery: []
      train:
        task: text-classification
        data:
          train: {format: csv, path: data/train.csv, text: text, label: label}
        steps: 4
      output: {dir: out}
      """)
    XCTAssertEqual(
      RunInputs.fingerprints(of: manifest, workingDirectory: workspace),
      ["data/train.csv": FileFingerprint(crc32: "cbf43926", bytes: 9)])
  }
}

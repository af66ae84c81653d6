import Foundation
import Manifest
import XCTest

/// The test target's fixture files.
enum Fixtures {
  static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)

  static func url(_ path: String) throws -> URL {
    try XCTUnwrap(root, "the Fixtures resource is missing").appendingPathComponent(path)
  }

  static func text(_ path: String) throws -> String {
    try String(contentsOf: url(path), encoding: .utf8)
  }
}

/// Decodes `yaml` as the file "m.yaml".
func decode(_ yaml: String, file: String = "m.yaml") -> (
  manifest: Manifest?, diagnostics: [Diagnostic]
) {
  ManifestDecoder.decode(text: yaml, file: file)
}

/// The diagnostics of `yaml` as "LINE:COL: severity: message; fix", without the file name.
func problems(_ yaml: String) -> [String] {
  decode(yaml).diagnostics.map { $0.text.replacingOccurrences(of: "m.yaml:", with: "") }
}

/// The manifest of `yaml`, failing the test (with the diagnostics) when it does not decode.
func valid(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) throws -> Manifest {
  let result = decode(yaml)
  let errors = result.diagnostics.filter { $0.severity == .error }
  XCTAssertEqual(errors.map(\.text), [], file: file, line: line)
  return try XCTUnwrap(result.manifest, "no manifest", file: file, line: line)
}

/// A valid manifest head (format, name, a random-weights preset) that cases append to.
let modelHead = """
  surgeon: 1
  name: t
  model:
    family: bert
    preset: bert-tiny
    weights: random

  """

/// `modelHead` plus one lora rule with the given body lines (indented under `lora:`).
func loraManifest(_ body: String) -> String {
  let indented = body.split(separator: "\n", omittingEmptySubsequences: false).map {
    $0.isEmpty ? "" : "      " + $0
  }.joined(separator: "\n")
  return modelHead + "surgery:\n  - lora:\n" + indented + "\n"
}

/// `modelHead` plus a text-classification train section; `extra` lines go under `train:`.
func trainManifest(_ extra: String = "", data: String = "") -> String {
  modelHead + """
    train:
      task: text-classification
      data:
        train: {format: csv, path: data/train.csv, text: text, label: label}
    \(data)  steps: 100
    \(extra)
    """
}

/// The first lora rule of a manifest.
func firstLoRA(_ manifest: Manifest, file: StaticString = #filePath, line: UInt = #line) throws
  -> LoRARule
{
  guard case .lora(let rule)? = manifest.surgery.first else {
    XCTFail("the first rule is not lora", file: file, line: line)
    throw XCTSkip("no lora rule")
  }
  return rule
}

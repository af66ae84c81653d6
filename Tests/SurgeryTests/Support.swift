import Foundation
import Manifest
import Models
import Surgery
import XCTest

/// Decodes an inline manifest, resolves its model and applies its surgery; fails the test on any
/// error diagnostic.
func rewrite(
  _ text: String, initializes: Bool = false, file: StaticString = #filePath, line: UInt = #line
) throws -> Rewrite {
  let (manifest, decodeDiagnostics) = ManifestDecoder.decode(text: text, file: "test.yaml")
  guard let manifest else {
    XCTFail(render(decodeDiagnostics, as: .text), file: file, line: line)
    throw XCTSkip("manifest did not decode")
  }
  let (resolved, resolveDiagnostics) = ModelResolver.resolve(
    manifest.model, needsWeights: initializes,
    workingDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
  guard let resolved else {
    XCTFail(render(resolveDiagnostics, as: .text), file: file, line: line)
    throw XCTSkip("model did not resolve")
  }
  let (result, diagnostics) = Rewriter.apply(manifest, to: resolved, initializes: initializes)
  guard let result else {
    XCTFail(render(diagnostics, as: .text), file: file, line: line)
    throw XCTSkip("surgery failed")
  }
  return result
}

/// The error diagnostics of an inline manifest's surgery, as text.
func surgeryErrors(_ text: String) -> [String] {
  let (manifest, decodeDiagnostics) = ManifestDecoder.decode(text: text, file: "test.yaml")
  guard let manifest else { return decodeDiagnostics.map(\.text) }
  let (resolved, resolveDiagnostics) = ModelResolver.resolve(
    manifest.model, needsWeights: false,
    workingDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
  guard let resolved else { return resolveDiagnostics.filter { $0.severity == .error }.map(\.text) }
  let (_, diagnostics) = Rewriter.apply(manifest, to: resolved, initializes: false)
  return diagnostics.filter { $0.severity == .error }.map(\.text)
}

/// A manifest header for a preset with random weights.
func header(_ preset: String, family: String, head: Int? = nil) -> String {
  """
  surgeon: 1
  name: test
  model:
    family: \(family)
    preset: \(preset)
    weights: random
  \(head.map { "  head: {classes: \($0)}" } ?? "")
  surgery:

  """
}

import Foundation
import Manifest

/// The manifest parser (libyaml events → node tree) and the decoder (every key of docs/manifest.md):
/// any byte string must give a manifest or diagnostics, never a trap; a rejected input must say
/// why.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = Array(bytes(data, size))
  let (manifest, diagnostics) = ManifestDecoder.decode(bytes: input, file: "fuzz.yaml")
  if manifest == nil && !diagnostics.contains(where: { $0.severity == .error }) {
    print("fuzz: a manifest was rejected without an error diagnostic")
    abort()
  }
  for diagnostic in diagnostics where diagnostic.message.isEmpty {
    print("fuzz: an empty diagnostic at \(diagnostic.location)")
    abort()
  }
  return 0
}

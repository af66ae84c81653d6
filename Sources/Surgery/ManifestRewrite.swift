import Foundation
import Manifest
import Models
import Tensor

/// A manifest's model resolved and its surgery applied: what `apply`, `validate`, `summary`,
/// `plan` and the benchmarks start from.
public struct ManifestRewrite: Sendable {
  public var manifest: Manifest
  public var resolved: ResolvedModel
  public var rewrite: Rewrite
  /// A rule has `init: svd_whitened`: its adapters are left at zero until `calibrated(with:)`
  /// starts them from the training data's input moments.
  public var needsCalibration: Bool

  /// Resolves the manifest's model (reading the weights when `weights`), then applies its
  /// surgery, initialising the adapters when the weights are read and no rule waits for a
  /// calibration.
  public static func resolveAndRewrite(
    _ manifest: Manifest, weights: Bool, workingDirectory: URL,
    producers: [String: Manifest] = [:]
  ) -> (ManifestRewrite?, [Diagnostic]) {
    let (resolved, resolveDiagnostics) = ModelResolver.resolve(
      manifest.model, needsWeights: weights, workingDirectory: workingDirectory,
      producers: producers)
    guard let resolved else { return (nil, resolveDiagnostics) }
    // init svd_whitened needs the training data before the adapters can start: the rewrite
    // first runs without weights for its diagnostics, and again once the data is calibrated.
    let needsCalibration = manifest.surgery.contains {
      if case .lora(let rule) = $0 { return rule.calibration != nil }
      return false
    }
    let (rewrite, rewriteDiagnostics) = Rewriter.apply(
      manifest, to: resolved, initializes: weights && !needsCalibration)
    let diagnostics = resolveDiagnostics + rewriteDiagnostics
    guard let rewrite else { return (nil, diagnostics) }
    return (
      ManifestRewrite(
        manifest: manifest, resolved: resolved, rewrite: rewrite,
        needsCalibration: needsCalibration),
      diagnostics
    )
  }

  /// The wrapped nodes whose rule asks for a calibration, with that rule's `batches` and the
  /// position of its `calibration` key (each node's adapter comes from the rule that decided it).
  public var calibrationRequests: [String: (batches: Int, location: SourceLocation)] {
    var result: [String: (batches: Int, location: SourceLocation)] = [:]
    for action in rewrite.actions where action.kind == .wrapped {
      guard let index = action.rule, manifest.surgery.indices.contains(index - 1),
        case .lora(let rule) = manifest.surgery[index - 1], let calibration = rule.calibration
      else { continue }
      result[action.node] = (calibration.batches, calibration.location)
    }
    return result
  }

  /// The rewrite again, its adapters started from `moments` (`Calibration.inputMoments` over
  /// `calibrationRequests`), then refitted where a rule says `refit: sequential`
  /// (`SequentialRefit`, over the same calibration batches: `batch(i)` is the i-th).
  public func calibrated(
    with moments: [String: InputMoments], batch: (Int) throws -> Batch
  ) -> (Rewrite?, [Diagnostic]) {
    let (whitened, diagnostics) = Rewriter.apply(
      manifest, to: resolved, initializes: true, calibration: moments)
    guard let whitened, whitened.whitened.values.contains(where: { $0.refit == .sequential })
    else { return (whitened, diagnostics) }
    let (refitted, refitDiagnostics) = SequentialRefit.apply(
      manifest, to: resolved, start: whitened, calibration: moments, batch: batch)
    return (refitted, diagnostics + refitDiagnostics)
  }
}

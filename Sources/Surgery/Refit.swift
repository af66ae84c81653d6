import Foundation
import Manifest
import Models
import Tensor

/// `refit: sequential`: the factors of `init: svd_whitened` reproduce each layer's output from
/// the inputs the *loaded* model gives it, but once W is gone every layer reads the inputs of
/// a compressed model, whose errors add up through depth. The refit goes through the nodes in
/// forward order (`Model.forwardStages`); for each stage it runs the calibration batches
/// through the loaded model (the teacher) and through the W-free view of the model refitted so
/// far (the student), and refits each node's factors to reproduce the teacher layer's output
/// `W·x_t + b` from the student's inputs `x_s` (reduced-rank regression in closed form:
/// `WhitenedSVD(weight:covariance:crossCovariance:)`, `C = b + W·μ_t − s·B·A·μ_s`). Ranks stay
/// what the budget gave; the frozen part is still the residual, so the model starts as loaded.
///
/// The regression's ridge is chosen per node on held-out calibration batches (the last quarter
/// of the rule's batches, at least one): on a few thousand rows, a small ridge lets the map
/// amplify a faint direction of `x_s` to reproduce a strong one of `x_t`, which fits the rows it
/// saw and no others. Each ridge in `ridgeScales` (times `tr Σ_s / n`) is fitted on the other
/// batches and scored by the loaded layer's output error on the held-out ones; so are the
/// node's whitened factors, which are kept when no refit beats them. The chosen ridge is then
/// refitted on all the batches.
public enum SequentialRefit {
  /// The ridges tried, as multiples of `tr Σ_s / n`: from the whitening's own (1e-4) to one
  /// that pulls the map most of the way back to W.
  public static let ridgeScales: [Double] = [1e-4, 1e-3, 1e-2, 1e-1, 1]

  /// How many of a rule's `batches` calibration batches are held out to choose the ridge: a
  /// quarter, at least one (the rule needs at least two; the manifest checks it).
  public static func heldOutBatches(of batches: Int) -> Int {
    max(1, batches / 4)
  }

  /// Refits the nodes of `start.whitened` whose rule says `refit: sequential`, over the same
  /// calibration batches (`batch(i)`, each node its rule's `calibration.batches`). The result's
  /// `refitChoices` say, per node, which ridge was chosen (or that the whitened factors were
  /// kept) and the held-out output errors.
  public static func apply(
    _ manifest: Manifest, to resolved: ResolvedModel, start: Rewrite,
    calibration: [String: InputMoments], batch: (Int) throws -> Batch
  ) -> (Rewrite?, [Diagnostic]) {
    let refitted = Set(start.whitened.filter { $0.value.refit == .sequential }.keys)
    guard !refitted.isEmpty else { return (start, []) }
    let teacher = resolved.model
    let weights = teacher.wrappableWeightMatrices
    var current = start
    var fitted = start.whitened
    var choices: [String: RefitChoice] = [:]
    for stage in teacher.forwardStages {
      let names = stage.filter(refitted.contains)
      guard !names.isEmpty else { continue }
      func failure(_ name: String, _ message: String) -> (Rewrite?, [Diagnostic]) {
        let at = fitted[name]?.location ?? SourceLocation(file: manifest.file, line: 1, column: 1)
        return (
          nil,
          [
            Diagnostic(
              location: at, severity: .error, message: message,
              fix: "raise calibration.batches, or remove refit")
          ]
        )
      }
      let student = current.plan.exportedView
      var fitting: [String: PairedInputMoments] = [:]
      var heldOut: [String: PairedInputMoments] = [:]
      let batches = names.reduce(into: [String: Int]()) { $0[$1] = fitted[$1]?.batches ?? 0 }
      func fits(_ name: String, _ index: Int) -> Bool {
        index < batches[name, default: 0] - heldOutBatches(of: batches[name, default: 0])
      }
      do {
        for index in 0..<(batches.values.max() ?? 0) {
          let wanted = names.filter { index < batches[$0, default: 0] }
          let fitNodes = Set(wanted.filter { fits($0, index) })
          let heldNodes = Set(wanted.filter { !fits($0, index) })
          let example = try batch(index)
          if !fitNodes.isEmpty {
            try teacher.accumulatePairedInputMoments(
              of: example, student: student, nodes: fitNodes, into: &fitting)
          }
          if !heldNodes.isEmpty {
            try teacher.accumulatePairedInputMoments(
              of: example, student: student, nodes: heldNodes, into: &heldOut)
          }
        }
      } catch {
        return failure(names[0], "the refit's calibration pass failed: \(error)")
      }
      for name in names {
        guard let node = fitted[name], let weight = weights[name], let fit = fitting[name],
          let held = heldOut[name], fit.count >= 2, held.count >= 1,
          fit.width == weight.shape[1]
        else {
          return failure(name, "the calibration batches gave no paired inputs for \(name)")
        }
        do {
          let choice = try choose(
            weight: weight, rank: node.rank, whitened: node.whitening, fit: fit, heldOut: held)
          choices[name] = RefitChoice(
            node: name, ridgeScale: choice.ridgeScale,
            heldOutErrorWhitened: choice.whitenedError, heldOutError: choice.error,
            heldOutRows: held.count)
          if let whitening = choice.whitening { fitted[name]?.whitening = whitening }
        } catch {
          return failure(name, "cannot refit \(name): \(error.description)")
        }
      }
      let (next, diagnostics) = Rewriter.apply(
        manifest, to: resolved, initializes: true, calibration: calibration, fitted: fitted)
      guard var next else { return (nil, diagnostics) }
      next.refitChoices = choices
      current = next
    }
    return (current, [])
  }

  /// One node's choice: each ridge of `ridgeScales` fitted on `fit` and scored on `heldOut`
  /// against the node's `whitened` factors (relative output errors, `tr(W Σ_t Wᵀ)` of the
  /// held-out rows = 1). `whitening` is the winner refitted on all rows, nil when the whitened
  /// factors are kept.
  public static func choose(
    weight: Tensor, rank: Int, whitened: Whitening, fit: PairedInputMoments,
    heldOut: PairedInputMoments
  ) throws(WhiteningError) -> (
    ridgeScale: Double?, whitenedError: Double, error: Double, whitening: Whitening?
  ) {
    let outputs = weight.shape[0]
    let w = weight.scalars.map(Double.init)
    let variance = heldOut.teacherOutputVariance(weight: w, outputs: outputs)
    let unit = variance > 0 ? variance : 1
    let whitenedError =
      heldOut.outputError(
        weight: w, map: whitened.decomposition.map(rank: rank), outputs: outputs,
        teacherOffset: whitened.targetMean ?? whitened.mean, studentOffset: whitened.mean) / unit
    var best: (scale: Double?, error: Double) = (nil, whitenedError)
    for scale in ridgeScales {
      let candidate = try WhitenedSVD(
        weight: weight, covariance: fit.studentCovariance, crossCovariance: fit.crossCovariance,
        ridgeScale: scale)
      let error =
        heldOut.outputError(
          weight: w, map: candidate.map(rank: rank), outputs: outputs,
          teacherOffset: fit.teacherMean, studentOffset: fit.studentMean) / unit
      if error < best.error { best = (scale, error) }
    }
    guard let scale = best.scale else { return (nil, whitenedError, whitenedError, nil) }
    var all = fit
    all.merge(heldOut)
    let decomposition = try WhitenedSVD(
      weight: weight, covariance: all.studentCovariance, crossCovariance: all.crossCovariance,
      ridgeScale: scale)
    return (
      scale, whitenedError, best.error,
      Whitening(decomposition: decomposition, mean: all.studentMean, targetMean: all.teacherMean)
    )
  }
}

/// What `refit: sequential` did with one node (`results.json`'s `refit`).
public struct RefitChoice: Sendable, Codable, Equatable {
  public var node: String
  /// The ridge chosen on the held-out batches, as a multiple of `tr Σ_s / n`; nil: no refit
  /// beat the whitened factors there, and they were kept.
  public var ridgeScale: Double?
  /// The loaded layer's output error on the held-out batches, relative to its output variance
  /// there: with the whitened factors, and with what was chosen.
  public var heldOutErrorWhitened: Double
  public var heldOutError: Double
  public var heldOutRows: Int

  public init(
    node: String, ridgeScale: Double?, heldOutErrorWhitened: Double, heldOutError: Double,
    heldOutRows: Int
  ) {
    self.node = node
    self.ridgeScale = ridgeScale
    self.heldOutErrorWhitened = heldOutErrorWhitened
    self.heldOutError = heldOutError
    self.heldOutRows = heldOutRows
  }

  /// One line for the run log: how many nodes were refitted, with which ridges, and the mean
  /// held-out output error before and after; nil for no choices.
  public static func summary(of choices: [RefitChoice]) -> String? {
    guard !choices.isEmpty else { return nil }
    let refitted = choices.filter { $0.ridgeScale != nil }
    var byScale: [Double: Int] = [:]
    for choice in refitted { byScale[choice.ridgeScale!, default: 0] += 1 }
    let scales = byScale.keys.sorted().map { "\(byScale[$0]!)× \($0)" }.joined(separator: ", ")
    let mean = { (values: [Double]) in values.reduce(0, +) / Double(values.count) }
    let before = mean(choices.map(\.heldOutErrorWhitened))
    let after = mean(choices.map(\.heldOutError))
    return "refit: \(refitted.count) of \(choices.count) nodes refitted"
      + (scales.isEmpty ? "" : " (ridge × tr Σ/n: \(scales))")
      + "; the others keep their whitened factors; held-out output error (relative, mean over nodes) "
      + String(format: "%.4f → %.4f", before, after)
  }

  enum CodingKeys: String, CodingKey {
    case node
    case ridgeScale = "ridge_scale"
    case heldOutErrorWhitened = "held_out_error_whitened"
    case heldOutError = "held_out_error"
    case heldOutRows = "held_out_rows"
  }
}

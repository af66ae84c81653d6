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
public enum SequentialRefit {
  /// Refits the nodes of `start.whitened` whose rule says `refit: sequential`, over the same
  /// calibration batches (`batch(i)`, each node its rule's `calibration.batches`).
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
      var moments: [String: PairedInputMoments] = [:]
      let count = names.compactMap { fitted[$0]?.batches }.max() ?? 0
      do {
        for index in 0..<count {
          let wanted = Set(names.filter { (fitted[$0]?.batches ?? 0) > index })
          try teacher.accumulatePairedInputMoments(
            of: try batch(index), student: student, nodes: wanted, into: &moments)
        }
      } catch {
        return failure(names[0], "the refit's calibration pass failed: \(error)")
      }
      for name in names {
        guard fitted[name] != nil, let weight = weights[name], let paired = moments[name],
          paired.count >= 2, paired.width == weight.shape[1]
        else {
          return failure(name, "the calibration batches gave no paired inputs for \(name)")
        }
        do {
          let decomposition = try WhitenedSVD(
            weight: weight, covariance: paired.studentCovariance,
            crossCovariance: paired.crossCovariance)
          fitted[name]?.whitening = Whitening(
            decomposition: decomposition, mean: paired.studentMean,
            targetMean: paired.teacherMean)
        } catch {
          return failure(name, "cannot refit \(name): \(error.description)")
        }
      }
      let (next, diagnostics) = Rewriter.apply(
        manifest, to: resolved, initializes: true, calibration: calibration, fitted: fitted)
      guard let next else { return (nil, diagnostics) }
      current = next
    }
    return (current, [])
  }
}

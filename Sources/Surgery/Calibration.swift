import Models
import Tensor

/// Why the calibration pass of `init: svd_whitened` could not run.
public struct CalibrationError: Error, Sendable, CustomStringConvertible {
  public var description: String

  public init(_ description: String) {
    self.description = description
  }
}

/// The calibration pass of `init: svd_whitened`: the loaded model (before any surgery) runs in
/// evaluation mode over training batches, and every wrapped node's input mean and covariance
/// are collected (`Model.accumulateInputMoments`).
public enum Calibration {
  /// `nodes`: each node's batch count (its rule's `calibration.batches`); `batch(i)` gives the
  /// i-th calibration batch.
  public static func inputMoments(
    of model: Model, nodes: [String: Int], batch: (Int) throws -> Batch
  ) throws -> [String: InputMoments] {
    var moments: [String: InputMoments] = [:]
    let count = nodes.values.max() ?? 0
    for index in 0..<count {
      let wanted = Set(nodes.filter { $0.value > index }.keys)
      switch try batch(index) {
      case .text(let text):
        try model.accumulateInputMoments(text: text, nodes: wanted, into: &moments)
      case .images(let pixels, _):
        try model.accumulateInputMoments(pixels: pixels, nodes: wanted, into: &moments)
      }
    }
    for name in nodes.keys.sorted() where (moments[name]?.count ?? 0) < 2 {
      throw CalibrationError(
        "the calibration batches gave \(moments[name]?.count ?? 0) input rows for \(name); it needs at least 2"
      )
    }
    return moments
  }
}

/// A node's whitened decomposition and its inputs' mean: what `init: svd_whitened` starts from.
public struct Whitening: Sendable {
  public var decomposition: WhitenedSVD
  public var mean: [Double]

  public init(decomposition: WhitenedSVD, mean: [Double]) {
    self.decomposition = decomposition
    self.mean = mean
  }
}

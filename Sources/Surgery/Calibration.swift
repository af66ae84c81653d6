import Models
import Tensor

extension Model {
  /// Runs either kind of batch (see `recordInputs(_:)`, `recordInputs(pixels:)`).
  public func recordInputs(of batch: Batch) throws(ModelInputError) -> RecordedInputs {
    switch batch {
    case .text(let text): return try recordInputs(text)
    case .images(let pixels, _): return try recordInputs(pixels: pixels)
    }
  }

  /// Adds what each wrappable node in `nodes` sees in an evaluation-mode forward pass of one
  /// batch to its running moments (`NodeInputs` says which rows). Nodes not yet in `moments`
  /// start empty.
  public func accumulateInputMoments(
    of batch: Batch, nodes: Set<String>, into moments: inout [String: InputMoments]
  ) throws(ModelInputError) {
    let recorded = try recordInputs(of: batch)
    for name in nodes.sorted() {
      guard let inputs = recorded.inputs(of: name) else { continue }
      var entry = moments[name] ?? InputMoments(width: inputs.width)
      for chunk in inputs.chunks {
        chunk.scalars.withUnsafeBufferPointer {
          entry.add($0.baseAddress!, rows: chunk.rows, columnMajor: inputs.columnMajor)
        }
      }
      moments[name] = entry
    }
  }

  /// Adds the inputs each node in `nodes` sees in this model (the teacher) and in `student`,
  /// over the same batch, row for row, to their paired moments: `refit: sequential`.
  public func accumulatePairedInputMoments(
    of batch: Batch, student: Model, nodes: Set<String>,
    into moments: inout [String: PairedInputMoments]
  ) throws(ModelInputError) {
    let teacher = try recordInputs(of: batch)
    let learner = try student.recordInputs(of: batch)
    for name in nodes.sorted() {
      guard let t = teacher.inputs(of: name), let s = learner.inputs(of: name),
        t.width == s.width, t.chunks.count == s.chunks.count
      else { continue }
      var entry = moments[name] ?? PairedInputMoments(width: t.width)
      for (a, b) in zip(t.chunks, s.chunks) where a.rows == b.rows {
        a.scalars.withUnsafeBufferPointer { x in
          b.scalars.withUnsafeBufferPointer { y in
            entry.add(
              teacher: x.baseAddress!, student: y.baseAddress!, rows: a.rows,
              columnMajor: t.columnMajor)
          }
        }
      }
      moments[name] = entry
    }
  }
}

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
      try model.accumulateInputMoments(of: try batch(index), nodes: wanted, into: &moments)
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
  /// The mean `μ` of the inputs the factors read.
  public var mean: [Double]
  /// `refit: sequential`: the mean `μ_t` of the inputs the loaded layer saw, whose output the
  /// factors reproduce; nil: the same as `mean`.
  public var targetMean: [Double]?

  public init(decomposition: WhitenedSVD, mean: [Double], targetMean: [Double]? = nil) {
    self.decomposition = decomposition
    self.mean = mean
    self.targetMean = targetMean
  }
}

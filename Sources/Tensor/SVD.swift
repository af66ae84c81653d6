import CBLAS

/// Why a truncated SVD could not be computed. Ranks and shapes come from manifests, so they are
/// reported rather than trapped.
public struct SVDError: Error, Sendable, Equatable, CustomStringConvertible {
  public enum Reason: Sendable, Equatable {
    /// The tensor is not 2-D.
    case notAMatrix(shape: [Int])
    /// `rank` is not in `1...min(m, n)`.
    case rankOutOfRange(rank: Int, maximum: Int)
    /// The matrix holds NaN or infinity (LAPACK would loop or return garbage).
    case nonFinite
    /// The matrix is too large for LAPACK's 32-bit sizes.
    case tooLarge(shape: [Int])
    /// LAPACK reported `info`: negative for an illegal argument, positive when the iteration
    /// did not converge.
    case lapack(info: Int)
  }

  public var reason: Reason

  public init(_ reason: Reason) {
    self.reason = reason
  }

  public var description: String {
    switch reason {
    case .notAMatrix(let shape):
      return "SVD needs a 2-D tensor, not shape \(shape)"
    case .rankOutOfRange(let rank, let maximum):
      return maximum < 1
        ? "SVD rank \(rank) of an empty matrix"
        : "SVD rank \(rank) is not in 1...\(maximum) (min of the matrix's dimensions)"
    case .nonFinite:
      return "SVD of a matrix with NaN or infinite values"
    case .tooLarge(let shape):
      return "SVD of shape \(shape) exceeds LAPACK's 32-bit sizes"
    case .lapack(let info):
      return info < 0
        ? "LAPACK sgesdd rejected argument \(-info)"
        : "LAPACK sgesdd did not converge (info \(info))"
    }
  }
}

extension Tensor {
  /// The rank-`rank` truncated SVD of a 2-D tensor (m × n): `u` (m × rank) with orthonormal
  /// columns, the `rank` largest singular values in descending order, and `vt` (rank × n) with
  /// orthonormal rows, so that `u · diag(singularValues) · vt` is the best rank-`rank`
  /// approximation (what `init: svd` starts a LoRA adapter from).
  ///
  /// Each singular vector's sign is fixed so that the entry of largest magnitude in its column
  /// of `u` is positive: LAPACK's sign choice is arbitrary, and adapters initialised from it
  /// should not depend on it.
  ///
  /// LAPACK's last bits would depend on OpenBLAS's thread count; OpenBLAS always runs with one
  /// thread here (`BLAS.setThreadCount`), so the result does not depend on `SURGEON_THREADS`.
  public func truncatedSVD(rank: Int) throws(SVDError) -> (
    u: Tensor, singularValues: [Float], vt: Tensor
  ) {
    guard shape.count == 2 else { throw SVDError(.notAMatrix(shape: shape)) }
    let (m, n) = (shape[0], shape[1])
    let k = Swift.min(m, n)
    guard rank >= 1, rank <= k else {
      throw SVDError(.rankOutOfRange(rank: rank, maximum: k))
    }
    guard count <= Int(Int32.max), 8 * k <= Int(Int32.max) else {
      throw SVDError(.tooLarge(shape: shape))
    }
    guard isFinite else { throw SVDError(.nonFinite) }

    // LAPACK is column-major: it reads this row-major m × n buffer as Aᵀ (n × m). Factoring
    // Aᵀ = U′ Σ V′ᵀ gives A = V′ Σ U′ᵀ, and V′ᵀ (k × m column-major) read row-major is A's U
    // (m × k), U′ (n × k column-major) read row-major is A's Vᵀ (k × n): no transposes needed.
    var matrix = scalars  // sgesdd overwrites its input.
    var singularValues = [Float](repeating: 0, count: k)
    var lapackU = [Float](repeating: 0, count: n * k)
    var lapackVT = [Float](repeating: 0, count: k * m)
    var integerWork = [Int32](repeating: 0, count: 8 * k)
    var job = CChar(UInt8(ascii: "S"))
    var rows = Int32(n)
    var columns = Int32(m)
    var leadingA = Int32(n)
    var leadingU = Int32(n)
    var leadingVT = Int32(k)
    var info: Int32 = 0

    func run(_ work: UnsafeMutablePointer<Float>, _ workCount: Int32) {
      var workCount = workCount
      sgesdd_(
        &job, &rows, &columns, &matrix, &leadingA, &singularValues, &lapackU, &leadingU,
        &lapackVT, &leadingVT, work, &workCount, &integerWork, &info, 1)
    }

    // A workspace query first (lwork = -1), then the factorisation.
    var optimalWork: Float = 0
    run(&optimalWork, -1)
    guard info == 0 else { throw SVDError(.lapack(info: Int(info))) }
    // The size comes back as a float: round up generously so that it is never one short.
    let workSize = Double(optimalWork) * (1 + 1e-6) + 1
    guard workSize <= Double(Int32.max) else { throw SVDError(.tooLarge(shape: shape)) }
    var work = [Float](repeating: 0, count: Int(workSize))
    work.withUnsafeMutableBufferPointer { run($0.baseAddress!, Int32($0.count)) }
    guard info == 0 else { throw SVDError(.lapack(info: Int(info))) }

    var u = [Float](repeating: 0, count: m * rank)
    var vt = Array(lapackU[0..<(rank * n)])
    for row in 0..<m {
      for column in 0..<rank { u[row * rank + column] = lapackVT[row * k + column] }
    }
    for component in 0..<rank {
      var largest = 0
      for row in 1..<m where abs(u[row * rank + component]) > abs(u[largest * rank + component]) {
        largest = row
      }
      guard u[largest * rank + component] < 0 else { continue }
      for row in 0..<m { u[row * rank + component] = -u[row * rank + component] }
      for column in 0..<n { vt[component * n + column] = -vt[component * n + column] }
    }
    return (
      Tensor(shape: [m, rank], scalars: u), Array(singularValues[0..<rank]),
      Tensor(shape: [rank, n], scalars: vt)
    )
  }
}

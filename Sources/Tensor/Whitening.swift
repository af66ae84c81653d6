import CBLAS

/// Why whitened factors could not be computed; reported at the manifest rule by the rewriter.
public struct WhiteningError: Error, Sendable, Equatable, CustomStringConvertible {
  public var description: String

  public init(_ description: String) {
    self.description = description
  }
}

/// The SVD of `W·L`, where `Σ + εI = L·Lᵀ` is the Cholesky factor of a layer's input covariance
/// (plus a small ridge): the factorisation behind `init: svd_whitened`.
///
/// For inputs `x` with mean `μ` and covariance `Σ`, the output error of a rank-r replacement
/// `M` of `W` is `E‖(W − M)(x − μ)‖² = ‖(W − M)·L‖²_F` (with Σ + εI standing for Σ). It is
/// smallest for `M = U_r S_r V_rᵀ L⁻¹` (Eckart–Young applied to `W·L`), and then equals
/// `Σ_{i>r} S_i²`: the ranks spend themselves on the directions the inputs excite, not on
/// those `W` is large in. Computed in double precision: `L⁻¹` amplifies rounding along the
/// inputs' weak directions.
public struct WhitenedSVD: Sendable {
  public let outputs: Int
  public let inputs: Int
  /// `W·L`'s singular values, largest first (`min(outputs, inputs)` of them).
  public let singularValues: [Double]
  /// `outputs × k`, row-major, orthonormal columns.
  let u: [Double]
  /// `k × inputs`, row-major, orthonormal rows.
  let vt: [Double]
  /// `L`, `inputs × inputs` row-major, lower triangular.
  let cholesky: [Double]
  /// The ridge ε added to Σ's diagonal so that the Cholesky factorisation succeeded.
  public let ridge: Double

  /// `weight` is `outputs × inputs`; `covariance` is `inputs × inputs` (row-major, symmetric).
  /// The ridge starts at `1e-4 · tr Σ / n` and grows tenfold until Σ + εI factors (at most
  /// eight times); a covariance that stays indefinite, or holds NaN, is an error.
  ///
  /// `crossCovariance` (`refit: sequential`): `C_ts = E[(x_t − μ_t)(x_s − μ_s)ᵀ]` between the
  /// inputs `x_t` the loaded layer saw and the inputs `x_s` the compressed model gives it, with
  /// `covariance` then the latter's. The target is the loaded layer's output `W·x_t`, reproduced
  /// from `x_s`. The ridge pulls the map towards `W` (not towards 0) along directions the inputs
  /// barely excite: minimising `E‖W·x_t − M·x_s‖² + ε‖W − M‖²_F` gives the full-rank map
  /// `W·(C_ts + εI)·(Σ + εI)⁻¹`, and its rank-r best is `U_r S_r V_rᵀ L⁻¹` from the SVD of
  /// `W·(C_ts + εI)·L⁻ᵀ` (reduced-rank regression), with that objective then
  /// `tr(W (Σ_t + εI) Wᵀ) − Σ_{i≤r} S_i²`. With `x_s = x_t` this is `W·L`, as above.
  ///
  /// `ridgeScale`: the ridge starts at `ridgeScale · tr Σ / n`. The refit chooses it on
  /// held-out calibration batches: a regression on a few thousand rows can amplify a faint
  /// direction of `x_s` to reproduce a strong one of `x_t`, and a larger ridge stops that.
  public init(
    weight: Tensor, covariance: [Double], crossCovariance: [Double]? = nil,
    ridgeScale: Double = 1e-4
  ) throws(WhiteningError) {
    guard weight.shape.count == 2 else {
      throw WhiteningError("whitening needs a 2-D weight, not shape \(weight.shape)")
    }
    let (m, n) = (weight.shape[0], weight.shape[1])
    guard covariance.count == n * n else {
      throw WhiteningError("the covariance has \(covariance.count) entries, not \(n)×\(n)")
    }
    guard n * n <= Int(Int32.max), m * n <= Int(Int32.max) else {
      throw WhiteningError("a \(m)×\(n) weight exceeds LAPACK's 32-bit sizes")
    }
    if let crossCovariance, crossCovariance.count != n * n {
      throw WhiteningError(
        "the cross-covariance has \(crossCovariance.count) entries, not \(n)×\(n)")
    }
    guard covariance.allSatisfy(\.isFinite), weight.isFinite,
      crossCovariance?.allSatisfy(\.isFinite) ?? true
    else {
      throw WhiteningError("the weight or the input covariance holds NaN or infinite values")
    }
    let trace = (0..<n).reduce(0.0) { $0 + covariance[$1 * n + $1] }
    var ridge = Swift.max(ridgeScale * trace / Double(n), 1e-12)
    var factor: [Double]?
    for _ in 0..<8 {
      if let lower = Self.cholesky(covariance, n: n, ridge: ridge) {
        factor = lower
        break
      }
      ridge *= 10
    }
    guard let lower = factor else {
      throw WhiteningError(
        "the input covariance stays indefinite with a ridge of \(ridge / 10) on its diagonal")
    }
    // W·L in double; with a cross-covariance W·C_ts·L⁻ᵀ (a triangular solve from the right).
    let w = weight.scalars.map(Double.init)
    var product = [Double](repeating: 0, count: m * n)
    if var cross = crossCovariance {
      for i in 0..<n { cross[i * n + i] += ridge }
      cblas_dgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(n), 1, w, Int32(n),
        cross, Int32(n), 0, &product, Int32(n))
      cblas_dtrsm(
        CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, Int32(m), Int32(n), 1,
        lower, Int32(n), &product, Int32(n))
    } else {
      cblas_dgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(n), 1, w, Int32(n),
        lower, Int32(n), 0, &product, Int32(n))
    }
    let (u, values, vt) = try Self.svd(product, rows: m, columns: n)
    self.outputs = m
    self.inputs = n
    self.singularValues = values
    self.u = u
    self.vt = vt
    self.cholesky = lower
    self.ridge = ridge
  }

  /// Factors `down` (A, `rank × inputs`) and `up` (B, `outputs × rank`) with
  /// `scale·B·A = U_r S_r V_rᵀ L⁻¹`, split as `A = √S_r V_rᵀ L⁻¹`, `B = U_r √S_r / scale`.
  public func factors(rank: Int, scale: Float) -> (down: Tensor, up: Tensor) {
    precondition(rank >= 1 && rank <= singularValues.count, "rank \(rank) out of range")
    let (m, n, k) = (outputs, inputs, singularValues.count)
    let roots = singularValues.prefix(rank).map { $0.squareRoot() }
    var down = [Double](repeating: 0, count: rank * n)
    for row in 0..<rank {
      for column in 0..<n { down[row * n + column] = roots[row] * vt[row * n + column] }
    }
    // A := A · L⁻¹ (a triangular solve from the right).
    cblas_dtrsm(
      CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, Int32(rank), Int32(n), 1,
      cholesky, Int32(n), &down, Int32(n))
    var up = [Float](repeating: 0, count: m * rank)
    let inverseScale = 1 / Double(scale)
    for row in 0..<m {
      for column in 0..<rank {
        up[row * rank + column] = Float(u[row * k + column] * roots[column] * inverseScale)
      }
    }
    return (
      Tensor(shape: [rank, n], scalars: down.map(Float.init)),
      Tensor(shape: [m, rank], scalars: up)
    )
  }

  /// The rank-r map `U_r S_r V_rᵀ L⁻¹` (`= scale·B·A` of `factors(rank:scale:)`), `outputs ×
  /// inputs` row-major in double precision: what a refit candidate is scored by.
  public func map(rank: Int) -> [Double] {
    precondition(rank >= 1 && rank <= singularValues.count, "rank \(rank) out of range")
    let (m, n, k) = (outputs, inputs, singularValues.count)
    var left = [Double](repeating: 0, count: m * rank)
    for row in 0..<m {
      for column in 0..<rank {
        left[row * rank + column] = u[row * k + column] * singularValues[column]
      }
    }
    var right = Array(vt.prefix(rank * n))
    cblas_dtrsm(
      CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, Int32(rank), Int32(n), 1,
      cholesky, Int32(n), &right, Int32(n))
    var result = [Double](repeating: 0, count: m * n)
    cblas_dgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(rank), 1, left,
      Int32(rank), right, Int32(n), 0, &result, Int32(n))
    return result
  }

  /// The lower Cholesky factor of `Σ + ridge·I` (row-major), nil when it is not positive
  /// definite.
  static func cholesky(_ covariance: [Double], n: Int, ridge: Double) -> [Double]? {
    var a = covariance
    for i in 0..<n { a[i * n + i] += ridge }
    // Column-major LAPACK sees the symmetric row-major matrix unchanged; asking it for the
    // upper factor U (Σ = UᵀU) leaves, read row-major, Uᵀ = L in the lower triangle.
    var uplo = CChar(UInt8(ascii: "U"))
    var order = Int32(n)
    var leading = Int32(n)
    var info: Int32 = 0
    dpotrf_(&uplo, &order, &a, &leading, &info, 1)
    guard info == 0 else { return nil }
    for row in 0..<n {
      for column in (row + 1)..<Swift.max(row + 1, n) { a[row * n + column] = 0 }
    }
    return a
  }

  /// The thin SVD of a row-major `rows × columns` matrix: `u` (`rows × k`), the singular values,
  /// `vt` (`k × columns`), `k = min(rows, columns)`.
  static func svd(_ matrix: [Double], rows m: Int, columns n: Int) throws(WhiteningError) -> (
    [Double], [Double], [Double]
  ) {
    // As in `truncatedSVD`: LAPACK factors the column-major view Aᵀ = U′ΣV′ᵀ; read row-major,
    // V′ᵀ is A's U and U′ is A's Vᵀ.
    let k = Swift.min(m, n)
    var a = matrix
    var values = [Double](repeating: 0, count: k)
    var lapackU = [Double](repeating: 0, count: n * k)
    var lapackVT = [Double](repeating: 0, count: k * m)
    var integerWork = [Int32](repeating: 0, count: 8 * k)
    var job = CChar(UInt8(ascii: "S"))
    var (rowCount, columnCount) = (Int32(n), Int32(m))
    var (leadingA, leadingU, leadingVT) = (Int32(n), Int32(n), Int32(k))
    var info: Int32 = 0
    func run(_ work: UnsafeMutablePointer<Double>, _ count: Int32) {
      var count = count
      dgesdd_(
        &job, &rowCount, &columnCount, &a, &leadingA, &values, &lapackU, &leadingU, &lapackVT,
        &leadingVT, work, &count, &integerWork, &info, 1)
    }
    var optimal = 0.0
    run(&optimal, -1)
    guard info == 0, optimal + 1 <= Double(Int32.max) else {
      throw WhiteningError("LAPACK dgesdd's workspace query failed (info \(info))")
    }
    var work = [Double](repeating: 0, count: Int(optimal) + 1)
    work.withUnsafeMutableBufferPointer { run($0.baseAddress!, Int32($0.count)) }
    guard info == 0 else { throw WhiteningError("LAPACK dgesdd did not converge (info \(info))") }
    var u = [Double](repeating: 0, count: m * k)
    for row in 0..<m {
      for column in 0..<k { u[row * k + column] = lapackVT[row * k + column] }
    }
    return (u, values, lapackU)
  }
}

/// Running first and second moments of a layer's input rows (`width` floats each), summed in
/// double precision: the calibration statistics of `init: svd_whitened`.
public struct InputMoments: Sendable {
  public let width: Int
  public private(set) var count = 0
  var sums: [Double]
  /// `Σ x·xᵀ`, `width × width`.
  var products: [Double]

  public init(width: Int) {
    self.width = width
    sums = [Double](repeating: 0, count: width)
    products = [Double](repeating: 0, count: width * width)
  }

  /// Adds `rows` rows of `width` floats. `columnMajor`: the rows are the columns of a
  /// `width × rows` matrix (im2col's layout).
  public mutating func add(_ data: UnsafePointer<Float>, rows: Int, columnMajor: Bool = false) {
    guard rows > 0 else { return }
    // The rows' Gram matrix in single precision (one GEMM), accumulated in double.
    var gram = [Float](repeating: 0, count: width * width)
    let w = Int32(width)
    if columnMajor {
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, w, w, Int32(rows), 1, data, Int32(rows), data,
        Int32(rows), 0, &gram, w)
      for i in 0..<width {
        var total = 0.0
        for r in 0..<rows { total += Double(data[i * rows + r]) }
        sums[i] += total
      }
    } else {
      cblas_sgemm(
        CblasRowMajor, CblasTrans, CblasNoTrans, w, w, Int32(rows), 1, data, w, data, w, 0, &gram,
        w)
      for r in 0..<rows {
        for i in 0..<width { sums[i] += Double(data[r * width + i]) }
      }
    }
    for i in 0..<(width * width) { products[i] += Double(gram[i]) }
    count += rows
  }

  public var mean: [Double] { sums.map { $0 / Double(Swift.max(count, 1)) } }

  /// `E[x·xᵀ] − μ·μᵀ` (the population covariance), row-major.
  public var covariance: [Double] {
    let mu = mean
    let n = Double(Swift.max(count, 1))
    var result = products
    for i in 0..<width {
      for j in 0..<width { result[i * width + j] = products[i * width + j] / n - mu[i] * mu[j] }
    }
    return result
  }
}

/// Running moments of the inputs a layer sees in two models over the same examples, row for
/// row: `x_t` in the loaded model (the teacher) and `x_s` in the compressed one (the student).
/// What `refit: sequential` fits each node's factors from.
public struct PairedInputMoments: Sendable {
  public let width: Int
  public private(set) var count = 0
  var teacherSums: [Double]
  var studentSums: [Double]
  /// `Σ x_s·x_sᵀ`, `Σ x_t·x_sᵀ` and `Σ x_t·x_tᵀ`, `width × width`.
  var studentProducts: [Double]
  var crossProducts: [Double]
  var teacherProducts: [Double]

  public init(width: Int) {
    self.width = width
    teacherSums = [Double](repeating: 0, count: width)
    studentSums = teacherSums
    studentProducts = [Double](repeating: 0, count: width * width)
    crossProducts = studentProducts
    teacherProducts = studentProducts
  }

  /// Adds another set of rows' moments (the same width).
  public mutating func merge(_ other: PairedInputMoments) {
    precondition(other.width == width, "merging moments of widths \(width) and \(other.width)")
    for i in 0..<width {
      teacherSums[i] += other.teacherSums[i]
      studentSums[i] += other.studentSums[i]
    }
    for i in 0..<(width * width) {
      studentProducts[i] += other.studentProducts[i]
      crossProducts[i] += other.crossProducts[i]
      teacherProducts[i] += other.teacherProducts[i]
    }
    count += other.count
  }

  /// Adds `rows` paired rows of `width` floats; `columnMajor` as in `InputMoments.add`.
  public mutating func add(
    teacher: UnsafePointer<Float>, student: UnsafePointer<Float>, rows: Int,
    columnMajor: Bool = false
  ) {
    guard rows > 0 else { return }
    let w = Int32(width)
    var gram = [Float](repeating: 0, count: width * width)
    var cross = [Float](repeating: 0, count: width * width)
    var teacherGram = [Float](repeating: 0, count: width * width)
    if columnMajor {
      let r = Int32(rows)
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, w, w, r, 1, student, r, student, r, 0, &gram, w)
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, w, w, r, 1, teacher, r, student, r, 0, &cross, w)
      cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, w, w, r, 1, teacher, r, teacher, r, 0,
        &teacherGram, w)
      for i in 0..<width {
        var (t, s) = (0.0, 0.0)
        for row in 0..<rows {
          t += Double(teacher[i * rows + row])
          s += Double(student[i * rows + row])
        }
        teacherSums[i] += t
        studentSums[i] += s
      }
    } else {
      cblas_sgemm(
        CblasRowMajor, CblasTrans, CblasNoTrans, w, w, Int32(rows), 1, student, w, student, w, 0,
        &gram, w)
      cblas_sgemm(
        CblasRowMajor, CblasTrans, CblasNoTrans, w, w, Int32(rows), 1, teacher, w, student, w, 0,
        &cross, w)
      cblas_sgemm(
        CblasRowMajor, CblasTrans, CblasNoTrans, w, w, Int32(rows), 1, teacher, w, teacher, w, 0,
        &teacherGram, w)
      for row in 0..<rows {
        for i in 0..<width {
          teacherSums[i] += Double(teacher[row * width + i])
          studentSums[i] += Double(student[row * width + i])
        }
      }
    }
    for i in 0..<(width * width) {
      studentProducts[i] += Double(gram[i])
      crossProducts[i] += Double(cross[i])
      teacherProducts[i] += Double(teacherGram[i])
    }
    count += rows
  }

  public var teacherMean: [Double] { teacherSums.map { $0 / Double(Swift.max(count, 1)) } }
  public var studentMean: [Double] { studentSums.map { $0 / Double(Swift.max(count, 1)) } }

  /// `E[x_s·x_sᵀ] − μ_s·μ_sᵀ`, row-major.
  public var studentCovariance: [Double] {
    centred(studentProducts, studentMean, studentMean)
  }

  /// `C_ts = E[x_t·x_sᵀ] − μ_t·μ_sᵀ`, row-major (rows: teacher inputs).
  public var crossCovariance: [Double] {
    centred(crossProducts, teacherMean, studentMean)
  }

  /// `E[x_t·x_tᵀ] − μ_t·μ_tᵀ`, row-major.
  public var teacherCovariance: [Double] {
    centred(teacherProducts, teacherMean, teacherMean)
  }

  /// `E‖W·(x_t − a) − M·(x_s − b)‖²` over these rows, from their moments: the output error of a
  /// replacement `M·x_s + c` for the loaded layer `W·x_t + b` whose bias was fitted elsewhere
  /// (`c = b + W·a − M·b`, with `a`, `b` the fitting rows' means). `weight` and `map` are
  /// `outputs × width`, row-major.
  public func outputError(
    weight: [Double], map: [Double], outputs m: Int, teacherOffset a: [Double],
    studentOffset b: [Double]
  ) -> Double {
    let n = width
    precondition(weight.count == m * n && map.count == m * n, "maps must be \(m)×\(n)")
    let (muT, muS) = (teacherMean, studentMean)
    // tr(W Σ_t Wᵀ) − 2 tr(W C_ts Mᵀ) + tr(M Σ_s Mᵀ) + ‖W(μ_t − a) − M(μ_s − b)‖².
    func quadratic(_ left: [Double], _ middle: [Double], _ right: [Double]) -> Double {
      var product = [Double](repeating: 0, count: m * n)
      cblas_dgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(n), 1, left,
        Int32(n), middle, Int32(n), 0, &product, Int32(n))
      return zip(product, right).reduce(0) { $0 + $1.0 * $1.1 }
    }
    var total =
      teacherOutputVariance(weight: weight, outputs: m)
      - 2 * quadratic(weight, crossCovariance, map) + quadratic(map, studentCovariance, map)
    for row in 0..<m {
      var shift = 0.0
      for column in 0..<n {
        shift +=
          weight[row * n + column] * (muT[column] - a[column]) - map[row * n + column]
          * (muS[column] - b[column])
      }
      total += shift * shift
    }
    return Swift.max(total, 0)
  }

  /// `tr(W Σ_t Wᵀ)`: the loaded layer's output variance over these rows (what `outputError`
  /// is measured against).
  public func teacherOutputVariance(weight: [Double], outputs m: Int) -> Double {
    let n = width
    var product = [Double](repeating: 0, count: m * n)
    cblas_dgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(n), 1, weight,
      Int32(n), teacherCovariance, Int32(n), 0, &product, Int32(n))
    return zip(product, weight).reduce(0) { $0 + $1.0 * $1.1 }
  }

  private func centred(_ products: [Double], _ left: [Double], _ right: [Double]) -> [Double] {
    let n = Double(Swift.max(count, 1))
    var result = products
    for i in 0..<width {
      for j in 0..<width {
        result[i * width + j] = products[i * width + j] / n - left[i] * right[j]
      }
    }
    return result
  }
}

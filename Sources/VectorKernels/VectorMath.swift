#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Vectorised `exp` and normal CDF on eight lanes at a time.
///
/// libm's `expf` and `erff` are scalar calls the compiler cannot vectorise; GELU and the
/// attention softmax spent 15% of a MiniLM training step in them. These run the same formula on
/// every lane, so a value's result does not depend on its position or on the thread count.
public enum VectorMath {
  public typealias Lanes = SIMD8<Float>

  /// `e^x` with relative error below 2e-7 on `[-87, 88]`; 0 below −87.3 and +inf above 88.7.
  ///
  /// Cody–Waite reduction `x = n·ln 2 + r` (`|r| ≤ ln 2 / 2`), a degree-7 Taylor polynomial for
  /// `e^r`, and `2^n` built in the exponent bits.
  @_transparent
  public static func exp(_ x: Lanes) -> Lanes {
    // Comparisons and selects, not `clamped`: the generic min/max did not vectorise.
    var clamped = x.replacing(with: -87, where: x .< -87)
    clamped.replace(with: 88, where: clamped .> 88)
    // Adding 1.5·2^23 rounds to the nearest integer in the low mantissa bits.
    let shifter = Lanes(repeating: 12_582_912.0)
    let shifted = clamped * Lanes(repeating: 1.442_695_04) + shifter
    let n = shifted - shifter
    var r = clamped - n * Lanes(repeating: 0.693_145_75)
    r = r - n * Lanes(repeating: 1.428_606_8e-6)
    var p = Lanes(repeating: 1.0 / 5040.0)
    p = p * r + Lanes(repeating: 1.0 / 720.0)
    p = p * r + Lanes(repeating: 1.0 / 120.0)
    p = p * r + Lanes(repeating: 1.0 / 24.0)
    p = p * r + Lanes(repeating: 1.0 / 6.0)
    p = p * r + Lanes(repeating: 0.5)
    p = p * r + Lanes(repeating: 1.0)
    p = p * r + Lanes(repeating: 1.0)
    let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((integer &+ 127) &<< 23, to: Lanes.self)
    var result = p * scale
    result.replace(with: 0, where: x .< Lanes(repeating: -87.3))
    result.replace(with: .infinity, where: x .> Lanes(repeating: 88.7))
    return result
  }

  /// The standard normal CDF `Φ(x) = erfc(−x/√2) / 2`: absolute error below 1.5e-7, and
  /// relative to `Φ` below 5e-6 down to x = −6, so GELU stays accurate for negative inputs
  /// (`(1 + erf)/2` loses all relative precision there).
  ///
  /// `erfc(z)` for `z ≥ 0` is the Chebyshev fit of Numerical Recipes (`erfcc`, fractional error
  /// below 1.2e-7); `Φ(x) = 1 − erfc(z)/2` for `x ≥ 0`.
  @_transparent
  public static func normalCDF(_ x: Lanes) -> Lanes {
    let z = x.replacing(with: -x, where: x .< 0) * Lanes(repeating: 0.707_106_78)
    let t = 1 / (1 + 0.5 * z)
    var p = Lanes(repeating: 0.170_872_77)
    p = p * t + Lanes(repeating: -0.822_152_23)
    p = p * t + Lanes(repeating: 1.488_515_87)
    p = p * t + Lanes(repeating: -1.135_203_98)
    p = p * t + Lanes(repeating: 0.278_868_07)
    p = p * t + Lanes(repeating: -0.186_288_06)
    p = p * t + Lanes(repeating: 0.096_784_18)
    p = p * t + Lanes(repeating: 0.374_091_96)
    p = p * t + Lanes(repeating: 1.000_023_68)
    p = p * t + Lanes(repeating: -1.265_512_23)
    let halfErfc = 0.5 * t * exp(p - z * z)
    return halfErfc.replacing(with: 1 - halfErfc, where: x .>= 0)
  }

  /// `erf(x)`, absolute error below 4e-7 (3.3e-7 measured in float32): `x·P(x²)/Q(x²)`, a
  /// rational fit of degrees 6 and 5 in `x²` on `[0, 4]` (fitted for surgeon by weighted least
  /// squares), `±1` beyond (`1 − erf(4) < 2e-8`). No `exp`: a third of `normalCDF`'s work, for
  /// GELU's forward pass.
  @_transparent
  public static func erf(_ x: Lanes) -> Lanes {
    var clamped = x.replacing(with: -4, where: x .< -4)
    clamped.replace(with: 4, where: clamped .> 4)
    let x2 = clamped * clamped
    var p = Lanes(repeating: -1.366_653_053e-8)
    p = p * x2 + Lanes(repeating: 4.780_487_395e-6)
    p = p * x2 + Lanes(repeating: 3.826_904_646e-4)
    p = p * x2 + Lanes(repeating: 3.839_532_216e-3)
    p = p * x2 + Lanes(repeating: 5.433_258_113e-2)
    p = p * x2 + Lanes(repeating: 0.184_710_570_8)
    p = p * x2 + Lanes(repeating: 1.128_379_182)
    var q = Lanes(repeating: 6.400_877_573e-5)
    q = q * x2 + Lanes(repeating: 1.309_577_273e-3)
    q = q * x2 + Lanes(repeating: 1.545_351_612e-2)
    q = q * x2 + Lanes(repeating: 0.113_826_360_5)
    q = q * x2 + Lanes(repeating: 0.497_029_026_8)
    q = q * x2 + 1
    return clamped * p / q
  }

  /// The standard normal density `e^(−x²/2) / √(2π)`.
  @_transparent
  public static func normalPDF(_ x: Lanes) -> Lanes {
    Lanes(repeating: 0.398_942_28) * exp(-0.5 * x * x)
  }

  /// Loads up to eight values from `pointer` (missing lanes are 0).
  @_transparent
  public static func load(_ pointer: UnsafePointer<Float>, count: Int = 8) -> Lanes {
    if count >= 8 { return UnsafeRawPointer(pointer).loadUnaligned(as: Lanes.self) }
    var lanes = Lanes()
    for i in 0..<count { lanes[i] = pointer[i] }
    return lanes
  }

  /// Stores the first `count` lanes (up to eight) at `pointer`.
  @_transparent
  public static func store(_ lanes: Lanes, to pointer: UnsafeMutablePointer<Float>, count: Int = 8)
  {
    if count >= 8 {
      UnsafeMutableRawPointer(pointer).storeBytes(of: lanes, as: Lanes.self)
      return
    }
    for i in 0..<count { pointer[i] = lanes[i] }
  }

  /// Applies `transform` to `count` values in place, sixteen at a time as two independent
  /// vectors (these kernels are long dependency chains: one vector at a time left the core
  /// waiting on latency), the tail eight at a time, padded.
  @_transparent
  public static func transform(
    _ values: UnsafeMutablePointer<Float>, count: Int, _ transform: (Lanes) -> Lanes
  ) {
    var i = 0
    while i + 16 <= count {
      let first = transform(load(values + i))
      let second = transform(load(values + i + 8))
      store(first, to: values + i)
      store(second, to: values + i + 8)
      i += 16
    }
    while i < count {
      let n = Swift.min(8, count - i)
      store(transform(load(values + i, count: n)), to: values + i, count: n)
      i += 8
    }
  }

}

extension VectorMath {
  /// `ln u` for `u` in `(0, 1]` (the Box–Muller radius), error below 2e-7 relative.
  ///
  /// `u = m·2^e` with `m` in `[√½, √2)`; `ln m = 2·atanh(z)`, `z = (m − 1)/(m + 1)`, `|z| ≤ 0.172`,
  /// by its series to `z⁹`.
  @_transparent
  public static func logUnitInterval(_ u: Lanes) -> Lanes {
    let bits = unsafeBitCast(u, to: SIMD8<Int32>.self)
    let mantissaBits = (bits & 0x007F_FFFF) | 0x3F80_0000
    // −1 in lanes whose mantissa is above √2 (0x3FB504F3), else 0: an arithmetic shift of the
    // difference, because a mask select (`replace(with:where:)`) ran lane by lane.
    let large = (0x3FB5_04F3 &- mantissaBits) &>> 31
    // There, m/2 (one less in the exponent field, exact) and one more in the exponent.
    let exponent = ((bits &>> 23) &- 127) &- large
    let mantissa = unsafeBitCast(mantissaBits &+ (large & 0x0080_0000) &* -1, to: Lanes.self)
    let z = (mantissa - 1) / (mantissa + 1)
    let z2 = z * z
    var series = Lanes(repeating: 1.0 / 9.0)
    series = series * z2 + Lanes(repeating: 1.0 / 7.0)
    series = series * z2 + Lanes(repeating: 1.0 / 5.0)
    series = series * z2 + Lanes(repeating: 1.0 / 3.0)
    series = series * z2 + Lanes(repeating: 1.0)
    // A small integer to float through the exponent bits (the generic conversion scalarised).
    let exponentValue =
      unsafeBitCast(exponent &+ 0x4B40_0000, to: Lanes.self) - Lanes(repeating: 12_582_912.0)
    return 2 * z * series + exponentValue * Lanes(repeating: 0.693_147_18)
  }

  /// `selected` in lanes whose `mask` is all ones, `otherwise` where it is 0, on the bits:
  /// Swift's `replace(with:where:)` ran lane by lane when its mask came from an integer
  /// comparison or a mask operation. Masks come from arithmetic shifts (`x &>> 31`).
  @_transparent
  public static func select(_ selected: Lanes, otherwise: Lanes, mask: SIMD8<Int32>) -> Lanes {
    let chosen = unsafeBitCast(selected, to: SIMD8<Int32>.self) & mask
    let other = unsafeBitCast(otherwise, to: SIMD8<Int32>.self) & ~mask
    return unsafeBitCast(chosen | other, to: Lanes.self)
  }

  /// `√x` for `x ≥ 0` from the reciprocal square root by three Newton steps (relative error
  /// below 2e-7); Swift's generic `squareRoot()` on vectors ran lane by lane.
  @_transparent
  public static func squareRoot(_ x: Lanes) -> Lanes {
    let bits = unsafeBitCast(x, to: SIMD8<Int32>.self)
    var y = unsafeBitCast(0x5F37_5A86 &- (bits &>> 1), to: Lanes.self)
    let half = 0.5 * x
    y = y * (1.5 - half * y * y)
    y = y * (1.5 - half * y * y)
    y = y * (1.5 - half * y * y)
    return x * y
  }

  /// `sin 2πu` and `cos 2πu` for `u` in `[0, 1)` (the Box–Muller angle), error below 1e-7.
  ///
  /// `u = q/4 + r` with `|r| ≤ 1/8`; Taylor series of `sin` and `cos` at `2πr` (`|2πr| ≤ π/4`),
  /// then rotated by the quadrant `q`.
  @_transparent
  public static func sinCosTwoPi(_ u: Lanes) -> (sin: Lanes, cos: Lanes) {
    let shifter = Lanes(repeating: 12_582_912.0)
    let quarters = (u * 4 + shifter) - shifter
    let x = (u - quarters * 0.25) * Lanes(repeating: 6.283_185_3)
    let x2 = x * x
    var s = Lanes(repeating: 1.0 / 362_880.0)
    s = s * x2 - Lanes(repeating: 1.0 / 5040.0)
    s = s * x2 + Lanes(repeating: 1.0 / 120.0)
    s = s * x2 - Lanes(repeating: 1.0 / 6.0)
    s = (s * x2 + 1) * x
    var c = Lanes(repeating: 1.0 / 40_320.0)
    c = c * x2 - Lanes(repeating: 1.0 / 720.0)
    c = c * x2 + Lanes(repeating: 1.0 / 24.0)
    c = c * x2 - Lanes(repeating: 0.5)
    c = c * x2 + 1
    // Quadrant q (0…4, 4 ≡ 0): rotate (sin, cos) by q quarter turns. `odd` is all ones in odd
    // quadrants; bit 1 of q moved to the sign bit flips the sign in quadrants 2 and 3 (on the
    // bits, like the selects).
    let q = unsafeBitCast(u * 4 + shifter, to: SIMD8<Int32>.self) & 3
    let odd = (q & 1) &* -1
    let flip = (q & 2) &<< 30
    let sine = select(c, otherwise: s, mask: odd)
    let cosine = select(-s, otherwise: c, mask: odd)
    return (
      unsafeBitCast(unsafeBitCast(sine, to: SIMD8<Int32>.self) ^ flip, to: Lanes.self),
      unsafeBitCast(unsafeBitCast(cosine, to: SIMD8<Int32>.self) ^ flip, to: Lanes.self)
    )
  }
}

/// The elementwise loops that dominate a step outside the GEMMs: the Philox + Box–Muller noise,
/// dropout masks, GELU and the attention softmax.
///
/// Each is written once, `@inlinable`, and compiled twice: in this module for baseline x86-64
/// (SSE2: `SIMD8` runs as two 4-lane halves) and in `VectorKernelsAVX2`, built for Haswell (AVX2
/// and FMA: one 8-lane register). `Tensor` picks one `KernelSet` per process from the processor's
/// features. Both compile the same IEEE operations in the same order (Swift does not contract a
/// product and a sum into an FMA), so the two sets give the same bits; `VectorKernelTests` checks.
public struct KernelSet: Sendable {
  /// `baseline` or `avx2`.
  public let name: String
  public let fillNormal:
    @Sendable (RandomFill, Range<Int>, _ mean: Float, _ standardDeviation: Float)
      -> Void
  public let fillUniform: @Sendable (RandomFill, Range<Int>, _ low: Float, _ width: Float) -> Void
  public let fillDropoutMask:
    @Sendable (RandomFill, Range<Int>, _ probability: Float, _ scale: Float) -> Void
  /// Exact GELU in place.
  public let gelu: @Sendable (UnsafeMutablePointer<Float>, Int) -> Void
  /// GELU's input gradient in place of `g`, from the forward input `x` and output `y`.
  public let geluBackward:
    @Sendable (
      _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>, Int
    )
      -> Void
  /// Softmax of one row in place.
  public let softmax: @Sendable (UnsafeMutablePointer<Float>, Int) -> Void
  /// One channel's batch statistics (`ChannelPlanes`): its mean and sum of squared deviations.
  public let channelMoments: @Sendable (ChannelPlanes) -> (mean: Double, squares: Double)
  /// One channel's batch-norm gradient sums: `Σ dy` and `Σ dy·(x − mean)·rstd`.
  public let channelGradientSums:
    @Sendable (ChannelPlanes, _ gradient: UnsafePointer<Float>, _ mean: Float, _ rstd: Float) -> (
      sum: Float, sumTimesNorm: Float
    )

  public init(
    name: String,
    fillNormal: @escaping @Sendable (RandomFill, Range<Int>, Float, Float) -> Void,
    fillUniform: @escaping @Sendable (RandomFill, Range<Int>, Float, Float) -> Void,
    fillDropoutMask: @escaping @Sendable (RandomFill, Range<Int>, Float, Float) -> Void,
    gelu: @escaping @Sendable (UnsafeMutablePointer<Float>, Int) -> Void,
    geluBackward:
      @escaping @Sendable (
        UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int
      ) -> Void,
    softmax: @escaping @Sendable (UnsafeMutablePointer<Float>, Int) -> Void,
    channelMoments: @escaping @Sendable (ChannelPlanes) -> (mean: Double, squares: Double),
    channelGradientSums:
      @escaping @Sendable (ChannelPlanes, UnsafePointer<Float>, Float, Float)
      -> (sum: Float, sumTimesNorm: Float)
  ) {
    self.name = name
    self.fillNormal = fillNormal
    self.fillUniform = fillUniform
    self.fillDropoutMask = fillDropoutMask
    self.gelu = gelu
    self.geluBackward = geluBackward
    self.softmax = softmax
    self.channelMoments = channelMoments
    self.channelGradientSums = channelGradientSums
  }

  /// The loops compiled for baseline x86-64.
  public static let baseline = KernelSet(
    name: "baseline",
    fillNormal: {
      Kernels.fillNormal($0, groups: $1, mean: $2, standardDeviation: $3, multiplyingInPairs: false)
    },
    fillUniform: {
      Kernels.fillUniform($0, groups: $1, low: $2, width: $3, multiplyingInPairs: false)
    },
    fillDropoutMask: {
      Kernels.fillDropoutMask($0, groups: $1, probability: $2, scale: $3, multiplyingInPairs: false)
    },
    gelu: { Kernels.gelu($0, count: $1) },
    geluBackward: { Kernels.geluBackward(input: $0, output: $1, gradient: $2, count: $3) },
    softmax: { Kernels.softmax($0, length: $1) },
    channelMoments: { Kernels.channelMoments($0) },
    channelGradientSums: { Kernels.channelGradientSums($0, gradient: $1, mean: $2, rstd: $3) })
}

/// One channel of an `N × C × H × W` tensor: `count` planes of `pixels` values, the first at
/// `base`, each `stride` values after the one before (`stride = C·H·W`).
public struct ChannelPlanes: @unchecked Sendable {
  public var base: UnsafePointer<Float>
  public var count: Int
  public var pixels: Int
  public var stride: Int

  public init(base: UnsafePointer<Float>, count: Int, pixels: Int, stride: Int) {
    self.base = base
    self.count = count
    self.pixels = pixels
    self.stride = stride
  }
}

/// Where a random fill writes: values `begin ..< end` of a draw (value `i` at `base + i − begin`)
/// from the Philox stream `(seed, stream)` whose first block is `start`. A draw is cut into
/// groups of 32 values (8 blocks); a kernel fills the groups it is given, so threads can share a
/// draw and each value still depends only on its counter.
public struct RandomFill: @unchecked Sendable {
  public var base: UnsafeMutablePointer<Float>
  public var begin: Int
  public var end: Int
  public var seed: UInt64
  public var stream: UInt64
  public var start: UInt64

  public init(
    base: UnsafeMutablePointer<Float>, begin: Int, end: Int, seed: UInt64, stream: UInt64,
    start: UInt64
  ) {
    self.base = base
    self.begin = begin
    self.end = end
    self.seed = seed
    self.stream = stream
    self.start = start
  }
}

/// The kernels' bodies (see `KernelSet`).
public enum Kernels {
  public typealias Lanes = VectorMath.Lanes
  public typealias Words = (SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>)

  /// Philox4x32-10 blocks `counter … counter + 7` at once, lane `i` holding block `counter + i`.
  @_transparent
  public static func philoxBlocks(
    seed: UInt64, stream: UInt64, counter: UInt64, multiplyingInPairs: Bool
  ) -> Words {
    let counters = SIMD8<UInt64>(repeating: counter) &+ SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)
    var c0 = SIMD8<UInt32>(truncatingIfNeeded: counters)
    var c1 = SIMD8<UInt32>(truncatingIfNeeded: counters &>> 32)
    var c2 = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: stream))
    var c3 = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: stream >> 32))
    var k0 = UInt32(truncatingIfNeeded: seed)
    var k1 = UInt32(truncatingIfNeeded: seed >> 32)
    for _ in 0..<10 {
      let product0 =
        multiplyingInPairs ? multiplyInPairs(c0, by: 0xD251_1F53) : multiply(c0, by: 0xD251_1F53)
      let product1 =
        multiplyingInPairs ? multiplyInPairs(c2, by: 0xCD9E_8D57) : multiply(c2, by: 0xCD9E_8D57)
      let next0 = product1.high ^ c1 ^ k0
      let next2 = product0.high ^ c3 ^ k1
      c1 = product1.low
      c3 = product0.low
      c0 = next0
      c2 = next2
      k0 = k0 &+ 0x9E37_79B9
      k1 = k1 &+ 0xBB67_AE85
    }
    return (c0, c1, c2, c3)
  }

  /// The high and low words of each lane's 64-bit product `c·m`, all lanes widened to 64 bits.
  /// On SSE this is the faster form; with AVX2, moving the halves between registers took most
  /// of the generator's time (`multiplyInPairs`).
  @usableFromInline @_transparent
  static func multiply(_ c: SIMD8<UInt32>, by m: UInt64) -> (
    high: SIMD8<UInt32>, low: SIMD8<UInt32>
  ) {
    let product = SIMD8<UInt64>(truncatingIfNeeded: c) &* m
    return (
      SIMD8<UInt32>(truncatingIfNeeded: product &>> 32), SIMD8<UInt32>(truncatingIfNeeded: product)
    )
  }

  /// The same products as `multiply`, lanes taken in pairs as 64-bit values (even lane in the
  /// low half): even and odd lanes are multiplied separately, their upper halves known to be
  /// zero (one `vpmuludq` each), and put back in place without leaving the register. 1.6× faster
  /// noise with AVX2, 1.5× slower with SSE, hence the choice per build.
  @usableFromInline @_transparent
  static func multiplyInPairs(_ c: SIMD8<UInt32>, by m: UInt64) -> (
    high: SIMD8<UInt32>, low: SIMD8<UInt32>
  ) {
    let pairs = unsafeBitCast(c, to: SIMD4<UInt64>.self)
    let even = (pairs & 0xFFFF_FFFF) &* m
    let odd = (pairs &>> 32) &* m
    let high = (even &>> 32) | (odd & 0xFFFF_FFFF_0000_0000)
    let low = (even & 0xFFFF_FFFF) | (odd &<< 32)
    return (
      unsafeBitCast(high, to: SIMD8<UInt32>.self), unsafeBitCast(low, to: SIMD8<UInt32>.self)
    )
  }

  /// 23 random bits as the mantissa of a float in `[1, 2)`, minus 1: uniform in `[0, 1)` without
  /// an integer conversion (SSE has none for unsigned lanes; Swift scalarised it).
  @_transparent
  public static func unitInterval(_ words: SIMD8<UInt32>) -> Lanes {
    unsafeBitCast((words &>> 9) | 0x3F80_0000, to: Lanes.self) - 1
  }

  /// Fills the groups `groups` of `fill`: `transform` maps the words of blocks `8g … 8g + 7` to
  /// values `32g … 32g + 31` (vector `j` to values `32g + 8j …`), stored whole.
  @inlinable @inline(__always)
  public static func fillGroups(
    _ fill: RandomFill, groups: Range<Int>, multiplyingInPairs: Bool,
    _ transform: (Words) -> (Lanes, Lanes, Lanes, Lanes)
  ) {
    let (base, begin, end) = (fill.base, fill.begin, fill.end)
    for group in groups {
      let values = transform(
        philoxBlocks(
          seed: fill.seed, stream: fill.stream, counter: fill.start &+ UInt64(group * 8),
          multiplyingInPairs: multiplyingInPairs))
      let first = group * 32
      if first >= begin && first + 32 <= end {
        let output = base + (first - begin)
        VectorMath.store(values.0, to: output)
        VectorMath.store(values.1, to: output + 8)
        VectorMath.store(values.2, to: output + 16)
        VectorMath.store(values.3, to: output + 24)
      } else {
        // A group the buffer only partly covers (its ends): value by value.
        for value in Swift.max(first, begin)..<Swift.min(first + 32, end) {
          let (vector, lane) = ((value - first) / 8, (value - first) % 8)
          let lanes =
            vector == 0 ? values.0 : vector == 1 ? values.1 : vector == 2 ? values.2 : values.3
          base[value - begin] = lanes[lane]
        }
      }
    }
  }

  /// Normal values: Box–Muller on each block's words 0, 1 (`r·cos θ` and `r·sin θ` in value
  /// vectors 0 and 1) and words 2, 3 (vectors 2 and 3).
  @inlinable @inline(__always)
  public static func fillNormal(
    _ fill: RandomFill, groups: Range<Int>, mean: Float, standardDeviation: Float,
    multiplyingInPairs: Bool
  ) {
    fillGroups(fill, groups: groups, multiplyingInPairs: multiplyingInPairs) { words in
      let (v0, v1) = boxMuller(words.0, words.1, mean: mean, standardDeviation: standardDeviation)
      let (v2, v3) = boxMuller(words.2, words.3, mean: mean, standardDeviation: standardDeviation)
      return (v0, v1, v2, v3)
    }
  }

  /// Two vectors of normal values from two of uniform words. Helpers of the kernels are
  /// transparent, not local functions: one of those was called out of line, in the baseline
  /// build, from the AVX2 one (a vector argument passed as AVX to code that expects SSE).
  @usableFromInline @_transparent
  static func boxMuller(
    _ first: SIMD8<UInt32>, _ second: SIMD8<UInt32>, mean: Float, standardDeviation: Float
  ) -> (Lanes, Lanes) {
    // u1 in (0, 1] keeps the logarithm finite.
    let u1 = 1 - unitInterval(first)
    let radius = VectorMath.squareRoot(-2 * VectorMath.logUnitInterval(u1)) * standardDeviation
    let (sine, cosine) = VectorMath.sinCosTwoPi(unitInterval(second))
    return (mean + radius * cosine, mean + radius * sine)
  }

  /// `0` where the uniform value of `word` is below `threshold` (a probability's bits), else
  /// `kept`: both are non-negative floats, which order as integers.
  @usableFromInline @_transparent
  static func dropoutLanes(_ word: SIMD8<UInt32>, threshold: SIMD8<Int32>, kept: Lanes) -> Lanes {
    let uniform = unsafeBitCast(unitInterval(word), to: SIMD8<Int32>.self)
    return VectorMath.select(Lanes(), otherwise: kept, mask: (uniform &- threshold) &>> 31)
  }

  /// Uniform values `low + width·u`, `u` in `[0, 1)`.
  @inlinable @inline(__always)
  public static func fillUniform(
    _ fill: RandomFill, groups: Range<Int>, low: Float, width: Float, multiplyingInPairs: Bool
  ) {
    fillGroups(fill, groups: groups, multiplyingInPairs: multiplyingInPairs) { words in
      (
        low + width * unitInterval(words.0), low + width * unitInterval(words.1),
        low + width * unitInterval(words.2), low + width * unitInterval(words.3)
      )
    }
  }

  /// An inverted-dropout mask: `0` where the uniform value is below `probability`, else `scale`.
  @inlinable @inline(__always)
  public static func fillDropoutMask(
    _ fill: RandomFill, groups: Range<Int>, probability: Float, scale: Float,
    multiplyingInPairs: Bool
  ) {
    let kept = Lanes(repeating: scale)
    let threshold = SIMD8<Int32>(repeating: Int32(bitPattern: probability.bitPattern))
    fillGroups(fill, groups: groups, multiplyingInPairs: multiplyingInPairs) { words in
      (
        dropoutLanes(words.0, threshold: threshold, kept: kept),
        dropoutLanes(words.1, threshold: threshold, kept: kept),
        dropoutLanes(words.2, threshold: threshold, kept: kept),
        dropoutLanes(words.3, threshold: threshold, kept: kept)
      )
    }
  }

  /// `x·Φ(x) = x·(1 + erf(x/√2))/2` in place, with the exp-free erf (absolute error < 4e-7).
  @inlinable @inline(__always)
  public static func gelu(_ values: UnsafeMutablePointer<Float>, count: Int) {
    VectorMath.transform(values, count: count) { x in
      0.5 * x * (1 + VectorMath.erf(x * 0.707_106_78))
    }
  }

  /// GELU's input gradient: `g·(Φ(x) + x·φ(x))` in place of `g`. `Φ(x) = y / x` from the forward
  /// output, so only the density is computed; near 0 (where y / x loses precision) Φ's Taylor
  /// series 1/2 + x·φ(0) is exact to float precision.
  @inlinable @inline(__always)
  public static func geluBackward(
    input x: UnsafePointer<Float>, output y: UnsafePointer<Float>,
    gradient g: UnsafeMutablePointer<Float>, count n: Int
  ) {
    var i = 0
    while i + 16 <= n {
      // Two independent vectors per iteration hide the exp's latency.
      let (first, second) = (
        geluSlope(x + i, y + i, g + i, count: 8),
        geluSlope(x + i + 8, y + i + 8, g + i + 8, count: 8)
      )
      VectorMath.store(first, to: g + i)
      VectorMath.store(second, to: g + i + 8)
      i += 16
    }
    while i < n {
      let count = Swift.min(8, n - i)
      VectorMath.store(geluSlope(x + i, y + i, g + i, count: count), to: g + i, count: count)
      i += 8
    }
  }

  /// One vector of `geluBackward`.
  @usableFromInline @_transparent
  static func geluSlope(
    _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ g: UnsafeMutablePointer<Float>,
    count: Int
  ) -> Lanes {
    let u = VectorMath.load(x, count: count)
    // −1 where |u| < 1e-3 (NaN's magnitude bits exceed it): ordered magnitudes compare as
    // integers.
    let nearZeroBound = SIMD8<Int32>(repeating: Int32(bitPattern: Float(1e-3).bitPattern))
    let magnitude = unsafeBitCast(u, to: SIMD8<Int32>.self) & 0x7FFF_FFFF
    let nearZero = (magnitude &- nearZeroBound) &>> 31
    let safe = VectorMath.select(Lanes(repeating: 1), otherwise: u, mask: nearZero)
    let cdf = VectorMath.select(
      0.5 + 0.398_942_28 * u, otherwise: VectorMath.load(y, count: count) / safe, mask: nearZero)
    return VectorMath.load(g, count: count) * (cdf + u * VectorMath.normalPDF(u))
  }

  /// Softmax of one row in place, eight lanes at a time; the lane-wise max and sum are reduced
  /// lane by lane in a fixed order at the end (not `SIMD.sum()`, whose order is unspecified).
  @inlinable @inline(__always)
  public static func softmax(_ row: UnsafeMutablePointer<Float>, length: Int) {
    var laneMaximum = Lanes(repeating: -.infinity)
    var j = 0
    while j + 8 <= length {
      let v = VectorMath.load(row + j)
      laneMaximum.replace(with: v, where: v .> laneMaximum)
      j += 8
    }
    var maximum = laneMaximum[0]
    for lane in 1..<8 { maximum = Swift.max(maximum, laneMaximum[lane]) }
    for k in j..<length { maximum = Swift.max(maximum, row[k]) }
    let shift = Lanes(repeating: maximum)
    var laneSum = Lanes()
    j = 0
    while j + 8 <= length {
      let e = VectorMath.exp(VectorMath.load(row + j) - shift)
      VectorMath.store(e, to: row + j)
      laneSum += e
      j += 8
    }
    var sum = laneSum[0]
    for lane in 1..<8 { sum += laneSum[lane] }
    if j < length {
      let e = VectorMath.exp(VectorMath.load(row + j, count: length - j) - shift)
      VectorMath.store(e, to: row + j, count: length - j)
      for k in 0..<(length - j) { sum += e[k] }
    }
    let inverse = Lanes(repeating: 1 / sum)
    j = 0
    while j < length {
      let n = Swift.min(8, length - j)
      VectorMath.store(VectorMath.load(row + j, count: n) * inverse, to: row + j, count: n)
      j += 8
    }
  }

  /// The mean and the sum of squared deviations of a channel, in double precision. Eight
  /// running sums, value `p` of a plane going to lane `p mod 8` (a plane's tail is padded with
  /// zeros, which add nothing), reduced in lane order at the end: one fixed order, so the same
  /// bits in both builds and on any thread count, and vector-wide where a single running sum
  /// could not be.
  @inlinable @inline(__always)
  public static func channelMoments(_ planes: ChannelPlanes) -> (mean: Double, squares: Double) {
    var sums = SIMD8<Double>()
    for n in 0..<planes.count {
      let plane = planes.base + n * planes.stride
      var p = 0
      while p < planes.pixels {
        let count = Swift.min(8, planes.pixels - p)
        sums += SIMD8<Double>(VectorMath.load(plane + p, count: count))
        p += 8
      }
    }
    let mean = reduceInOrder(sums) / Double(planes.count * planes.pixels)
    var squares = SIMD8<Double>()
    let centre = SIMD8<Double>(repeating: mean)
    for n in 0..<planes.count {
      let plane = planes.base + n * planes.stride
      var p = 0
      while p < planes.pixels {
        let count = Swift.min(8, planes.pixels - p)
        // Padding lanes are 0 in `values` and in the mask: their deviation is dropped.
        let values = SIMD8<Double>(VectorMath.load(plane + p, count: count))
        let centred = (values - centre) * paddingMask(count)
        squares += centred * centred
        p += 8
      }
    }
    return (mean, reduceInOrder(squares))
  }

  /// `Σ dy` and `Σ dy·(x − mean)·rstd` over a channel (`dy` laid out like `planes`, from
  /// `gradient`), eight running sums as in `channelMoments`, in single precision.
  @inlinable @inline(__always)
  public static func channelGradientSums(
    _ planes: ChannelPlanes, gradient: UnsafePointer<Float>, mean: Float, rstd: Float
  ) -> (sum: Float, sumTimesNorm: Float) {
    var sums = Lanes()
    var sumsTimesNorm = Lanes()
    let (centre, scale) = (Lanes(repeating: mean), Lanes(repeating: rstd))
    for n in 0..<planes.count {
      let plane = planes.base + n * planes.stride
      let gradientPlane = gradient + n * planes.stride
      var p = 0
      while p < planes.pixels {
        let count = Swift.min(8, planes.pixels - p)
        let dy = VectorMath.load(gradientPlane + p, count: count)
        let norm = (VectorMath.load(plane + p, count: count) - centre) * scale
        sums += dy
        sumsTimesNorm += dy * norm
        p += 8
      }
    }
    var sum = sums[0]
    var sumTimesNorm = sumsTimesNorm[0]
    for lane in 1..<8 {
      sum += sums[lane]
      sumTimesNorm += sumsTimesNorm[lane]
    }
    return (sum, sumTimesNorm)
  }

  /// The lanes' sum, lane 0 first.
  @usableFromInline @_transparent
  static func reduceInOrder(_ lanes: SIMD8<Double>) -> Double {
    var total = lanes[0]
    for lane in 1..<8 { total += lanes[lane] }
    return total
  }

  /// 1 in the first `count` lanes, 0 in the rest.
  @usableFromInline @_transparent
  static func paddingMask(_ count: Int) -> SIMD8<Double> {
    if count >= 8 { return SIMD8<Double>(repeating: 1) }
    var mask = SIMD8<Double>()
    for lane in 0..<count { mask[lane] = 1 }
    return mask
  }
}

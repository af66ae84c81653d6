/// A counter-based random stream (Philox4x32-10, Salmon et al. 2011).
///
/// Value `i` of a stream depends only on `(seed, stream, i)`, never on how many threads drew the
/// values before it, so results are the same with any thread count, and the whole state is three
/// integers (saved with a checkpoint, a run resumes the exact sequence).
public struct RandomStream: Sendable, Equatable, Codable {
  public let seed: UInt64
  public let stream: UInt64
  /// The number of 4-word blocks consumed so far.
  public private(set) var position: UInt64
  /// When set, the part of a batch a training pass holds (data-parallel processes each hold a
  /// share): dropout then draws, for its share, exactly the values it would draw for the whole
  /// batch, so the masks do not depend on how the batch is split. Not saved (set per pass).
  public var batchShare: BatchShare? = nil

  private enum CodingKeys: String, CodingKey {
    case seed, stream, position
  }

  public init(seed: UInt64, stream: UInt64 = 0, position: UInt64 = 0) {
    self.seed = seed
    self.stream = stream
    self.position = position
  }

  /// A stream of its own for a named purpose (for example one per dropout site), derived from
  /// this stream's seed.
  public func substream(_ index: UInt64) -> RandomStream {
    RandomStream(seed: seed, stream: stream &* 0x9E37_79B9_7F4A_7C15 &+ index &+ 1)
  }

  /// Four random words of block `counter` (pure: no state).
  @inline(__always)
  static func block(seed: UInt64, stream: UInt64, counter: UInt64) -> SIMD4<UInt32> {
    var c0 = UInt32(truncatingIfNeeded: counter)
    var c1 = UInt32(truncatingIfNeeded: counter >> 32)
    var c2 = UInt32(truncatingIfNeeded: stream)
    var c3 = UInt32(truncatingIfNeeded: stream >> 32)
    var k0 = UInt32(truncatingIfNeeded: seed)
    var k1 = UInt32(truncatingIfNeeded: seed >> 32)
    for _ in 0..<10 {
      let product0 = UInt64(0xD251_1F53) &* UInt64(c0)
      let product1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
      let hi0 = UInt32(truncatingIfNeeded: product0 >> 32)
      let lo0 = UInt32(truncatingIfNeeded: product0)
      let hi1 = UInt32(truncatingIfNeeded: product1 >> 32)
      let lo1 = UInt32(truncatingIfNeeded: product1)
      let next0 = hi1 ^ c1 ^ k0
      let next2 = hi0 ^ c3 ^ k1
      c0 = next0
      c1 = lo1
      c2 = next2
      c3 = lo0
      k0 = k0 &+ 0x9E37_79B9
      k1 = k1 &+ 0xBB67_AE85
    }
    return SIMD4(c0, c1, c2, c3)
  }

  @inline(__always)
  static func unitInterval(_ word: UInt32) -> Float {
    // 24 random bits: exactly representable, in [0, 1).
    Float(word >> 8) * (1.0 / 16_777_216.0)
  }

  /// Fills `buffer` with uniform values in `[low, high)`, 4 per block (see `fillBlocks`).
  public mutating func fillUniform(
    _ buffer: UnsafeMutableBufferPointer<Float>, low: Float, high: Float
  ) {
    let width = high - low
    fillBlocks(buffer) { words in
      (
        low + width * RandomStream.unitInterval(words.0),
        low + width * RandomStream.unitInterval(words.1),
        low + width * RandomStream.unitInterval(words.2),
        low + width * RandomStream.unitInterval(words.3)
      )
    }
  }

  /// Fills `buffer` with an inverted-dropout mask: `0` where a uniform value (the one
  /// `fillUniform` would give) is below `probability`, else `scale`.
  ///
  /// With `part: offset, of: total`, `buffer` gets values `offset ..< offset + buffer.count` of
  /// the mask a buffer of `total` values would get, and the stream moves on as that call does:
  /// Philox is counter-based, so each share of a draw (a data-parallel process's rows) is
  /// computed where it is needed, and the masks do not depend on how a batch is split.
  public mutating func fillDropoutMask(
    _ buffer: UnsafeMutableBufferPointer<Float>, probability: Float, scale: Float,
    part offset: Int = 0, of total: Int? = nil
  ) {
    let kept = VectorMath.Lanes(repeating: scale)
    let threshold = SIMD8<Int32>(repeating: Int32(bitPattern: probability.bitPattern))
    @inline(__always) func mask(_ word: SIMD8<UInt32>) -> VectorMath.Lanes {
      // −1 where `u < probability`, the value dropped: both are non-negative floats, which
      // order as integers.
      let uniform = unsafeBitCast(RandomStream.unitInterval(word), to: SIMD8<Int32>.self)
      return VectorMath.select(
        VectorMath.Lanes(), otherwise: kept, mask: (uniform &- threshold) &>> 31)
    }
    fillBlocks(buffer, offset: offset, total: total ?? buffer.count) { words in
      (mask(words.0), mask(words.1), mask(words.2), mask(words.3))
    }
  }

  /// Fills `buffer` with normal values: Box–Muller on each block's words 0, 1 (`r·cos θ` and
  /// `r·sin θ` in value vectors 0 and 1, see `fillBlocks`) and words 2, 3 (vectors 2 and 3).
  public mutating func fillNormal(
    _ buffer: UnsafeMutableBufferPointer<Float>, mean: Float, standardDeviation: Float
  ) {
    @inline(__always) func pair(_ first: SIMD8<UInt32>, _ second: SIMD8<UInt32>) -> (
      VectorMath.Lanes, VectorMath.Lanes
    ) {
      // u1 in (0, 1] keeps the logarithm finite.
      let u1 = 1 - RandomStream.unitInterval(first)
      let radius = VectorMath.squareRoot(-2 * VectorMath.logUnitInterval(u1)) * standardDeviation
      let (sine, cosine) = VectorMath.sinCosTwoPi(RandomStream.unitInterval(second))
      return (mean + radius * cosine, mean + radius * sine)
    }
    fillBlocks(buffer) { words in
      let (v0, v1) = pair(words.0, words.1)
      let (v2, v3) = pair(words.2, words.3)
      return (v0, v1, v2, v3)
    }
  }

  /// 23 random bits as the mantissa of a float in `[1, 2)`, minus 1: uniform in `[0, 1)` without
  /// an integer conversion (SSE has none for unsigned lanes; Swift scalarised it).
  @inline(__always)
  static func unitInterval(_ words: SIMD8<UInt32>) -> VectorMath.Lanes {
    unsafeBitCast((words &>> 9) | 0x3F80_0000, to: VectorMath.Lanes.self) - 1
  }

  /// Fills `buffer` from consecutive blocks, eight at a time: `transform` maps the words of
  /// blocks `8g … 8g + 7` (lane `i` = block `8g + i`) to values `32g … 32g + 31` (vector `j` to
  /// values `32g + 8j …`), stored whole. `buffer` receives values `offset ..< offset + count` of
  /// a draw of `total` values (the whole draw by default). Runs in parallel: a block's words
  /// depend only on its counter, so the values are the same for any thread count. Advances
  /// `position` by eight blocks per 32 values of the draw (rounded up).
  @inline(__always)
  private mutating func fillBlocks(
    _ buffer: UnsafeMutableBufferPointer<Float>, offset: Int = 0, total: Int? = nil,
    _ transform: (Words) -> (VectorMath.Lanes, VectorMath.Lanes, VectorMath.Lanes, VectorMath.Lanes)
  ) {
    let drawn = Swift.max(total ?? buffer.count, offset + buffer.count)
    defer { position &+= UInt64((drawn + 31) / 32 * 8) }
    guard let base = buffer.baseAddress, buffer.count > 0 else { return }
    let (seed, stream, start) = (seed, stream, position)
    let (begin, end) = (offset, offset + buffer.count)
    let firstGroup = begin / 32
    let groups = (end + 31) / 32 - firstGroup
    Parallel.forEachChunk(groups, grain: 1_024) { chunk in
      for index in chunk {
        let group = firstGroup + index
        let words = RandomStream.blocks(
          seed: seed, stream: stream, counter: start &+ UInt64(group * 8))
        let values = transform(words)
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
            let lanes = [values.0, values.1, values.2, values.3][vector]
            base[value - begin] = lanes[lane]
          }
        }
      }
    }
  }

  typealias Words = (SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>, SIMD8<UInt32>)

  /// Blocks `counter … counter + 7` at once, lane `i` holding block `counter + i`: the same words
  /// as `block(seed:stream:counter:)`, eight lanes wide.
  @inline(__always)
  static func blocks(seed: UInt64, stream: UInt64, counter: UInt64) -> Words {
    let counters = SIMD8<UInt64>(repeating: counter) &+ SIMD8<UInt64>(0, 1, 2, 3, 4, 5, 6, 7)
    var c0 = SIMD8<UInt32>(truncatingIfNeeded: counters)
    var c1 = SIMD8<UInt32>(truncatingIfNeeded: counters &>> 32)
    var c2 = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: stream))
    var c3 = SIMD8<UInt32>(repeating: UInt32(truncatingIfNeeded: stream >> 32))
    var k0 = UInt32(truncatingIfNeeded: seed)
    var k1 = UInt32(truncatingIfNeeded: seed >> 32)
    for _ in 0..<10 {
      let product0 = SIMD8<UInt64>(truncatingIfNeeded: c0) &* 0xD251_1F53
      let product1 = SIMD8<UInt64>(truncatingIfNeeded: c2) &* 0xCD9E_8D57
      let next0 = SIMD8<UInt32>(truncatingIfNeeded: product1 &>> 32) ^ c1 ^ k0
      let next2 = SIMD8<UInt32>(truncatingIfNeeded: product0 &>> 32) ^ c3 ^ k1
      c1 = SIMD8<UInt32>(truncatingIfNeeded: product1)
      c3 = SIMD8<UInt32>(truncatingIfNeeded: product0)
      c0 = next0
      c2 = next2
      k0 = k0 &+ 0x9E37_79B9
      k1 = k1 &+ 0xBB67_AE85
    }
    return (c0, c1, c2, c3)
  }

  /// 64 random bits; consumes one block.
  public mutating func nextWord() -> UInt64 {
    let words = RandomStream.block(seed: seed, stream: stream, counter: position)
    position &+= 1
    return UInt64(words[0]) << 32 | UInt64(words[1])
  }

  /// One uniform value in `[0, 1)`.
  public mutating func nextUniform() -> Float {
    let words = RandomStream.block(seed: seed, stream: stream, counter: position)
    position &+= 1
    return RandomStream.unitInterval(words[0])
  }

  /// A uniform integer in `0..<upperBound` (for shuffles; negligible modulo bias for small bounds
  /// is avoided by rejection).
  public mutating func nextInt(below upperBound: Int) -> Int {
    precondition(upperBound > 0, "empty range")
    let bound = UInt64(upperBound)
    let limit = UInt64.max - UInt64.max % bound
    while true {
      let words = RandomStream.block(seed: seed, stream: stream, counter: position)
      position &+= 1
      let value = UInt64(words[0]) << 32 | UInt64(words[1])
      if value < limit { return Int(value % bound) }
    }
  }
}

/// The rows of a batch one pass holds (`rows`, positions in the whole batch of `count`).
public struct BatchShare: Sendable, Equatable {
  public var rows: Range<Int>
  public var count: Int

  public init(rows: Range<Int>, count: Int) {
    self.rows = rows
    self.count = count
  }
}

extension Tensor {
  /// Uniform values in `[low, high)`.
  public static func uniform(shape: [Int], low: Float, high: Float, random: inout RandomStream)
    -> Tensor
  {
    var result = Tensor(zeros: shape)
    result.withUnsafeMutableBufferPointer { random.fillUniform($0, low: low, high: high) }
    return result
  }

  /// Normal values.
  public static func normal(
    shape: [Int], mean: Float = 0, standardDeviation: Float = 1, random: inout RandomStream
  ) -> Tensor {
    var result = Tensor(zeros: shape)
    result.withUnsafeMutableBufferPointer {
      random.fillNormal($0, mean: mean, standardDeviation: standardDeviation)
    }
    return result
  }

  /// PyTorch's default `nn.Linear` / `nn.Conv2d` weight init: `kaiming_uniform_(a: √5)`, i.e.
  /// uniform in `±1/√fanIn`.
  public static func kaimingUniform(shape: [Int], fanIn: Int, random: inout RandomStream) -> Tensor
  {
    let gain = (2.0 / (1.0 + 5.0)).squareRoot()
    let bound = Float(gain * (3.0 / Double(fanIn)).squareRoot())
    return uniform(shape: shape, low: -bound, high: bound, random: &random)
  }
}

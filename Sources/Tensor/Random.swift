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
    let kernel = VectorKernelChoice.active.fillUniform
    fillBlocks(buffer) { fill, groups in kernel(fill, groups, low, high - low) }
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
    let kernel = VectorKernelChoice.active.fillDropoutMask
    fillBlocks(buffer, offset: offset, total: total ?? buffer.count) { fill, groups in
      kernel(fill, groups, probability, scale)
    }
  }

  /// Fills `buffer` with normal values: Box–Muller on each block's words 0, 1 (`r·cos θ` and
  /// `r·sin θ` in value vectors 0 and 1, see `fillBlocks`) and words 2, 3 (vectors 2 and 3).
  public mutating func fillNormal(
    _ buffer: UnsafeMutableBufferPointer<Float>, mean: Float, standardDeviation: Float
  ) {
    let kernel = VectorKernelChoice.active.fillNormal
    fillBlocks(buffer) { fill, groups in kernel(fill, groups, mean, standardDeviation) }
  }

  /// Fills `buffer` from consecutive blocks, eight at a time: the kernel maps the words of
  /// blocks `8g … 8g + 7` (lane `i` = block `8g + i`) to values `32g … 32g + 31` (see
  /// `Kernels.fillGroups`). `buffer` receives values `offset ..< offset + count` of a draw of
  /// `total` values (the whole draw by default). Runs in parallel: a block's words depend only on
  /// its counter, so the values are the same for any thread count. Advances `position` by eight
  /// blocks per 32 values of the draw (rounded up).
  private mutating func fillBlocks(
    _ buffer: UnsafeMutableBufferPointer<Float>, offset: Int = 0, total: Int? = nil,
    _ kernel: (RandomFill, Range<Int>) -> Void
  ) {
    let drawn = Swift.max(total ?? buffer.count, offset + buffer.count)
    defer { position &+= UInt64((drawn + 31) / 32 * 8) }
    guard let base = buffer.baseAddress, buffer.count > 0 else { return }
    let fill = RandomFill(
      base: base, begin: offset, end: offset + buffer.count, seed: seed, stream: stream,
      start: position)
    let firstGroup = offset / 32
    let groups = (fill.end + 31) / 32 - firstGroup
    Parallel.forEachChunk(groups, grain: 1_024) { chunk in
      kernel(fill, (firstGroup + chunk.lowerBound)..<(firstGroup + chunk.upperBound))
    }
  }

  /// Blocks `counter … counter + 7` at once, lane `i` holding block `counter + i`: the same words
  /// as `block(seed:stream:counter:)`, eight lanes wide.
  static func blocks(seed: UInt64, stream: UInt64, counter: UInt64) -> Kernels.Words {
    Kernels.philoxBlocks(seed: seed, stream: stream, counter: counter, multiplyingInPairs: false)
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

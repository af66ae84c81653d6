import XCTest

@testable import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

final class RandomFillTests: XCTestCase {
  override func tearDown() {
    Parallel.threadCount = 1
    super.tearDown()
  }

  private func draw(threads: Int, count: Int) -> (uniform: [Float], normal: [Float], mask: [Float])
  {
    Parallel.threadCount = threads
    var random = RandomStream(seed: 7, stream: 3)
    var uniform = [Float](repeating: -1, count: count)
    var normal = uniform
    var mask = uniform
    uniform.withUnsafeMutableBufferPointer { random.fillUniform($0, low: 0, high: 1) }
    normal.withUnsafeMutableBufferPointer {
      random.fillNormal($0, mean: 0, standardDeviation: 1)
    }
    var maskStream = RandomStream(seed: 7, stream: 3)
    mask.withUnsafeMutableBufferPointer {
      maskStream.fillDropoutMask($0, probability: 0.25, scale: 4)
    }
    return (uniform, normal, mask)
  }

  /// The parallel fills give bitwise the same values with one and two threads, and an odd count
  /// fills every element.
  func testFillsDoNotDependOnThreadCount() {
    let count = 200_003
    let one = draw(threads: 1, count: count)
    let two = draw(threads: 2, count: count)
    XCTAssertEqual(one.uniform, two.uniform)
    XCTAssertEqual(one.normal, two.normal)
    XCTAssertEqual(one.mask, two.mask)
    XCTAssertFalse(one.uniform.contains(-1))
    XCTAssertFalse(one.normal.contains(-1))
    XCTAssertNotEqual(one.uniform[0], one.uniform[count - 1])
  }

  /// The dropout mask is exactly the thresholded uniform draw of the same stream position.
  func testDropoutMaskThresholdsTheUniformDraw() {
    let values = draw(threads: 2, count: 10_001)
    for (u, m) in zip(values.uniform, values.mask) { XCTAssertEqual(m, u < 0.25 ? 0 : 4) }
    let dropped = values.mask.filter { $0 == 0 }.count
    XCTAssertEqual(Double(dropped) / 10_001, 0.25, accuracy: 0.02)
  }

  /// A fill advances the stream by eight blocks per 32 values, whatever the thread count, so
  /// consecutive fills never share a block.
  func testFillAdvancesPosition() {
    Parallel.threadCount = 2
    var random = RandomStream(seed: 1)
    var buffer = [Float](repeating: 0, count: 40_001)
    buffer.withUnsafeMutableBufferPointer { random.fillNormal($0, mean: 0, standardDeviation: 1) }
    XCTAssertEqual(random.position, 8 * 1_251)
  }

  /// The eight-lane Philox gives exactly the scalar blocks.
  func testEightLaneBlocksMatchScalarBlocks() {
    for counter: UInt64 in [0, 5, 0xFFFF_FFFF - 3, 1 << 40] {
      let words = RandomStream.blocks(seed: 0xDEAD_BEEF_1234, stream: 99, counter: counter)
      for lane in 0..<8 {
        let scalar = RandomStream.block(
          seed: 0xDEAD_BEEF_1234, stream: 99, counter: counter + UInt64(lane))
        XCTAssertEqual(
          SIMD4(words.0[lane], words.1[lane], words.2[lane], words.3[lane]), scalar)
      }
    }
  }

  /// The vectorised Box–Muller equals libm's on the same words, and the values are standard
  /// normal: mean, variance, and the share within one and two standard deviations.
  func testNormalFillMatchesLibmBoxMuller() {
    Parallel.threadCount = 2
    let count = 400_000
    var random = RandomStream(seed: 11)
    var values = [Float](repeating: 0, count: count)
    values.withUnsafeMutableBufferPointer { random.fillNormal($0, mean: 0, standardDeviation: 1) }
    var worst: Float = 0
    for blockIndex in stride(from: 0, to: count / 4, by: 97) {
      let words = RandomStream.block(seed: 11, stream: 0, counter: UInt64(blockIndex))
      // Block 8g + i feeds values 32g + 8j + i (j: cos/sin of words 0-1, then of words 2-3).
      let (group, lane) = (blockIndex / 8, blockIndex % 8)
      for pair in 0..<2 {
        // 23 bits each (`RandomStream.unitInterval` on lanes); u1 in (0, 1].
        let u1 = 1 - Float(words[2 * pair] >> 9) * (1.0 / 8_388_608.0)
        let u2 = Float(words[2 * pair + 1] >> 9) * (1.0 / 8_388_608.0)
        let radius = (-2 * logf(u1)).squareRoot()
        let cosine = 32 * group + 8 * (2 * pair) + lane
        worst = max(worst, abs(values[cosine] - radius * cosf(2 * Float.pi * u2)))
        worst = max(worst, abs(values[cosine + 8] - radius * sinf(2 * Float.pi * u2)))
      }
    }
    XCTAssertLessThan(worst, 2e-5)
    let mean = values.reduce(0, +) / Float(count)
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(count)
    XCTAssertEqual(mean, 0, accuracy: 0.01)
    XCTAssertEqual(variance, 1, accuracy: 0.01)
    let withinOne = Double(values.filter { abs($0) < 1 }.count) / Double(count)
    let withinTwo = Double(values.filter { abs($0) < 2 }.count) / Double(count)
    XCTAssertEqual(withinOne, 0.682_689, accuracy: 0.003)
    XCTAssertEqual(withinTwo, 0.954_500, accuracy: 0.002)
  }

  func testSquareRoot() {
    var worst: Float = 0
    var x: Float = 1e-30
    while x < 1e30 {
      worst = max(
        worst,
        abs(VectorMath.squareRoot(VectorMath.Lanes(repeating: x))[5] - x.squareRoot())
          / x.squareRoot())
      x *= 1.37
    }
    XCTAssertLessThan(worst, 3e-7)
    XCTAssertEqual(VectorMath.squareRoot(VectorMath.Lanes(repeating: 0))[0], 0)
  }

  func testLogAndSinCosAgainstLibm() {
    var worstLog: Float = 0
    var worstTrig: Float = 0
    var u: Float = 1.0 / 16_777_216.0
    while u <= 1 {
      let lanes = VectorMath.Lanes(repeating: u)
      worstLog = max(
        worstLog, abs(VectorMath.logUnitInterval(lanes)[0] - logf(u)) / max(1, abs(logf(u))))
      u *= 1.013
    }
    var t: Float = 0
    while t < 1 {
      let (sine, cosine) = VectorMath.sinCosTwoPi(VectorMath.Lanes(repeating: t))
      worstTrig = max(worstTrig, abs(sine[0] - sinf(2 * Float.pi * t)))
      worstTrig = max(worstTrig, abs(cosine[0] - cosf(2 * Float.pi * t)))
      t += 0.000_37
    }
    // Either side of the √2 mantissa split, in every binade, and each quadrant's edges.
    for exponent in 1...24 {
      for bits: UInt32 in [0x3FB5_04F2, 0x3FB5_04F3, 0x3FB5_04F4, 0x3F80_0000, 0x3FFF_FFFF] {
        let u = Float(bitPattern: bits) / Float(1 << exponent)
        let value = VectorMath.logUnitInterval(VectorMath.Lanes(repeating: u))[0]
        worstLog = max(worstLog, abs(value - logf(u)) / max(1, abs(logf(u))))
      }
    }
    for edge: Float in [0, 0.25, 0.5, 0.75] {
      for t in [edge, edge.nextUp, edge.nextDown, edge + 0.125, edge + Float(0.125).nextUp]
      where t >= 0 {
        let (sine, cosine) = VectorMath.sinCosTwoPi(VectorMath.Lanes(repeating: t))
        worstTrig = max(worstTrig, abs(sine[0] - sinf(2 * Float.pi * t)))
        worstTrig = max(worstTrig, abs(cosine[0] - cosf(2 * Float.pi * t)))
      }
    }
    XCTAssertLessThan(worstLog, 3e-7)
    XCTAssertLessThan(worstTrig, 1e-6)
  }

  /// A share of a dropout draw is exactly that part of the whole draw (uneven splits, groups cut
  /// in the middle), and the stream ends where the whole draw leaves it.
  func testDropoutMaskSharesJoinToTheWholeMask() {
    Parallel.threadCount = 2
    let total = 7 * 1_000 + 13
    var whole = RandomStream(seed: 5, stream: 2)
    var expected = [Float](repeating: -1, count: total)
    expected.withUnsafeMutableBufferPointer {
      whole.fillDropoutMask($0, probability: 0.1, scale: 1 / 0.9)
    }
    for cuts in [[0, 4_005, total], [0, 17, 3_000, 3_001, total]] {
      var joined: [Float] = []
      for (start, end) in zip(cuts, cuts.dropFirst()) {
        var share = RandomStream(seed: 5, stream: 2)
        var part = [Float](repeating: -1, count: end - start)
        part.withUnsafeMutableBufferPointer {
          share.fillDropoutMask($0, probability: 0.1, scale: 1 / 0.9, part: start, of: total)
        }
        XCTAssertEqual(share.position, whole.position)
        joined += part
      }
      XCTAssertEqual(joined, expected, "cuts \(cuts)")
    }
  }
}

import VectorKernels
import VectorKernelsAVX2
import XCTest

@testable import Tensor

/// The two builds of surgeon's elementwise loops (`KernelSet.baseline`, `.avx2`) give the same
/// bits on every input, special values included, and the build is chosen by the CPU's features.
final class VectorKernelTests: XCTestCase {
  private func requireAVX2() throws {
    try XCTSkipUnless(
      VectorKernelChoice.canRunAVX2(.current),
      "this CPU cannot run the AVX2 build (the choice tests below cover it)")
  }

  /// The inputs the release binary's agreement check uses (special values included).
  private func inputs() -> [Float] { VectorKernelAgreement.sampleInputs() }

  private func assertBitwiseEqual(
    _ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    let differing = zip(a, b).enumerated().filter {
      $0.element.0.bitPattern != $0.element.1.bitPattern
    }
    XCTAssertTrue(
      differing.isEmpty,
      "\(what): \(differing.count) values differ, first at \(differing.first.map { "\($0.offset): \($0.element)" } ?? "")",
      file: file, line: line)
  }

  private func run(_ set: KernelSet, _ body: (KernelSet, UnsafeMutablePointer<Float>, Int) -> Void)
    -> [Float]
  {
    var values = inputs()
    values.withUnsafeMutableBufferPointer { body(set, $0.baseAddress!, $0.count) }
    return values
  }

  func testGELUForwardAndBackwardGiveTheSameBitsInBothBuilds() throws {
    try requireAVX2()
    for set in [KernelSet.baseline, .avx2] { XCTAssertFalse(set.name.isEmpty) }
    let forward = [KernelSet.baseline, .avx2].map { run($0) { set, v, n in set.gelu(v, n) } }
    assertBitwiseEqual(forward[0], forward[1], "GELU forward")
    // Not a vacuous check: GELU changed the values.
    XCTAssertNotEqual(forward[0][1], inputs()[1])
    let x = inputs()
    let backward = [KernelSet.baseline, .avx2].map { set -> [Float] in
      var gradient = x.map { $0 * 0.5 + 1 }
      x.withUnsafeBufferPointer { xs in
        forward[0].withUnsafeBufferPointer { ys in
          gradient.withUnsafeMutableBufferPointer {
            set.geluBackward(xs.baseAddress!, ys.baseAddress!, $0.baseAddress!, $0.count)
          }
        }
      }
      return gradient
    }
    assertBitwiseEqual(backward[0], backward[1], "GELU backward")
  }

  func testSoftmaxGivesTheSameBitsInBothBuilds() throws {
    try requireAVX2()
    for length in [1, 7, 8, 13, 64, 77] {
      let rows = [KernelSet.baseline, .avx2].map { set -> [Float] in
        var values = Array(inputs().prefix(length * 9)).map { $0.isNaN ? 0 : $0 }
        values.withUnsafeMutableBufferPointer { buffer in
          for row in 0..<9 { set.softmax(buffer.baseAddress! + row * length, length) }
        }
        return values
      }
      assertBitwiseEqual(rows[0], rows[1], "softmax, rows of \(length)")
    }
  }

  func testRandomFillsGiveTheSameBitsInBothBuilds() throws {
    try requireAVX2()
    // A draw of 1,000 values, written from value 17 on (a partial first and last group).
    func fill(_ set: KernelSet, _ kind: Int) -> [Float] {
      var values = [Float](repeating: -1, count: 983)
      values.withUnsafeMutableBufferPointer { buffer in
        let fill = RandomFill(
          base: buffer.baseAddress!, begin: 17, end: 1_000, seed: 0xABCD, stream: 3, start: 40)
        let groups = 0..<32
        switch kind {
        case 0: set.fillNormal(fill, groups, 0.5, 2)
        case 1: set.fillUniform(fill, groups, -1, 3)
        default: set.fillDropoutMask(fill, groups, 0.3, 1 / 0.7)
        }
      }
      return values
    }
    for (kind, name) in ["normal", "uniform", "dropout"].enumerated() {
      let (baseline, avx2) = (fill(.baseline, kind), fill(.avx2, kind))
      assertBitwiseEqual(baseline, avx2, "\(name) fill")
      XCTAssertFalse(baseline.contains(-1), "\(name): every value written")
    }
  }

  /// Batch norm's channel sums: the same bits in both builds, and right against a sum in double
  /// precision, for planes with and without a partial last vector (49 and 64 pixels).
  func testChannelSumsGiveTheSameBitsInBothBuildsAndAreRight() throws {
    try requireAVX2()
    for pixels in [49, 64] {
      let (count, channels) = (5, 3)
      var random = RandomStream(seed: UInt64(pixels))
      var x = [Float](repeating: 0, count: count * channels * pixels)
      var dy = x
      x.withUnsafeMutableBufferPointer { random.fillNormal($0, mean: 2, standardDeviation: 3) }
      dy.withUnsafeMutableBufferPointer { random.fillNormal($0, mean: 0, standardDeviation: 1) }
      let c = 1
      let values = (0..<count).flatMap { n in
        (0..<pixels).map { x[(n * channels + c) * pixels + $0] }
      }
      let gradients = (0..<count).flatMap { n in
        (0..<pixels).map { dy[(n * channels + c) * pixels + $0] }
      }
      let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
      let squares = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) }
      var results: [(Double, Double, Float, Float)] = []
      for set in [KernelSet.baseline, .avx2] {
        x.withUnsafeBufferPointer { xs in
          dy.withUnsafeBufferPointer { dys in
            let planes = ChannelPlanes(
              base: xs.baseAddress! + c * pixels, count: count, pixels: pixels,
              stride: channels * pixels)
            let moments = set.channelMoments(planes)
            let sums = set.channelGradientSums(
              planes, dys.baseAddress! + c * pixels, Float(moments.mean), 0.5)
            results.append((moments.mean, moments.squares, sums.sum, sums.sumTimesNorm))
          }
        }
      }
      XCTAssertEqual(results[0].0.bitPattern, results[1].0.bitPattern, "mean, \(pixels) pixels")
      XCTAssertEqual(results[0].1.bitPattern, results[1].1.bitPattern, "squares")
      XCTAssertEqual(results[0].2.bitPattern, results[1].2.bitPattern, "Σ dy")
      XCTAssertEqual(results[0].3.bitPattern, results[1].3.bitPattern, "Σ dy·norm")
      XCTAssertEqual(results[0].0, mean, accuracy: 1e-12)
      XCTAssertEqual(results[0].1, squares, accuracy: 1e-9 * squares)
      let sum = gradients.reduce(0.0) { $0 + Double($1) }
      let sumTimesNorm = zip(values, gradients).reduce(0.0) { total, pair in
        total + Double(pair.1) * (Double(pair.0) - Double(Float(mean))) * 0.5
      }
      XCTAssertEqual(Double(results[0].2), sum, accuracy: 1e-4)
      XCTAssertEqual(Double(results[0].3), sumTimesNorm, accuracy: 1e-3)
    }
  }

  /// The check the release binary runs (`surgeon --check-vector-kernels`) finds no difference.
  func testAgreementCheckFindsNoDifference() throws {
    try requireAVX2()
    XCTAssertEqual(VectorKernelAgreement.differences(), [])
  }

  /// The two forms of Philox's multiply (lanes widened, or taken in pairs) give the same words.
  func testPhiloxMultipliesInPairsLikeWidened() {
    for counter: UInt64 in [0, 7, 0xFFFF_FFF9, 1 << 40 | 3] {
      for seed: UInt64 in [0, 0xFFFF_FFFF_FFFF_FFFF, 0x1234_5678_9ABC_DEF0] {
        let widened = Kernels.philoxBlocks(
          seed: seed, stream: 5, counter: counter, multiplyingInPairs: false)
        let paired = Kernels.philoxBlocks(
          seed: seed, stream: 5, counter: counter, multiplyingInPairs: true)
        XCTAssertEqual(widened.0, paired.0)
        XCTAssertEqual(widened.1, paired.1)
        XCTAssertEqual(widened.2, paired.2)
        XCTAssertEqual(widened.3, paired.3)
      }
    }
  }

  func testTheChoiceFollowsTheProcessorAndTheSetting() {
    let capable = Processor(
      vendor: .intel, model: "test", features: VectorKernelChoice.avx2Requirements)
    var olderFeatures = VectorKernelChoice.avx2Requirements
    olderFeatures.subtract([.avx2, .fma, .bmi2])
    let older = Processor(vendor: .intel, model: "test", features: olderFeatures)
    func decide(_ setting: String?, _ processor: Processor) -> String {
      switch VectorKernelChoice.decide(setting: setting, processor: processor) {
      case .success(let name): name
      case .failure(let error): "error: \(error)"
      }
    }
    #if arch(x86_64)
      XCTAssertEqual(decide(nil, capable), "avx2")
      XCTAssertEqual(decide("auto", capable), "avx2")
      XCTAssertEqual(decide("AVX2", capable), "avx2")
    #endif
    XCTAssertEqual(decide(nil, older), "baseline")
    XCTAssertEqual(decide("", older), "baseline")
    XCTAssertEqual(decide("baseline", capable), "baseline")
    // Asking for AVX2 where the CPU lacks it names what is missing and the fix.
    let refused = decide("avx2", older)
    XCTAssertTrue(refused.hasPrefix("error: SURGEON_VECTOR_KERNELS=avx2"), refused)
    XCTAssertTrue(refused.contains("fma, avx2, bmi2"), refused)
    XCTAssertTrue(refused.contains("unset it"), refused)
    let misspelt = decide("avx512", capable)
    XCTAssertTrue(misspelt.contains("use auto, baseline or avx2"), misspelt)
  }

  /// The process runs the best build its CPU allows (unless the setting says otherwise).
  func testTheRunningProcessUsesTheBuildItsProcessorAllows() throws {
    let setting = ProcessInfo.processInfo.environment[VectorKernelChoice.variable]
    try XCTSkipIf(setting != nil, "\(VectorKernelChoice.variable) is set")
    #if arch(x86_64)
      let expected =
        Processor.current.features.isSuperset(of: VectorKernelChoice.avx2Requirements)
        ? "avx2" : "baseline"
    #else
      let expected = "baseline"
    #endif
    XCTAssertEqual(VectorKernelChoice.active.name, expected)
  }
}

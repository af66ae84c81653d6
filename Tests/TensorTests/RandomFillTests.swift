import XCTest

@testable import Tensor

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

  /// A fill advances the stream by `ceil(count / 4)` blocks, whatever the thread count.
  func testFillAdvancesPosition() {
    Parallel.threadCount = 2
    var random = RandomStream(seed: 1)
    var buffer = [Float](repeating: 0, count: 40_001)
    buffer.withUnsafeMutableBufferPointer { random.fillNormal($0, mean: 0, standardDeviation: 1) }
    XCTAssertEqual(random.position, 10_001)
  }
}

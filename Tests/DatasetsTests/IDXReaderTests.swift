import Foundation
import Tensor
import XCTest

@testable import Datasets

/// An IDX file: magic `00 00 type rank`, big-endian u32 dimensions, then `payload`.
func idx(_ dimensions: [Int], type: UInt8 = 0x08, payload: [UInt8]) -> [UInt8] {
  var bytes: [UInt8] = [0, 0, type, UInt8(dimensions.count)]
  for dimension in dimensions {
    bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: dimension >> $0) }
  }
  return bytes + payload
}

final class IDXReaderTests: ScratchTestCase {
  static let limitDescription = sizeDescription(maximumInflatedBytes)

  func testLabelsRoundTrip() throws {
    let path = try write("labels-idx1-ubyte", idx([5], payload: [3, 0, 9, 255, 1]))
    XCTAssertEqual(try IDXReader.readLabels(path: path), [3, 0, 9, 255, 1])
  }

  func testThreeDimensionalImagesGainAChannelAxisAndScaleTo01() throws {
    let pixels: [UInt8] = [0, 1, 2, 3, 4, 5, 128, 200, 250, 251, 254, 255]
    let path = try write("images-idx3-ubyte", idx([2, 2, 3], payload: pixels))
    let images = try IDXReader.readImages(path: path)
    XCTAssertEqual(images.shape, [2, 1, 2, 3])
    XCTAssertEqual(images.scalars, pixels.map { Float($0) / 255 })
    XCTAssertEqual(images.scalars.last, 1)
    XCTAssertEqual(images.scalars.first, 0)
  }

  func testFourDimensionalImagesKeepTheirChannels() throws {
    let pixels = (0..<(2 * 3 * 2 * 2)).map { UInt8($0 * 10) }
    let path = try write("images-idx4-ubyte", idx([2, 3, 2, 2], payload: pixels))
    let images = try IDXReader.readImages(path: path)
    XCTAssertEqual(images.shape, [2, 3, 2, 2])
    XCTAssertEqual(images.scalars, pixels.map { Float($0) / 255 })
  }

  func testGzipIsInflatedTransparently() throws {
    let pixels = (0..<(4 * 5 * 5)).map { UInt8(($0 * 37) % 256) }
    let images = try write("images.gz", gzipped(idx([4, 5, 5], payload: pixels)))
    let labels = try write("labels.gz", gzipped(idx([4], payload: [1, 2, 3, 4])))
    let data = try IDXReader.read(images: images, labels: labels)
    XCTAssertEqual(data.count, 4)
    XCTAssertEqual(data.pixels.shape, [4, 1, 5, 5])
    XCTAssertEqual(data.pixels.scalars, pixels.map { Float($0) / 255 })
    XCTAssertEqual(data.labels, [1, 2, 3, 4])
    // The gzip magic is enough, whatever the name; and `cat a.gz b.gz` (two members) works.
    let file = idx([6], payload: [6, 5, 4, 3, 2, 1])
    let joined = try write(
      "labels-two-members", gzipped(Array(file[..<9])) + gzipped(Array(file[9...])))
    XCTAssertEqual(try IDXReader.readLabels(path: joined), [6, 5, 4, 3, 2, 1])
  }

  func testBatchGathersExamplesInOrder() throws {
    let pixels = (0..<(3 * 2 * 2)).map { UInt8($0) }
    let images = try write("i", idx([3, 2, 2], payload: pixels))
    let labels = try write("l", idx([3], payload: [7, 8, 9]))
    let data = try IDXReader.read(images: images, labels: labels)
    let batch = data.batch([2, 0, 2])
    XCTAssertEqual(batch.pixels.shape, [3, 1, 2, 2])
    XCTAssertEqual(batch.labels, [9, 7, 9])
    let expected: [UInt8] = [8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11]
    XCTAssertEqual(batch.pixels.scalars, expected.map { Float($0) / 255 })
    XCTAssertEqual(data.batch([]).pixels.shape, [0, 1, 2, 2])
  }

  func testNotIDX() throws {
    let path = try write("text.idx", "hello, world")
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: path) }, path: path,
      location: "byte 0", problem: ["not an IDX file", "0x68656C6C", "0x00000803 or 0x00000804"])
    let empty = try write("empty.idx", [])
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: empty) }, path: empty,
      location: "byte 0", problem: ["starts with nothing", "0x00000801"])
  }

  func testUnsupportedElementType() throws {
    let path = try write("floats", idx([1, 1, 1], type: 0x0D, payload: [0, 0, 0, 0]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: path) }, path: path,
      location: "byte 2", problem: ["unsupported IDX element type 0x0D (float32)"],
      fix: ["unsigned bytes"])
  }

  func testWrongDimensionCount() throws {
    let labels = try write("labels", idx([2], payload: [0, 1]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: labels) }, path: labels,
      location: "byte 3", problem: ["a 1-D IDX file (labels)", "expected images: 3-D or 4-D"])
    let images = try write("images", idx([1, 1, 1], payload: [0]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: images) }, path: images,
      location: "byte 3", problem: ["a 3-D IDX file (images)", "expected labels: 1-D"])
  }

  func testTruncatedHeaderAndPayload() throws {
    let header = try write("header", Array(idx([60_000, 28, 28], payload: [])[..<10]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: header) }, path: header,
      location: "byte 10", problem: ["needs 16 bytes", "has 10"], fix: ["truncated"])
    let short = try write(
      "short", idx([60_000, 28, 28], payload: [UInt8](repeating: 1, count: 2000)))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: short) }, path: short,
      location: "byte 2016",
      problem: ["declares 60000 images of 28×28 but holds 2000 bytes", "(2 whole images)"],
      fix: ["truncated"])
    let labels = try write("labels-short", idx([10], payload: [1, 2, 3]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: labels) }, path: labels,
      location: "byte 11", problem: ["declares 10 labels but holds 3 bytes"])
  }

  func testTrailingBytes() throws {
    let path = try write("long", idx([2, 2, 2], payload: [UInt8](repeating: 0, count: 11)))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: path) }, path: path,
      location: "byte 24", problem: ["3 trailing bytes after the 2 images of 2×2"])
  }

  func testZeroDimension() throws {
    let path = try write("zero", idx([0, 28, 28], payload: []))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: path) }, path: path,
      location: "byte 4", problem: ["dimension 0 is 0"])
  }

  func testErrorsInsideGzipCountInflatedBytes() throws {
    let path = try write("short.gz", gzipped(idx([3, 2, 2], payload: [1, 2, 3])))
    assertError(
      { () throws(DatasetError) in try IDXReader.readImages(path: path) }, path: path,
      location: "byte 19 (inflated)", problem: ["declares 3 images of 2×2 but holds 3 bytes"])
  }

  func testGzipNameWithoutGzipData() throws {
    let path = try write("plain.gz", idx([1], payload: [1]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: path) }, path: path,
      location: "byte 0", problem: ["bad gzip header", "0x00 0x00 0x08 0x01"],
      fix: ["without .gz"])
  }

  func testCorruptGzipCarriesZlibsMessage() throws {
    var bytes = try gzipped(idx([64], payload: (0..<64).map { UInt8($0) }))
    // Byte 10 starts the deflate data: block type 3 does not exist. zlib reports the offset
    // where it stopped reading, just past the bad bits.
    bytes[10] = 0xFF
    let path = try write("corrupt.gz", bytes)
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: path) }, path: path,
      location: "byte 11", problem: ["corrupt gzip data (zlib: invalid block type)"],
      fix: ["damaged"])
    // A header with an unknown compression method is zlib's to refuse too.
    var method = try gzipped(idx([1], payload: [1]))
    method[2] = 7
    let methodPath = try write("method.gz", method)
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: methodPath) }, path: methodPath,
      location: "byte 4", problem: ["zlib: unknown compression method"])
  }

  func testTruncatedGzip() throws {
    let bytes = try gzipped(idx([1000], payload: (0..<1000).map { UInt8($0 % 7) }))
    let path = try write("truncated.gz", Array(bytes[..<(bytes.count - 12)]))
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: path) }, path: path,
      location: "byte \(bytes.count - 12)", problem: ["ends early", "truncated"])
  }

  func testGarbageAfterGzip() throws {
    let path = try write("garbage.gz", gzipped(idx([1], payload: [1])) + [1, 2, 3])
    let member = try gzipped(idx([1], payload: [1])).count
    assertError(
      { () throws(DatasetError) in try IDXReader.readLabels(path: path) }, path: path,
      location: "byte \(member)", problem: ["3 bytes of something other than gzip"])
  }

  func testInflateStopsAtTheLimit() throws {
    // 1 MiB of zeros compresses to about 1 KiB: with a 64 KiB limit it must stop, not grow.
    let path = try write("bomb.gz", gzipped([UInt8](repeating: 0, count: 1 << 20)))
    let input = try readFile(path, what: "test")
    let error = thrownError { () throws(DatasetError) in
      try gunzip(input, file: path, limit: 1 << 16)
    }
    XCTAssertEqual(error?.problem, "inflates to more than 64 KiB, the limit for a data file")
    XCTAssertEqual(error?.location?.hasPrefix("byte "), true)
    XCTAssertEqual(IDXReaderTests.limitDescription, "2 GiB")
    XCTAssertEqual(try gunzip(input, file: path, limit: 1 << 21).count, 1 << 20)
  }

  func testImageAndLabelCountsMustMatch() throws {
    let images = try write("images", idx([3, 1, 1], payload: [1, 2, 3]))
    let labels = try write("labels", idx([2], payload: [1, 2]))
    assertError(
      { () throws(DatasetError) in try IDXReader.read(images: images, labels: labels) },
      path: labels, location: nil, problem: ["holds 2 labels but \(images) holds 3 images"],
      fix: ["own labels file"])
  }

  func testFashionMNISTTestSet() throws {
    let directory = "/usr/share/datasets/fashion-mnist"
    let images = directory + "/t10k-images-idx3-ubyte.gz"
    let labels = directory + "/t10k-labels-idx1-ubyte.gz"
    guard FileManager.default.fileExists(atPath: images) else {
      throw XCTSkip("\(images) is absent; apt-get install -y dataset-fashion-mnist to test on it")
    }
    let data = try IDXReader.read(images: images, labels: labels)
    XCTAssertEqual(data.pixels.shape, [10_000, 1, 28, 28])
    XCTAssertEqual(data.count, 10_000)
    XCTAssertEqual(Array(data.labels.prefix(5)), [9, 2, 1, 1, 6])
    var perClass = [Int](repeating: 0, count: 10)
    for label in data.labels {
      XCTAssertTrue((0..<10).contains(label))
      perClass[Int(label)] += 1
    }
    XCTAssertEqual(perClass, [Int](repeating: 1000, count: 10))
    // The byte sum (Python's gzip + sum over the payload) checks every pixel's position.
    let byteSum = data.pixels.withUnsafeBufferPointer { values in
      values.reduce(0) { $0 + Int(($1 * 255).rounded()) }
    }
    XCTAssertEqual(byteSum, 573_469_082)
    XCTAssertEqual(data.pixels.maxAbsolute, 1)
  }
}

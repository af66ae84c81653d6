import Tensor

/// Labelled images: `pixels` row `i` is example `i`, `labels[i]` its class.
public struct LabeledImages: Sendable {
  /// `N × C × H × W` float32 in [0, 1] (the stored byte / 255).
  public var pixels: Tensor
  public var labels: [Int32]

  public init(pixels: Tensor, labels: [Int32]) {
    precondition(pixels.shape.first == labels.count, "one label per image")
    self.pixels = pixels
    self.labels = labels
  }

  public var count: Int { labels.count }

  /// The examples at `indices`, in that order, as one `k × C × H × W` batch.
  ///
  /// - Precondition: every index is in `0..<count`.
  public func batch(_ indices: [Int]) -> (pixels: Tensor, labels: [Int32]) {
    let exampleShape = Array(pixels.shape.dropFirst())
    let stride = Tensor.elementCount(of: exampleShape)
    var result = Tensor(zeros: [indices.count] + exampleShape)
    var batchLabels = [Int32](repeating: 0, count: indices.count)
    pixels.withUnsafeBufferPointer { source in
      result.withUnsafeMutableBufferPointer { destination in
        for (row, index) in indices.enumerated() {
          precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
          let target = UnsafeMutableBufferPointer(
            rebasing: destination[row * stride..<(row + 1) * stride])
          _ = target.update(
            fromContentsOf: UnsafeBufferPointer(
              rebasing: source[index * stride..<(index + 1) * stride]))
          batchLabels[row] = labels[index]
        }
      }
    }
    return (result, batchLabels)
  }
}

/// Reads IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
///
/// An IDX file is a big-endian header, magic `0x0000TTDD` (`TT` the element type, `DD` the number
/// of dimensions) and one u32 per dimension, then the elements in row-major order. Only unsigned
/// bytes (`TT` = 0x08) are read: the format every image dataset in it uses.
public enum IDXReader {
  /// Images: a 3-D file (`N × H × W`, returned as `N × 1 × H × W`) or a 4-D one
  /// (`N × C × H × W`), scaled to [0, 1]. A `.gz` file (or any file starting with the gzip
  /// magic) is inflated first.
  public static func readImages(path: String) throws(DatasetError) -> Tensor {
    let file = try IDXFile(path: path, what: "images", dimensions: [3, 4])
    let shape =
      file.dimensions.count == 3
      ? [file.dimensions[0], 1] + file.dimensions[1...] : file.dimensions
    var pixels = Tensor(zeros: shape)
    // Exactly `byte / 255` in float32, as torchvision's ToTensor computes it.
    var scale = [Float](repeating: 0, count: 256)
    for value in 0..<256 { scale[value] = Float(value) / 255 }
    let source = file.payload
    pixels.withUnsafeMutableBufferPointer { destination in
      scale.withUnsafeBufferPointer { scale in
        for index in 0..<destination.count { destination[index] = scale[Int(source[index])] }
      }
    }
    return pixels
  }

  /// Labels: a 1-D file of N bytes.
  public static func readLabels(path: String) throws(DatasetError) -> [Int32] {
    let file = try IDXFile(path: path, what: "labels", dimensions: [1])
    let source = file.payload
    return [Int32](unsafeUninitializedCapacity: source.count) { destination, initialized in
      for index in 0..<source.count { destination[index] = Int32(source[index]) }
      initialized = source.count
    }
  }

  /// Images and their labels; the counts must match.
  public static func read(images: String, labels: String) throws(DatasetError) -> LabeledImages {
    let pixels = try readImages(path: images)
    let classes = try readLabels(path: labels)
    let imageCount = pixels.shape[0]
    guard imageCount == classes.count else {
      throw DatasetError(
        file: labels,
        problem: "holds \(classes.count) labels but \(images) holds \(imageCount) images",
        fix: "pair the images with their own labels file (train-images with train-labels, "
          + "t10k-images with t10k-labels)")
    }
    return LabeledImages(pixels: pixels, labels: classes)
  }
}

/// A validated IDX file: its dimensions and the bytes after the header.
private struct IDXFile {
  var dimensions: [Int]
  /// Keeps the bytes `payload` points into alive.
  private var buffer: ByteBuffer
  private var headerSize: Int

  var payload: UnsafeBufferPointer<UInt8> {
    UnsafeBufferPointer(rebasing: buffer.bytes[headerSize...])
  }

  private static let typeNames: [UInt8: String] = [
    0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
    0x0E: "float64",
  ]

  init(path: String, what: String, dimensions allowed: Set<Int>) throws(DatasetError) {
    var buffer = try readFile(path, what: "the \(what) file")
    let compressed = path.hasSuffix(".gz") || isGzip(buffer.bytes)
    if compressed { buffer = try gunzip(buffer, file: path) }
    let bytes = buffer.bytes
    // Offsets in a compressed file's errors count inflated bytes; say so.
    func at(_ offset: Int) -> String {
      compressed ? "byte \(offset) (inflated)" : "byte \(offset)"
    }
    let expected = allowed.sorted().map { "\($0)-D" }.joined(separator: " or ")
    let magics = allowed.sorted().map { "0x0000080\($0)" }.joined(separator: " or ")
    guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else {
      let start = bytes.isEmpty ? "nothing" : "0x" + bytes.prefix(4).map(twoHexDigits).joined()
      let example = what == "labels" ? "labels-idx1" : "images-idx3"
      throw DatasetError(
        file: path, location: at(0),
        problem: "not an IDX file: it starts with \(start), not an IDX magic (\(magics) for "
          + "\(what))",
        fix: "pass the IDX \(what) file (for Fashion-MNIST: *-\(example)-ubyte.gz)")
    }
    guard bytes[2] == 0x08 else {
      let name = Self.typeNames[bytes[2]].map { " (\($0))" } ?? " (not an IDX type)"
      throw DatasetError(
        file: path, location: at(2),
        problem: "unsupported IDX element type 0x\(twoHexDigits(bytes[2]))"
          + "\(name); only unsigned bytes (0x08) are read",
        fix: "convert the \(what) to unsigned bytes (0-255)")
    }
    let rank = Int(bytes[3])
    guard allowed.contains(rank) else {
      throw DatasetError(
        file: path, location: at(3),
        problem: "a \(rank)-D IDX file\(rank == 1 ? " (labels)" : rank == 3 ? " (images)" : ""), "
          + "expected \(what): \(expected)",
        fix: "pass the \(what) file here (images and labels are separate IDX files)")
    }
    let headerSize = 4 + 4 * rank
    guard bytes.count >= headerSize else {
      throw DatasetError(
        file: path, location: at(bytes.count),
        problem: "the header of a \(rank)-D IDX file needs \(headerSize) bytes, the file has "
          + "\(bytes.count)",
        fix: "the file is truncated; download or copy it again")
    }
    var dimensions: [Int] = []
    var elements = 1
    var overflow = false
    for axis in 0..<rank {
      let offset = 4 + 4 * axis
      let value = (0..<4).reduce(0) { $0 << 8 | Int(bytes[offset + $1]) }
      dimensions.append(value)
      (elements, overflow) = elements.multipliedReportingOverflow(by: value)
      guard value > 0, !overflow else {
        throw DatasetError(
          file: path, location: at(offset),
          problem: "dimension \(axis) is \(value)" + (overflow ? ", too many elements" : ""),
          fix: "the header is damaged; download or copy the file again")
      }
    }
    let declared = Self.describe(dimensions, what: what)
    let held = bytes.count - headerSize
    if held < elements {
      let exampleSize = elements / dimensions[0]
      throw DatasetError(
        file: path, location: at(bytes.count),
        problem: "declares \(declared) but holds \(held) bytes after the header "
          + "(\(held / exampleSize) whole \(what == "labels" ? "labels" : "images"))",
        fix: "the file is truncated; download or copy it again")
    }
    if held > elements {
      throw DatasetError(
        file: path, location: at(headerSize + elements),
        problem: "\(held - elements) trailing bytes after the \(declared) the header declares",
        fix: "the header's counts are wrong or files were joined; use the original file")
    }
    self.dimensions = dimensions
    self.buffer = buffer
    self.headerSize = headerSize
  }

  /// "60000 images of 28×28", "10000 labels".
  private static func describe(_ dimensions: [Int], what: String) -> String {
    guard dimensions.count > 1 else { return "\(dimensions[0]) \(what)" }
    let rest = dimensions.dropFirst().map(String.init).joined(separator: "×")
    return "\(dimensions[0]) images of \(rest)"
  }
}

/// "0A" for 10: bytes as IDX and gzip documentation write them.
func twoHexDigits(_ byte: UInt8) -> String {
  let digits = String(byte, radix: 16, uppercase: true)
  return digits.count == 1 ? "0" + digits : digits
}

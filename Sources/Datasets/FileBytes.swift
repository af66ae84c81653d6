import Foundation

/// A file's bytes in one heap block, so that parsers walk a raw pointer instead of `Data` or
/// `[UInt8]` (no bounds checks, no copy-on-write checks in the hot loops).
final class ByteBuffer: @unchecked Sendable {
  private(set) var base: UnsafeMutablePointer<UInt8>
  private(set) var count: Int
  private(set) var capacity: Int

  /// An empty buffer with room for `capacity` bytes.
  init(capacity: Int) {
    self.capacity = max(capacity, 1)
    base = .allocate(capacity: self.capacity)
    count = 0
  }

  deinit { base.deallocate() }

  var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

  /// The unused room after `count`.
  var freeSpace: UnsafeMutableBufferPointer<UInt8> {
    UnsafeMutableBufferPointer(start: base + count, count: capacity - count)
  }

  /// Marks `written` bytes of `freeSpace` as filled.
  func commit(_ written: Int) {
    precondition(written >= 0 && count + written <= capacity, "commit beyond capacity")
    count += written
  }

  /// Grows the block to `newCapacity` bytes, keeping what has been written.
  func grow(to newCapacity: Int) {
    guard newCapacity > capacity else { return }
    let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
    newBase.update(from: base, count: count)
    base.deallocate()
    base = newBase
    capacity = newCapacity
  }
}

/// Reads all of `path` with POSIX calls, so that the error can say why (errno) and whether the
/// path is missing, a directory or unreadable.
func readFile(_ path: String, what: String) throws(DatasetError) -> ByteBuffer {
  let descriptor = open(path, O_RDONLY | O_CLOEXEC)
  guard descriptor >= 0 else {
    let code = errno
    if code == ENOENT {
      throw DatasetError(
        file: path, problem: "\(what) does not exist",
        fix: "check the path (relative paths resolve against the working directory "
          + "\(FileManager.default.currentDirectoryPath))")
    }
    throw DatasetError(
      file: path, problem: "cannot open \(what): \(String(cString: strerror(code)))",
      fix: "check that the file is readable")
  }
  defer { close(descriptor) }
  var status = stat()
  guard fstat(descriptor, &status) == 0 else {
    throw DatasetError(
      file: path, problem: "cannot inspect \(what): \(String(cString: strerror(errno)))")
  }
  if (status.st_mode & S_IFMT) == S_IFDIR {
    throw DatasetError(
      file: path, problem: "\(what) is a directory", fix: "name the file inside it")
  }
  let buffer = ByteBuffer(capacity: max(Int(status.st_size), 0) + 1)
  while true {
    // Pipes and growing files may hold more than fstat said.
    if buffer.freeSpace.isEmpty { buffer.grow(to: (buffer.count + 1) * 2) }
    let space = buffer.freeSpace
    let got = read(descriptor, space.baseAddress, space.count)
    if got < 0 {
      if errno == EINTR { continue }
      throw DatasetError(
        file: path, problem: "cannot read \(what): \(String(cString: strerror(errno)))",
        fix: "check that the file is readable")
    }
    if got == 0 { break }
    buffer.commit(got)
  }
  return buffer
}

/// The 1-based line holding byte `offset` (counting "\n"), for errors found by byte position.
func lineNumber(at offset: Int, in bytes: UnsafeBufferPointer<UInt8>) -> Int {
  var line = 1
  for index in 0..<min(offset, bytes.count) where bytes[index] == UInt8(ascii: "\n") { line += 1 }
  return line
}

/// The offset of the first byte that is not valid UTF-8 (overlong forms, surrogates and values
/// above U+10FFFF are invalid, as in `String(validating:)`), or nil when all of `bytes` is valid.
func firstInvalidUTF8(in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
  let count = bytes.count
  guard let base = bytes.baseAddress else { return nil }
  var index = 0
  while index < count {
    let lead = base[index]
    if lead < 0x80 {
      index += 1
      continue
    }
    let length: Int
    var lower: UInt8 = 0x80
    var upper: UInt8 = 0xBF
    switch lead {
    case 0xC2...0xDF: length = 2
    case 0xE0:
      length = 3
      lower = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: length = 3
    case 0xED:
      length = 3
      upper = 0x9F
    case 0xF0:
      length = 4
      lower = 0x90
    case 0xF1...0xF3: length = 4
    case 0xF4:
      length = 4
      upper = 0x8F
    default: return index
    }
    guard index + length <= count else { return index }
    let second = base[index + 1]
    guard second >= lower && second <= upper else { return index }
    for offset in 2..<length where base[index + offset] & 0xC0 != 0x80 { return index }
    index += length
  }
  return nil
}

/// Throws when `bytes` is not UTF-8, naming the byte offset and line; `skipped` is the number of
/// bytes before `bytes` in the file (a byte-order mark), so offsets are the file's.
func validateUTF8(
  _ bytes: UnsafeBufferPointer<UInt8>, skipped: Int, file: String
) throws(DatasetError) {
  guard let offset = firstInvalidUTF8(in: bytes) else { return }
  let byte = String(bytes[offset], radix: 16, uppercase: true)
  throw DatasetError(
    file: file, location: "line \(lineNumber(at: offset, in: bytes))",
    problem: "invalid UTF-8 at byte offset \(offset + skipped) (byte 0x\(byte))",
    fix: "save the file as UTF-8 (for example iconv -f latin1 -t utf-8)")
}

import CZlib

/// The most a gzip file may inflate to: far above any IDX dataset (Fashion-MNIST's training
/// images are 47 MB), low enough that a gzip bomb stops with an error instead of exhausting memory.
let maximumInflatedBytes = 2 << 30

/// Whether `bytes` starts with the gzip magic (1F 8B).
func isGzip(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
  bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
}

/// Inflates a gzip file (one or more members, RFC 1952) with zlib, streaming into a buffer that
/// grows up to `limit` bytes. Errors name the compressed byte offset where zlib stopped reading,
/// at most a few bytes past the damage.
func gunzip(
  _ input: ByteBuffer, file: String, limit: Int = maximumInflatedBytes
) throws(DatasetError) -> ByteBuffer {
  let bytes = input.bytes
  guard isGzip(bytes) else {
    let start = bytes.isEmpty ? ["nothing"] : bytes.prefix(4).map { "0x" + twoHexDigits($0) }
    throw DatasetError(
      file: file, location: "byte 0",
      problem: "bad gzip header: the file starts with \(start.joined(separator: " ")), "
        + "not the gzip magic 0x1F 0x8B",
      fix: "name an uncompressed file without .gz, or compress it with gzip")
  }
  guard let inputBase = bytes.baseAddress else {
    throw DatasetError(file: file, problem: "the gzip file is empty")
  }
  // The trailer's ISIZE is the size mod 2^32 of the last member: a good first guess.
  var guess = bytes.count * 4
  if bytes.count >= 18 {
    let trailer = bytes.count - 4
    let size = (0..<4).reduce(0) { $0 | Int(bytes[trailer + $1]) << (8 * $1) }
    // Deflate cannot exceed ~1032:1, so a forged trailer cannot force a huge first allocation.
    guess = max(1, min(size, bytes.count * 1032))
  }
  let output = ByteBuffer(capacity: min(guess, limit))

  var stream = z_stream()
  var status = inflateInit2_(
    &stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
  guard status == Z_OK else {
    throw DatasetError(file: file, problem: "zlib could not start inflating (error \(status))")
  }
  defer { inflateEnd(&stream) }

  var inputOffset = 0
  while true {
    if output.freeSpace.isEmpty {
      guard output.capacity < limit else {
        throw DatasetError(
          file: file, location: "byte \(inputOffset)",
          problem: "inflates to more than \(sizeDescription(limit)), the limit for a data file",
          fix: "check that this is the dataset you meant (a gzip bomb or the wrong file)")
      }
      output.grow(to: min(limit, output.capacity * 2))
    }
    let space = output.freeSpace
    let givenIn = min(bytes.count - inputOffset, Int(UInt32.max))
    let givenOut = min(space.count, Int(UInt32.max))
    stream.next_in = UnsafeMutablePointer(mutating: inputBase + inputOffset)
    stream.avail_in = uInt(givenIn)
    stream.next_out = space.baseAddress
    stream.avail_out = uInt(givenOut)
    status = inflate(&stream, Z_NO_FLUSH)
    inputOffset += givenIn - Int(stream.avail_in)
    output.commit(givenOut - Int(stream.avail_out))

    switch status {
    case Z_OK:
      continue
    case Z_STREAM_END:
      guard inputOffset < bytes.count else { return output }
      let rest = UnsafeBufferPointer(rebasing: bytes[inputOffset...])
      guard isGzip(rest) else {
        throw DatasetError(
          file: file, location: "byte \(inputOffset)",
          problem: "\(rest.count) bytes of something other than gzip follow the compressed data",
          fix: "the file is damaged or two files were joined; download it again")
      }
      inflateReset(&stream)  // Another member (as `cat a.gz b.gz` makes): inflate it too.
    case Z_BUF_ERROR where stream.avail_in == 0 && inputOffset == bytes.count:
      throw DatasetError(
        file: file, location: "byte \(inputOffset)",
        problem: "the gzip data ends early (the file is truncated)",
        fix: "download or copy the file again")
    case Z_BUF_ERROR:
      continue  // The output was full: grow it on the next pass.
    case Z_MEM_ERROR:
      throw DatasetError(file: file, problem: "out of memory while inflating the gzip data")
    default:
      let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
      throw DatasetError(
        file: file, location: "byte \(inputOffset)",
        problem: "corrupt gzip data (zlib: \(message))",
        fix: "the file is damaged; download or copy it again")
    }
  }
}

/// "2 GiB", "64 KiB", "100 bytes".
func sizeDescription(_ bytes: Int) -> String {
  for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] where bytes >= 1 << shift {
    return bytes % (1 << shift) == 0 ? "\(bytes >> shift) \(unit)" : "\(bytes) bytes"
  }
  return "\(bytes) bytes"
}

import Foundation

/// A file's zlib CRC-32 and length: enough to tell that an input changed between two runs (a
/// retrained base checkpoint, a regenerated data file), cheap enough to take of a model's
/// weights on every run.
public struct FileFingerprint: Sendable, Codable, Equatable, Hashable, CustomStringConvertible {
  /// 8 lowercase hex digits.
  public var crc32: String
  public var bytes: Int

  public init(crc32: String, bytes: Int) {
    self.crc32 = crc32
    self.bytes = bytes
  }

  /// The fingerprint of the file at `path`; nil when it is not a readable regular file.
  public static func of(path: String) -> FileFingerprint? {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
      !isDirectory.boolValue,
      let checksum = try? BuildIdentity.fileChecksum(atPath: path)
    else { return nil }
    return FileFingerprint(crc32: checksum.crc32, bytes: checksum.bytes)
  }

  public var description: String { "CRC-32 \(crc32), \(bytes) bytes" }
}

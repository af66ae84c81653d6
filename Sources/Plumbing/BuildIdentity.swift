import CZlib
import Foundation

/// Which surgeon wrote a result: its version and a checksum of the executable file. Sweeps run
/// for days across builds; the checksum tells apart results of builds that share a version
/// (`python3 -c "import zlib,sys; print('%08x' % zlib.crc32(open(sys.argv[1],'rb').read()))"
/// surgeon` prints the same digits for a binary on disk).
public struct BuildIdentity: Sendable, Codable, Equatable {
  /// surgeon's release version.
  public static let releaseVersion = "0.1.0"

  public var version: String
  /// CRC-32 (zlib's) of the running executable, 8 lowercase hex digits; nil when the file
  /// cannot be read.
  public var executableCRC32: String?
  public var executableBytes: Int?

  public init(version: String, executableCRC32: String?, executableBytes: Int?) {
    self.version = version
    self.executableCRC32 = executableCRC32
    self.executableBytes = executableBytes
  }

  enum CodingKeys: String, CodingKey {
    case version
    case executableCRC32 = "executable_crc32"
    case executableBytes = "executable_bytes"
  }

  /// This process's build; the executable is read once, on first use.
  public static let current: BuildIdentity = {
    let checksum = runningExecutablePath().flatMap { try? fileChecksum(atPath: $0) }
    return BuildIdentity(
      version: releaseVersion, executableCRC32: checksum?.crc32, executableBytes: checksum?.bytes)
  }()

  /// The executable's path: `/proc/self/exe` where the kernel provides it (it follows the file
  /// even when the process was started through a symlink), else the path the process was
  /// started with.
  static func runningExecutablePath() -> String? {
    let procfs = "/proc/self/exe"
    if FileManager.default.isReadableFile(atPath: procfs) { return procfs }
    return Bundle.main.executablePath
  }

  /// zlib's CRC-32 of a file's bytes (hex) and its length, read in 1 MiB chunks.
  public static func fileChecksum(atPath path: String) throws -> (crc32: String, bytes: Int) {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    var crc = crc32(0, nil, 0)
    var bytes = 0
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
      chunk.withUnsafeBytes { buffer in
        crc = crc32(
          crc, buffer.bindMemory(to: UInt8.self).baseAddress, UInt32(buffer.count))
      }
      bytes += chunk.count
    }
    return (String(format: "%08lx", UInt(crc)), bytes)
  }

  /// `0.1.0, executable crc32 1a2b3c4d` (or without the checksum when it is unknown).
  public var description: String {
    executableCRC32.map { "\(version), executable crc32 \($0)" } ?? version
  }
}

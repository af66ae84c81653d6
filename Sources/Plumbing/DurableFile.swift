import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why a durable write failed: the step, the file and the system's error code, so each caller can
/// phrase it for its own reader.
public struct DurableWriteError: Error, Sendable, Equatable, CustomStringConvertible {
  public enum Step: Sendable, Equatable {
    /// Creating the temporary file in `directory`.
    case create
    /// Writing `byteCount` bytes (in total, so far) to the temporary file.
    case write(byteCount: Int)
    /// fsync or close of the temporary file.
    case flush
    /// Renaming the temporary file over the target.
    case rename
  }

  public var step: Step
  /// The file being written.
  public var path: String
  /// The directory the file and its temporary file are in.
  public var directory: String
  /// errno at the failure.
  public var code: Int32

  /// The system's words for `code` ("No space left on device").
  public var reason: String { String(cString: strerror(code)) }

  /// What failed and why, as a clause ("cannot flush /x/y to disk: Input/output error").
  public var description: String { "cannot \(action): \(reason)" }

  /// What was being done: "create a temporary file in /x", "write 10 bytes to /x/y", …
  public var action: String {
    switch step {
    case .create: "create a temporary file in \(directory)"
    case .write(let count): "write \(count) bytes to \(path)"
    case .flush: "flush \(path) to disk"
    case .rename: "rename a temporary file to \(path)"
    }
  }
}

/// A file written so that a crash, a kill or a full disk leaves either the old file or the
/// complete new one, never a torn one: the bytes go to a temporary file in the same directory,
/// which is flushed to disk, renamed over the target, and the directory flushed so that the
/// rename itself survives a power cut.
///
/// Write in pieces with `write(_:)` (a stream of predictions), then `commit()`; an uncommitted
/// file is removed by `discard()` or when the value goes away.
public final class DurableFile {
  /// The file that `commit()` replaces.
  public let url: URL
  /// Where the bytes go until `commit()`.
  public let temporaryPath: String
  private var descriptor: Int32
  private var byteCount = 0

  /// Creates the temporary file beside `url` (a hidden, random name that no other writer picks).
  public init(replacing url: URL) throws(DurableWriteError) {
    self.url = url
    let directory = url.deletingLastPathComponent().path
    let prefix = directory + "/." + url.lastPathComponent + ".tmp-"
    var path = ""
    var descriptor: Int32 = -1
    for _ in 0..<16 {
      path = prefix + String(UInt64.random(in: 0...UInt64.max), radix: 16)
      descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
      if descriptor >= 0 || errno != EEXIST { break }
    }
    guard descriptor >= 0 else {
      throw DurableWriteError(step: .create, path: url.path, directory: directory, code: errno)
    }
    self.temporaryPath = path
    self.descriptor = descriptor
  }

  deinit { discard() }

  private var directory: String { url.deletingLastPathComponent().path }

  private func failure(_ step: DurableWriteError.Step, code: Int32 = errno) -> DurableWriteError {
    DurableWriteError(step: step, path: url.path, directory: directory, code: code)
  }

  /// Appends `bytes`, retrying short writes and interrupted calls.
  public func write(_ bytes: UnsafeRawBufferPointer) throws(DurableWriteError) {
    byteCount += bytes.count
    var offset = 0
    while offset < bytes.count {
      let count = systemWrite(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
      if count < 0 {
        if errno == EINTR { continue }
        throw failure(.write(byteCount: byteCount))
      }
      offset += count
    }
  }

  /// Appends `bytes`.
  public func write(_ bytes: some ContiguousBytes) throws(DurableWriteError) {
    let result = bytes.withUnsafeBytes { raw in
      Result { () throws(DurableWriteError) in try write(raw) }
    }
    try result.get()
  }

  /// Flushes the file, renames it over `url` and flushes the directory. A failure before the
  /// rename removes the temporary file and leaves `url` as it was.
  public func commit() throws(DurableWriteError) {
    guard descriptor >= 0 else { throw failure(.flush, code: EBADF) }
    let synced = fsync(descriptor) == 0
    let syncCode = errno
    let closed = close(descriptor) == 0
    let closeCode = errno
    descriptor = -1
    guard synced, closed else {
      unlink(temporaryPath)
      throw failure(.flush, code: synced ? closeCode : syncCode)
    }
    guard rename(temporaryPath, url.path) == 0 else {
      let code = errno
      unlink(temporaryPath)
      throw failure(.rename, code: code)
    }
    // A failure here leaves the complete file in place, so it is not an error.
    let directoryDescriptor = open(directory, O_RDONLY | O_CLOEXEC)
    if directoryDescriptor >= 0 {
      _ = fsync(directoryDescriptor)
      _ = close(directoryDescriptor)
    }
  }

  /// Removes the temporary file, leaving `url` as it was; nothing after a commit.
  public func discard() {
    guard descriptor >= 0 else { return }
    close(descriptor)
    descriptor = -1
    unlink(temporaryPath)
  }

  /// Writes `bytes` to `url` durably in one go.
  public static func write(_ bytes: some ContiguousBytes, to url: URL) throws(DurableWriteError) {
    let file = try DurableFile(replacing: url)
    try file.write(bytes)
    try file.commit()
  }
}

/// POSIX write(2), named so the method `write` can call it.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
  #if canImport(Glibc)
    Glibc.write(descriptor, bytes, count)
  #else
    Darwin.write(descriptor, bytes, count)
  #endif
}

extension DurableWriteError: LocalizedError {
  /// The description, so callers that print `localizedDescription` say what failed.
  public var errorDescription: String? { description }
}

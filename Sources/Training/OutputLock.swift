import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An exclusive hold on an output directory for the life of the process: two runs on one
/// `output.dir` would each remove the other's staging directory as a killed run's leftover.
///
/// The lock is `flock` on `PARENT/.NAME.lock`, which holds the holder's pid for the message the
/// next run prints. The kernel releases it when the process ends, however it ends (a SIGKILL
/// leaves no stale lock); the file itself stays, so it is never removed under a waiting run.
public struct OutputLock: Sendable {
  public let file: URL
  private let descriptor: Int32

  /// Takes the lock or fails at once, naming the process that holds it.
  public init(destination: URL) throws(OutputError) {
    let standardized = destination.standardizedFileURL
    let parent = standardized.deletingLastPathComponent()
    try OutputFiles.createDirectory(parent)
    file = parent.appendingPathComponent(".\(standardized.lastPathComponent).lock")
    let descriptor = open(file.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else { throw OutputError.system("create the lock file", file.path) }
    while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
      if errno == EINTR { continue }
      let code = errno
      var bytes = [UInt8](repeating: 0, count: 32)
      let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, 32, 0) }
      close(descriptor)
      guard code == EWOULDBLOCK else { throw OutputError.system("lock", file.path, code: code) }
      let holder = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
      throw OutputError(
        path: standardized.path,
        problem:
          "another surgeon apply (pid \(holder.isEmpty ? "unknown" : holder)) is writing this output directory",
        fix: "wait for it to finish, or choose another output.dir")
    }
    self.descriptor = descriptor
    let pid = Array("\(getpid())\n".utf8)
    _ = ftruncate(descriptor, 0)
    _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
  }

  /// Releases the lock before the process ends (tests; a run keeps it to its end).
  public func release() {
    close(descriptor)
  }
}

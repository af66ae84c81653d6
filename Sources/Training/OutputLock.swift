import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An exclusive hold on an output directory while a run writes it: two runs on one
/// `output.dir` would each remove the other's staging directory as a killed run's leftover.
///
/// The lock is `flock` on `PARENT/.NAME.lock`, which holds the holder's pid for the message the
/// next run prints. The kernel releases it when the process ends, however it ends (a SIGKILL
/// leaves at most a file nobody holds, which the next run takes over); `release` removes it.
public final class OutputLock: @unchecked Sendable {
  public let file: URL
  private var descriptor: Int32

  /// Takes the lock or fails at once, naming the process that holds it.
  public init(destination: URL) throws(OutputError) {
    let standardized = destination.standardizedFileURL
    let parent = standardized.deletingLastPathComponent()
    try OutputFiles.createDirectory(parent)
    file = parent.appendingPathComponent(".\(standardized.lastPathComponent).lock")
    while true {
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
      // The holder removes the file as it releases it: a lock taken on a removed file guards
      // nothing, so take the one now at the path.
      var held = stat()
      var current = stat()
      if fstat(descriptor, &held) == 0, stat(file.path, &current) == 0,
        held.st_ino == current.st_ino, held.st_dev == current.st_dev
      {
        self.descriptor = descriptor
        break
      }
      close(descriptor)
    }
    let pid = Array("\(getpid())\n".utf8)
    _ = ftruncate(descriptor, 0)
    _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }
  }

  /// The pid of the run writing `destination` now, nil when no run holds its lock (a probe
  /// with a shared lock, released at once: it never blocks the holder or a next run).
  public static func holder(of destination: URL) -> String? {
    let standardized = destination.standardizedFileURL
    let path = standardized.deletingLastPathComponent()
      .appendingPathComponent(".\(standardized.lastPathComponent).lock").path
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    if flock(descriptor, LOCK_SH | LOCK_NB) == 0 {
      flock(descriptor, LOCK_UN)
      return nil
    }
    guard errno == EWOULDBLOCK else { return nil }
    var bytes = [UInt8](repeating: 0, count: 32)
    let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, 32, 0) }
    let pid = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
      .trimmingCharacters(in: .whitespacesAndNewlines)
    return pid.isEmpty ? "unknown" : pid
  }

  /// Removes the lock file and releases the lock (in that order, so no run can take a lock on
  /// the removed file and believe it holds the directory).
  public func release() {
    guard descriptor >= 0 else { return }
    unlink(file.path)
    close(descriptor)
    descriptor = -1
  }

  deinit { release() }
}

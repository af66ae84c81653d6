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
  public convenience init(destination: URL) throws(OutputError) {
    let standardized = destination.standardizedFileURL
    try self.init(
      file: Self.lockFile(standardized, kind: "lock"), guarding: standardized,
      holder: "another surgeon apply")
  }

  /// `PARENT/.NAME.KIND` beside `destination`.
  static func lockFile(_ destination: URL, kind: String) -> URL {
    let standardized = destination.standardizedFileURL
    return standardized.deletingLastPathComponent()
      .appendingPathComponent(".\(standardized.lastPathComponent).\(kind)")
  }

  private init(file: URL, guarding standardized: URL, holder who: String) throws(OutputError) {
    try OutputFiles.createDirectory(file.deletingLastPathComponent())
    self.file = file
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
            "\(who) (pid \(holder.isEmpty ? "unknown" : holder)) is writing this output directory",
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
    holder(lockFile: lockFile(destination, kind: "lock"))
  }

  private static func holder(lockFile: URL) -> String? {
    let path = lockFile.path
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

extension OutputLock {
  /// Why a claim was refused: the pid of the process that holds the directory.
  public struct Held: Error, Sendable, Equatable {
    public var pid: String

    public init(pid: String) { self.pid = pid }
  }

  /// Claims `destination` for a runner that prepares a run before `apply` takes the output lock
  /// (`surgeon compare` starts `apply`, which spends minutes on calibration and refits first):
  /// an exclusive hold on `PARENT/.NAME.claim` until `release`, taken atomically, so two
  /// runners never start the same run. Refused while another runner holds the claim or a run
  /// (an `apply` started by hand, say) holds the output lock.
  public static func claim(_ destination: URL) -> Result<OutputLock, Held> {
    let standardized = destination.standardizedFileURL
    let file = lockFile(standardized, kind: "claim")
    let claim: OutputLock
    do {
      claim = try OutputLock(file: file, guarding: standardized, holder: "another runner")
    } catch {
      return .failure(Held(pid: holder(lockFile: file) ?? "unknown"))
    }
    if let pid = holder(of: standardized) {
      claim.release()
      return .failure(Held(pid: pid))
    }
    return .success(claim)
  }

  /// The pid of the runner that claimed `destination`, else of the run writing it; nil when
  /// neither is held.
  public static func claimant(of destination: URL) -> String? {
    holder(lockFile: lockFile(destination, kind: "claim")) ?? holder(of: destination)
  }
}

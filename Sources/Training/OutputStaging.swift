import Foundation
import Plumbing

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A file-system problem while writing outputs: the path, what failed (with the system's
/// reason) and what to do.
public typealias OutputError = UserError

extension UserError {
  /// The error for a failed system call on `path`, with a fix that fits `errno`.
  static func system(_ action: String, _ path: String, code: Int32 = errno) -> OutputError {
    let reason = String(cString: strerror(code))
    let fix: String
    switch code {
    case ENOSPC, EDQUOT, EFBIG:
      fix = "free disk space (or raise the quota or file-size limit) and run again"
    case EACCES, EPERM, EROFS:
      fix = "make the directory writable or choose another output.dir"
    case ENOTDIR:
      fix = "a file stands where a directory is needed; move it or choose another output.dir"
    default:
      fix = "check the path and the file system"
    }
    return OutputError(path: path, problem: "cannot \(action): \(reason)", fix: fix)
  }

  /// Any error met while writing outputs, as a message that names `path` and a fix: the
  /// package's own errors as they describe themselves, Foundation's with their POSIX reason.
  public static func describing(_ error: any Error, at path: String) -> String {
    if let error = error as? OutputError { return error.description }
    if let error = error as? DurableWriteError {
      return system(error.action, path, code: error.code).description
    }
    if let error = error as? POSIXError {
      return system("write", path, code: error.code.rawValue).description
    }
    if let error = error as? CocoaError {
      if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError,
        underlying.domain == NSPOSIXErrorDomain
      {
        return system("write", path, code: Int32(underlying.code)).description
      }
      let codes: [CocoaError.Code: Int32] = [
        .fileWriteOutOfSpace: ENOSPC, .fileWriteNoPermission: EACCES,
        .fileWriteVolumeReadOnly: EROFS, .fileNoSuchFile: ENOENT, .fileWriteFileExists: EEXIST,
      ]
      if let code = codes[error.code] { return system("write", path, code: code).description }
      return OutputError(
        path: path, problem: "cannot write: \(error.localizedDescription)",
        fix: "check free disk space and that the directory is writable"
      ).description
    }
    // The package's own errors name their file and the fix.
    return String(describing: error)
  }
}

/// Output files that are never seen half-written.
///
/// The final outputs of a run (model, config, report, figures, results, compressed/, peft/) are
/// built in a staging directory beside the destination (`PARENT/.NAME.partial-PID`, the same
/// file system, so renames are atomic) and then renamed into the destination one entry at a
/// time, the files named in `last` at the end. A kill at any moment leaves every entry of the
/// destination either the previous complete one or the new complete one, and the staging
/// directory, which the next run on the same destination removes.
public struct OutputStaging: Sendable {
  /// Where the outputs belong.
  public let destination: URL
  /// Where they are built; write into this.
  public let directory: URL

  /// Creates an empty staging directory for `destination` (removing any a killed run left).
  public init(destination: URL) throws(OutputError) {
    self.destination = destination.standardizedFileURL
    let parent = self.destination.deletingLastPathComponent()
    try OutputFiles.createDirectory(parent)
    Self.removeLeftovers(of: self.destination)
    directory = parent.appendingPathComponent(
      ".\(self.destination.lastPathComponent).partial-\(getpid())")
    try OutputFiles.createDirectory(directory)
  }

  /// The staging directories (and directories being replaced) killed runs left beside
  /// `destination`.
  public static func leftovers(of destination: URL) -> [URL] {
    let standardized = destination.standardizedFileURL
    let parent = standardized.deletingLastPathComponent()
    let prefixes = ["partial", "replaced"].map { ".\(standardized.lastPathComponent).\($0)-" }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
    return names.filter { name in prefixes.contains { name.hasPrefix($0) } }.sorted().map {
      parent.appendingPathComponent($0)
    }
  }

  static func removeLeftovers(of destination: URL) {
    for leftover in leftovers(of: destination) {
      try? FileManager.default.removeItem(at: leftover)
    }
  }

  /// Renames everything staged into `destination` (created when missing), `last` at the end
  /// in their order, then removes the staging directory.
  public func commit(last: [String] = []) throws(OutputError) {
    try OutputFiles.createDirectory(destination)
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
    } catch {
      throw OutputError.system("list \(directory.path)", directory.path)
    }
    // Directories a killed commit moved aside.
    let existing = (try? FileManager.default.contentsOfDirectory(atPath: destination.path)) ?? []
    for name in names {
      for aside in existing where aside.hasPrefix(".\(name).old-") {
        try? FileManager.default.removeItem(at: destination.appendingPathComponent(aside))
      }
    }
    let ordered = names.filter { !last.contains($0) }.sorted() + last.filter(names.contains)
    for name in ordered {
      try Self.replace(
        destination.appendingPathComponent(name), with: directory.appendingPathComponent(name))
    }
    try? FileManager.default.removeItem(at: directory)
  }

  /// Renames the staging directory itself to `destination`: the whole directory appears at
  /// once. An existing destination (--overwrite) is first renamed aside and removed only once
  /// the new one is in place, so a failure before that point leaves it untouched.
  public func replaceDestination() throws(OutputError) {
    let aside = destination.deletingLastPathComponent().appendingPathComponent(
      ".\(destination.lastPathComponent).replaced-\(getpid())")
    let exists = FileManager.default.fileExists(atPath: destination.path)
    if exists {
      guard rename(destination.path, aside.path) == 0 else {
        throw OutputError.system("move the old \(destination.path) aside", destination.path)
      }
    }
    guard rename(directory.path, destination.path) == 0 else {
      let error = OutputError.system(
        "rename \(directory.path) to \(destination.path)", destination.path)
      if exists { rename(aside.path, destination.path) }
      throw error
    }
    if exists { try? FileManager.default.removeItem(at: aside) }
  }

  /// Removes the staging directory (the outputs are not wanted).
  public func discard() {
    try? FileManager.default.removeItem(at: directory)
  }

  /// `target` becomes `source` atomically for a file (rename over it); a directory target is
  /// first renamed aside, so at every moment `target` is the old or the new complete entry, or
  /// (between two renames of a directory) absent.
  static func replace(_ target: URL, with source: URL) throws(OutputError) {
    var isDirectory: ObjCBool = false
    let exists = FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory)
    if exists && isDirectory.boolValue {
      let aside = target.deletingLastPathComponent().appendingPathComponent(
        ".\(target.lastPathComponent).old-\(getpid())")
      try? FileManager.default.removeItem(at: aside)
      guard rename(target.path, aside.path) == 0 else {
        throw OutputError.system("move \(target.path) aside", target.path)
      }
      guard rename(source.path, target.path) == 0 else {
        throw OutputError.system("rename \(source.path) to \(target.path)", target.path)
      }
      try? FileManager.default.removeItem(at: aside)
      return
    }
    guard rename(source.path, target.path) == 0 else {
      throw OutputError.system("rename \(source.path) to \(target.path)", target.path)
    }
  }
}

/// Directory creation and whole-file writes with POSIX calls, so a failure names the path and
/// the system's reason (no space left, permission denied, read-only file system).
public enum OutputFiles {
  /// Creates `url` and its missing parents; an existing directory is fine.
  public static func createDirectory(_ url: URL) throws(OutputError) {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw OutputError.system("create the directory \(url.path)", url.path, code: ENOTDIR)
      }
      return
    }
    let parent = url.deletingLastPathComponent()
    if parent.path != url.path { try createDirectory(parent) }
    guard mkdir(url.path, 0o777) == 0 || errno == EEXIST else {
      throw OutputError.system("create the directory \(url.path)", url.path)
    }
  }

  /// Writes `data` to `url` durably (`DurableFile`): a crash leaves the old file or the new one.
  public static func write(_ data: Data, to url: URL) throws(OutputError) {
    let path = url.path
    do {
      try DurableFile.write(data, to: url)
    } catch {
      throw OutputError.system(error.action, path, code: error.code)
    }
  }
}

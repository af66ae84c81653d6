import Foundation

/// The directory private to this fuzzing process (in memory where /dev/shm exists).
func scratchPath() -> String {
  let base =
    FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
  return "\(base)/surgeon-fuzz-\(getpid())"
}

/// A file path private to this fuzzing process, for the readers that take a path; removed at
/// exit.
let scratchDirectory: String = {
  let directory = scratchPath()
  mkdir(directory, 0o700)
  atexit { try? FileManager.default.removeItem(atPath: scratchPath()) }
  return directory
}()

/// Writes the fuzzer's input to `name` inside `scratchDirectory` and returns the path.
func scratchFile(_ name: String, _ data: UnsafeRawBufferPointer) -> String {
  let path = "\(scratchDirectory)/\(name)"
  let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
  guard descriptor >= 0 else {
    print("fuzz: cannot create \(path)")
    exit(2)
  }
  var written = 0
  while written < data.count {
    let result = write(descriptor, data.baseAddress! + written, data.count - written)
    guard result > 0 else {
      print("fuzz: cannot write \(path)")
      exit(2)
    }
    written += result
  }
  close(descriptor)
  return path
}

/// The bytes libFuzzer passes (its pointer may be null when the size is 0).
func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
  UnsafeRawBufferPointer(start: size == 0 ? nil : data, count: size)
}

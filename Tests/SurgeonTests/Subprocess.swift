import Foundation

/// What a run of the built `surgeon` binary printed and returned.
struct SurgeonRun {
  var status: Int32
  var output: String
  var error: String
}

/// Runs the built `surgeon` with one BLAS thread; standard output and error go to files, so
/// neither can fill a pipe and stall the other. `environment` sets (or, with nil, removes)
/// variables on top of this process's.
func runSurgeon(
  _ arguments: [String], input: String? = nil, in directory: URL? = nil,
  environment overrides: [String: String?] = [:]
) throws -> SurgeonRun {
  let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
    "surgeon-run-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: scratch) }
  let outputURL = scratch.appendingPathComponent("stdout")
  let errorURL = scratch.appendingPathComponent("stderr")
  try Data().write(to: outputURL)
  try Data().write(to: errorURL)
  let process = Process()
  process.executableURL = Bundle.main.bundleURL.appendingPathComponent("surgeon")
  process.arguments = arguments
  if let directory { process.currentDirectoryURL = directory }
  var environment = ProcessInfo.processInfo.environment
  environment["SURGEON_THREADS"] = "1"
  for (name, value) in overrides { environment[name] = value }
  process.environment = environment
  let output = try FileHandle(forWritingTo: outputURL)
  let error = try FileHandle(forWritingTo: errorURL)
  let stdin = Pipe()
  process.standardOutput = output
  process.standardError = error
  process.standardInput = stdin
  try process.run()
  if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
  try stdin.fileHandleForWriting.close()
  process.waitUntilExit()
  try output.close()
  try error.close()
  return SurgeonRun(
    status: process.terminationStatus,
    output: try String(contentsOf: outputURL, encoding: .utf8),
    error: try String(contentsOf: errorURL, encoding: .utf8))
}

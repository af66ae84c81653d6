import Datasets
import Foundation
import XCTest

/// A scratch directory per test, removed afterwards, for the small files the tests write.
class ScratchTestCase: XCTestCase {
  private(set) var scratch = URL(fileURLWithPath: "/")

  override func setUpWithError() throws {
    scratch = FileManager.default.temporaryDirectory
      .appendingPathComponent("DatasetsTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: scratch)
  }

  /// Writes `bytes` to `name` in the scratch directory and returns its path.
  @discardableResult
  func write(_ name: String, _ bytes: [UInt8]) throws -> String {
    let url = scratch.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url.path
  }

  /// Writes `text` as UTF-8.
  @discardableResult
  func write(_ name: String, _ text: String) throws -> String {
    try write(name, Array(text.utf8))
  }

  /// Compresses `bytes` with the system's gzip (what produced Fashion-MNIST's files).
  func gzipped(_ bytes: [UInt8]) throws -> [UInt8] {
    let input = scratch.appendingPathComponent("gzip-input-\(UUID().uuidString)")
    try Data(bytes).write(to: input)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["gzip", "-n", "-c", input.path]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 0, "gzip failed")
    return Array(output)
  }
}

/// The error `body` throws; fails the test when it returns instead.
func thrownError<Result>(
  _ body: () throws(DatasetError) -> Result, file: StaticString = #filePath, line: UInt = #line
) -> DatasetError? {
  do {
    _ = try body()
    XCTFail("expected a DatasetError", file: file, line: line)
    return nil
  } catch {
    return error
  }
}

/// Checks an error's place and that its problem and fix mention `problem` and `fix`.
func assertError<Result>(
  _ body: () throws(DatasetError) -> Result, path: String, location: String?,
  problem: [String], fix: [String] = [], file: StaticString = #filePath, line: UInt = #line
) {
  guard let error = thrownError(body, file: file, line: line) else { return }
  XCTAssertEqual(error.file, path, "file", file: file, line: line)
  XCTAssertEqual(error.location, location, "location of: \(error)", file: file, line: line)
  for part in problem {
    XCTAssertTrue(
      error.problem.contains(part), "problem lacks \"\(part)\": \(error)", file: file, line: line)
  }
  for part in fix {
    XCTAssertTrue(
      error.fix?.contains(part) == true, "fix lacks \"\(part)\": \(error)", file: file, line: line)
  }
  XCTAssertNotNil(error.fix, "every error says how to fix it: \(error)", file: file, line: line)
}

/// The repository root (three levels above this file).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()

import Foundation
import Plumbing
import XCTest

final class ClosestNameTests: XCTestCase {
  func testTypos() {
    let keys = ["rank", "alpha", "dropout", "targets"]
    XCTAssertEqual(closestName(to: "rnak", in: keys, closeness: .typo), "rank")
    XCTAssertEqual(closestName(to: "RANK", in: keys, closeness: .typo), "rank")
    XCTAssertEqual(closestName(to: "dropot", in: keys, closeness: .typo), "dropout")
    XCTAssertEqual(closestName(to: "alhpa", in: keys, closeness: .typo), "alpha")
    XCTAssertNil(closestName(to: "ranks2", in: keys, closeness: .typo))
    XCTAssertNil(closestName(to: "zzz", in: keys, closeness: .typo))
  }

  func testShortenings() {
    XCTAssertEqual(closestName(to: "movie", in: ["text", "movie_name"]), "movie_name")
    XCTAssertEqual(closestName(to: "txt", in: ["text", "label"]), "text")
    XCTAssertNil(closestName(to: "label", in: ["movie_name"]))
  }

  func testEditsCountCase() {
    XCTAssertEqual(
      closestName(to: "sedes", in: ["seeds", "name"], closeness: .edits(atMost: 2)), "seeds")
    XCTAssertNil(closestName(to: "SEEDS", in: ["seeds"], closeness: .edits(atMost: 2)))
  }

  func testOffersRolesAndKeys() {
    let groups = [
      (kind: "key", names: ["text", "label", "group_by"]),
      (kind: "role", names: ["key", "query", "value", "output"]),
    ]
    XCTAssertEqual(closestName(to: "valeu", among: groups)?.description, "role 'value'")
    XCTAssertEqual(closestName(to: "lable", among: groups)?.description, "key 'label'")
    XCTAssertNil(closestName(to: "nothing-like-it", among: groups))
  }

  func testNearestNamesByDottedSuffix() {
    let names = [
      "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key", "pooler.dense",
    ]
    XCTAssertEqual(nearestNames(to: "qurey", in: names, count: 1), [names[0]])
    XCTAssertEqual(
      nearestNames(to: "dense", in: names + names, count: 2), ["pooler.dense", names[1]])
  }

  func testEditDistance() {
    XCTAssertEqual(editDistance("kitten", "sitting"), 3)
    XCTAssertEqual(editDistance("rnak", "rank"), 2)
    XCTAssertEqual(editDistance("rnak", "rank", transpositions: true), 1)
    XCTAssertEqual(editDistance("", "abc"), 3)
  }
}

final class UserErrorTests: XCTestCase {
  func testRendering() {
    XCTAssertEqual(
      UserError(file: "data.csv", location: "line 3", problem: "row 2 has no label", fix: "add one")
        .description,
      "data.csv:line 3: error: row 2 has no label; add one")
    XCTAssertEqual(
      UserError(file: "m.safetensors", problem: "the file is empty").description,
      "m.safetensors: error: the file is empty")
  }

  func testQuotedInAnotherMessageHasNoSecondErrorPrefix() {
    let inner = UserError(file: "data.csv", location: "line 3", problem: "bad", fix: "fix it")
    let outer = UserError(file: "m.yaml", location: "4:9", problem: inner.quoted)
    XCTAssertEqual(outer.description, "m.yaml:4:9: error: data.csv:line 3: bad; fix it")
    XCTAssertEqual(outer.description.components(separatedBy: "error:").count, 2)
  }
}

final class DurableFileTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("DurableFileTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  private func contents() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
  }

  func testWriteReplacesTheFileAndLeavesNoTemporaryFile() throws {
    let target = directory.appendingPathComponent("out.json")
    try Data("old".utf8).write(to: target)
    try DurableFile.write(Array("new contents".utf8), to: target)
    XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "new contents")
    XCTAssertEqual(try contents(), ["out.json"])
  }

  func testStreamedPiecesAppearOnlyOnCommit() throws {
    let target = directory.appendingPathComponent("stream.txt")
    let file = try DurableFile(replacing: target)
    try file.write(Array("one ".utf8))
    try file.write(Data("two".utf8))
    XCTAssertFalse(FileManager.default.fileExists(atPath: target.path))
    try file.commit()
    XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "one two")
    XCTAssertEqual(try contents(), ["stream.txt"])
  }

  func testDiscardLeavesTheOldFileAndNoTemporaryFile() throws {
    let target = directory.appendingPathComponent("kept.txt")
    try Data("old".utf8).write(to: target)
    do {
      let file = try DurableFile(replacing: target)
      try file.write(Array("half".utf8))
      XCTAssertEqual(try contents().count, 2)
    }  // Dropped without a commit.
    XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "old")
    XCTAssertEqual(try contents(), ["kept.txt"])
  }

  func testMissingDirectoryFailsAtCreate() {
    let target = directory.appendingPathComponent("absent/out.txt")
    XCTAssertThrowsError(try DurableFile.write(Array("x".utf8), to: target)) { error in
      let failure = error as? DurableWriteError
      XCTAssertEqual(failure?.step, .create)
      XCTAssertEqual(failure?.code, ENOENT)
      XCTAssertEqual(failure?.reason, "No such file or directory")
    }
  }
}

final class FileContentsTests: XCTestCase {
  /// A file's bytes; an empty file is empty data (not Foundation's read, which leaks a buffer
  /// on it); no file, or a directory, is nil.
  func testReadsFilesEmptyFilesAndNothing() throws {
    let directory = try makeTemporaryDirectory("surgeon-file-contents")
    let file = directory.appendingPathComponent("a.json")
    try Data("{}\n".utf8).write(to: file)
    XCTAssertEqual(FileContents.read(file.path), Data("{}\n".utf8))
    let empty = directory.appendingPathComponent("empty.json")
    try Data().write(to: empty)
    XCTAssertEqual(FileContents.read(empty.path), Data())
    XCTAssertNil(FileContents.read(directory.appendingPathComponent("missing.json").path))
    XCTAssertNil(FileContents.read(directory.path))
  }
}

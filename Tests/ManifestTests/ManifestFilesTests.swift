import Foundation
import Manifest
import XCTest

final class ManifestFilesTests: XCTestCase {
  var directory = ""

  override func setUpWithError() throws {
    directory = NSTemporaryDirectory() + "surgeon-files-\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
      atPath: directory + "/data/folder", withIntermediateDirectories: true)
    XCTAssertTrue(
      FileManager.default.createFile(
        atPath: directory + "/data/train.csv", contents: Data("text,label\n".utf8)))
  }

  override func tearDownWithError() throws {
    try FileManager.default.removeItem(atPath: directory)
  }

  func testAMissingTestFileIsReportedAndAnExistingTrainFileIsNot() throws {
    let manifest = try valid(
      trainManifest(
        data: "    test: {format: csv, path: data/test.csv, text: text, label: label}\n"))
    XCTAssertEqual(
      ManifestFiles.missingDataFiles(manifest, relativeTo: directory).map(\.text),
      [
        "m.yaml:11:11: error: train.data.test: data file 'data/test.csv' does not exist; put the "
          + "file there or fix the path"
      ])
  }

  func testEveryFileOfAnIDXSourceIsChecked() throws {
    let text = """
      surgeon: 1
      name: t
      model: {family: vgg, preset: vgg11, weights: random}
      train:
        task: image-classification
        data:
          train: {format: idx, images: data/folder, labels: \(directory)/data/train.csv}
          test: {format: idx, images: \(directory)/nope.gz, labels: data/nope.gz}
        steps: 1

      """
    let manifest = try valid(text)
    XCTAssertEqual(
      ManifestFiles.missingDataFiles(manifest, relativeTo: directory).map(\.message),
      [
        "train.data.train: data file 'data/folder' is a directory, not a file",
        "train.data.test: data file '\(directory)/nope.gz' does not exist",
        "train.data.test: data file 'data/nope.gz' does not exist",
      ])
  }

  func testNothingIsMissingWithoutATrainSectionOrWithTheFilesInPlace() throws {
    XCTAssertEqual(ManifestFiles.missingDataFiles(try valid(modelHead), relativeTo: directory), [])
    XCTAssertEqual(
      ManifestFiles.missingDataFiles(try valid(trainManifest()), relativeTo: directory), [])
    XCTAssertEqual(
      ManifestFiles.missingDataFiles(try valid(trainManifest()), relativeTo: directory + "/data")
        .count, 1, "relative paths resolve against the given directory")
  }
}

import Datasets
import Foundation
import Models
import Prediction
import Tensor
import XCTest

/// Prediction inputs checked against a checkpoint, batched inference, and the written lines.
final class PredictionTests: XCTestCase {
  private var directory: URL!

  override func setUpWithError() throws {
    BLAS.setThreadCount(1)
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "PredictionTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    addTeardownBlock { [directory] in try? FileManager.default.removeItem(at: directory!) }
  }

  /// The tiny BERT checkpoint the command-line tests use (2 classes, 64-token vocabulary).
  private let tinyBERT = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("SurgeonTests/Fixtures/tiny-bert")

  private func write(_ text: String, _ name: String) throws -> String {
    let url = directory.appendingPathComponent(name)
    try Data(text.utf8).write(to: url)
    return url.path
  }

  private func readTexts(_ path: String, format: TableFormat = .csv) throws -> PredictionInput {
    try PredictionReader.readTexts(
      path: path, format: format, textColumn: "text", labelColumn: "label",
      labelNames: ["no", "yes"], checkpoint: "ckpt")
  }

  private func error(_ body: () throws -> Void) -> String {
    do {
      try body()
      XCTFail("no error")
      return ""
    } catch {
      return "\(error)"
    }
  }

  func testTablesWithAndWithoutTheLabelColumn() throws {
    let labelled = try readTexts(try write("id,text,label\n1,\"a, b\",yes\n2,c,no\n", "a.csv"))
    guard case .texts(let texts) = labelled.examples else { return XCTFail("not texts") }
    XCTAssertEqual(texts, ["a, b", "c"])
    XCTAssertEqual(labelled.labels, [1, 0])
    let unlabelled = try readTexts(try write("text\nx\ny\nz\n", "b.csv"))
    XCTAssertEqual(unlabelled.count, 3)
    XCTAssertNil(unlabelled.labels)
    let lines = try readTexts(
      try write("{\"text\": \"x\"}\n\n{\"text\": \"y\", \"label\": \"no\"}\n", "c.jsonl"),
      format: .jsonl)
    XCTAssertNil(lines.labels, "the first object has no label, so the file has none")
    let partly = error {
      _ = try readTexts(
        try write("{\"text\": \"x\", \"label\": \"yes\"}\n{\"text\": \"y\"}\n", "d.jsonl"),
        format: .jsonl)
    }
    XCTAssertTrue(partly.contains("d.jsonl:line 2: error: no field 'label'"), partly)
  }

  func testBadTablesNameTheFileAndTheFix() throws {
    let noText = error { _ = try readTexts(try write("review,label\nx,yes\n", "e.csv")) }
    XCTAssertTrue(noText.contains("e.csv:line 1: error: no column 'text'"), noText)
    let unknown = error { _ = try readTexts(try write("text,label\nx,yes\ny,maybe\n", "f.csv")) }
    XCTAssertTrue(unknown.contains("f.csv:line 3: error: row 2 has label 'maybe'"), unknown)
    XCTAssertTrue(unknown.contains("'no', 'yes'") && unknown.contains("ckpt/config.json"), unknown)
    let empty = error { _ = try readTexts(try write("", "g.csv")) }
    XCTAssertTrue(empty.contains("g.csv: error: the file is empty"), empty)
    let headerOnly = error { _ = try readTexts(try write("text,label\n", "h.csv")) }
    XCTAssertTrue(headerOnly.contains("h.csv:line 1: error: the file has a header but no rows"))
    let emptyLines = error { _ = try readTexts(try write("\n\n", "i.jsonl"), format: .jsonl) }
    XCTAssertTrue(emptyLines.contains("i.jsonl: error: the file is empty"), emptyLines)
  }

  /// An IDX images file: `count` images of `size`×`size`, one channel, bytes `index + pixel`.
  private func idxImages(count: Int, size: Int, name: String) throws -> String {
    var bytes: [UInt8] = [0, 0, 8, 3]
    for dimension in [count, size, size] {
      bytes += [0, 0, UInt8(dimension >> 8), UInt8(dimension & 0xFF)]
    }
    for index in 0..<count * size * size { bytes.append(UInt8(index % 256)) }
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url.path
  }

  func testImagesMustHaveTheCheckpointsSizeAndLabelsItsClasses() throws {
    let images = try idxImages(count: 3, size: 28, name: "images-idx3-ubyte")
    let input = try PredictionReader.readImages(
      path: images, labelsPath: nil, imageShape: [1, 28, 28], classCount: 10, checkpoint: "ckpt")
    XCTAssertEqual(input.count, 3)
    let wrongSize = error {
      _ = try PredictionReader.readImages(
        path: images, labelsPath: nil, imageShape: [1, 32, 32], classCount: 10, checkpoint: "ckpt")
    }
    XCTAssertTrue(
      wrongSize.contains(
        "images-idx3-ubyte: error: holds images of 1 channel of 28×28 but the checkpoint takes 1 channel of 32×32"
      ),
      wrongSize)
    XCTAssertTrue(wrongSize.contains("resize the images to 32×32"), wrongSize)
    let labels = directory.appendingPathComponent("labels-idx1-ubyte")
    try Data([0, 0, 8, 1, 0, 0, 0, 3, 1, 12, 2]).write(to: labels)
    let unknown = error {
      _ = try PredictionReader.readImages(
        path: images, labelsPath: labels.path, imageShape: [1, 28, 28], classCount: 10,
        checkpoint: "ckpt")
    }
    XCTAssertTrue(
      unknown.contains("labels-idx1-ubyte:record 2: error: label 12 is not a class"), unknown)
    let empty = error {
      _ = try PredictionReader.readImages(
        path: try write("", "empty-idx3-ubyte"), labelsPath: nil, imageShape: [1, 28, 28],
        classCount: 10, checkpoint: "ckpt")
    }
    XCTAssertTrue(empty.contains("empty-idx3-ubyte:byte 0: error: not an IDX file"), empty)
  }

  func testWriterFormatsLinesAndCountsAccuracy() {
    let probabilities = Tensor(shape: [3, 2], scalars: [0.25, 0.75, 0.875, 0.125, 0.5, 0.5])
    var json = PredictionWriter(format: .jsonLines, labelNames: ["no", "y\"es"])
    XCTAssertEqual(json.header, "")
    XCTAssertEqual(
      json.lines(probabilities, firstRow: 4, labels: [1, 1, 0][...]),
      """
      {"row": 4, "label": "y\\"es", "probabilities": {"no": 0.25, "y\\"es": 0.75}}
      {"row": 5, "label": "no", "probabilities": {"no": 0.875, "y\\"es": 0.125}}
      {"row": 6, "label": "no", "probabilities": {"no": 0.5, "y\\"es": 0.5}}

      """)
    // Rows 4 and 6 right (a tie goes to the first class), row 5 wrong.
    XCTAssertEqual(json.correct, 2)
    XCTAssertEqual(json.labelled, 3)
    XCTAssertEqual(json.accuracy ?? 0, 2.0 / 3.0, accuracy: 1e-12)
    var csv = PredictionWriter(
      format: PredictionOutputFormat(fileName: "out.CSV"), labelNames: ["a,b", "c"])
    XCTAssertEqual(csv.header, "row,label,\"a,b\",c\n")
    XCTAssertEqual(
      csv.lines(probabilities, firstRow: 1, labels: nil).split(separator: "\n").first,
      "1,c,0.25,0.75")
    XCTAssertNil(csv.accuracy)
  }

  func testBatchedProbabilitiesAreTheSoftmaxOfTheFullLengthForward() throws {
    let checkpoint = try CheckpointLoader.load(directory: tinyBERT)
    guard case .bert(let bert) = checkpoint.model else { return XCTFail("not a BERT") }
    let predictor = try Predictor(checkpoint: checkpoint, maxLength: 12)
    XCTAssertEqual(predictor.labelNames, ["LABEL_0", "LABEL_1"])
    // Short and long texts: the long one is truncated to 12 tokens, the batch padded to it.
    let texts = ["a b", "c d e f g h i j k l m n o p q", "z", "a [MASK] b"]
    let input = PredictionInput(examples: .texts(texts), labels: nil)
    let tokenizer = try XCTUnwrap(predictor.tokenizer)
    for batchSize in [1, 3, 4] {
      var rows: [[Float]] = []
      var start = 0
      while start < texts.count {
        let range = start..<min(texts.count, start + batchSize)
        let p = try predictor.probabilities(of: input, rows: range)
        rows += (0..<range.count).map { row in (0..<2).map { p[flat: row * 2 + $0] } }
        start = range.upperBound
      }
      // The reference: every text padded to max length 12, as the trainer evaluates.
      let encoded = tokenizer.encodeBatch(texts, maxLength: 12)
      var random = RandomStream(seed: 0)
      let logits = try XCTUnwrap(
        bert.forward(
          TextBatch(
            batchSize: 4, length: 12, inputIDs: encoded.inputIDs,
            attentionMask: encoded.attentionMask),
          mode: .evaluation, random: &random
        ).outputs.logits)
      for row in 0..<4 {
        let z = (0..<2).map { Double(logits[flat: row * 2 + $0]) }
        let total = z.map { Foundation.exp($0 - z.max()!) }.reduce(0, +)
        for c in 0..<2 {
          let expected = Foundation.exp(z[c] - z.max()!) / total
          XCTAssertEqual(Double(rows[row][c]), expected, accuracy: 1e-5, "batch \(batchSize)")
        }
      }
    }
  }
}

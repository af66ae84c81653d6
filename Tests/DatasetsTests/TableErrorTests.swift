import Datasets
import Foundation
import XCTest

/// Every bad table is an error naming the file, the line and the fix.
final class TableErrorTests: ScratchTestCase {
  private func read(
    _ path: String, _ format: TableFormat = .csv, text: String = "text", label: String = "label",
    group: String? = nil, labels: [String]? = nil
  ) -> () throws(DatasetError) -> LabeledTexts {
    { () throws(DatasetError) in
      try TableReader.read(
        path: path, format: format, textColumn: text, labelColumn: label, groupColumn: group,
        labels: labels)
    }
  }

  func testDescriptionFormat() {
    let located = DatasetError(
      file: "data/x.csv", location: "line 12", problem: "row 11 is ragged", fix: "quote it")
    XCTAssertEqual(located.description, "data/x.csv:line 12: error: row 11 is ragged; quote it")
    let whole = DatasetError(file: "data/x.csv", problem: "the file is empty")
    XCTAssertEqual(whole.description, "data/x.csv: error: the file is empty")
  }

  func testMissingFileAndDirectory() throws {
    let missing = scratch.appendingPathComponent("absent.csv").path
    assertError(
      read(missing), path: missing, location: nil, problem: ["does not exist"],
      fix: ["working directory"])
    assertError(
      read(scratch.path), path: scratch.path, location: nil, problem: ["is a directory"])
  }

  func testUnreadableFile() throws {
    // Reading /proc/self/mem at offset 0 fails (EIO) even for root.
    let memory = "/proc/self/mem"
    if FileManager.default.fileExists(atPath: memory) {
      assertError(
        read(memory), path: memory, location: nil,
        problem: ["cannot read the data file: Input/output error"], fix: ["readable"])
    }
    guard getuid() != 0 else { return }  // Root reads files whatever their permissions.
    let path = try write("locked.csv", "text,label\na,b\n")
    chmod(path, 0)
    assertError(read(path), path: path, location: nil, problem: ["Permission denied"])
  }

  func testEmptyFiles() throws {
    for (name, content) in [("empty.csv", ""), ("bom.csv", "\u{FEFF}"), ("blank.csv", "\n\r\n")] {
      let path = try write(name, content)
      assertError(read(path), path: path, location: nil, problem: ["empty"], fix: ["header row"])
    }
    let jsonl = try write("empty.jsonl", "\n  \n")
    assertError(
      read(jsonl, .jsonl), path: jsonl, location: nil, problem: ["empty"],
      fix: ["one object per line"])
  }

  func testHeaderWithoutRows() throws {
    let path = try write("header.csv", "\ntext,label\n")
    assertError(
      read(path), path: path, location: "line 2", problem: ["header but no rows"],
      fix: ["one row per example"])
  }

  func testUnknownColumnListsColumnsAndSuggestsTheClosest() throws {
    let path = try write("columns.csv", "text,category,movie_name\na,b,c\n")
    assertError(
      read(path, text: "txt", label: "category"), path: path, location: "line 1",
      problem: ["no column 'txt'", "'text', 'category', 'movie_name'"],
      fix: ["did you mean 'text'?"])
    assertError(
      read(path, label: "sentiment"), path: path, location: "line 1",
      problem: ["no column 'sentiment' (the label column)"], fix: ["name one of the columns"])
    assertError(
      read(path, label: "category", group: "movie"), path: path, location: "line 1",
      problem: ["no column 'movie' (the group_by column)"], fix: ["'movie_name'"])
  }

  func testDuplicatedColumn() throws {
    let path = try write("twice.csv", "text,label,text\na,b,c\n")
    assertError(
      read(path), path: path, location: "line 1", problem: ["'text'", "2 times", "1, 3"])
  }

  func testInvalidUTF8NamesByteOffsetAndLine() throws {
    let path = try write(
      "latin1.csv", Array("text,label\ngood,a\ncaf".utf8) + [0xE9] + Array(",b\n".utf8))
    assertError(
      read(path), path: path, location: "line 3",
      problem: ["invalid UTF-8", "byte offset 21", "0xE9"], fix: ["UTF-8"])
    // Offsets count the byte-order mark, so they match a hex editor's.
    let bom = try write(
      "bom-latin1.csv", [0xEF, 0xBB, 0xBF] + Array("text,label\n".utf8) + [0xC3, 0x28])
    assertError(
      read(bom), path: bom, location: "line 2", problem: ["byte offset 14"])
    // Overlong encodings and surrogates are not UTF-8 either.
    let overlong = try write("overlong.csv", Array("text,label\n".utf8) + [0xC0, 0xAF])
    assertError(read(overlong), path: overlong, location: "line 2", problem: ["byte offset 11"])
    let surrogate = try write("surrogate.csv", Array("text,label\n".utf8) + [0xED, 0xA0, 0x80])
    assertError(read(surrogate), path: surrogate, location: "line 2", problem: ["byte offset 11"])
  }

  func testRaggedRow() throws {
    let path = try write("ragged.csv", "text,label\n\"multi\nline\",a\nan, unquoted comma,b\n")
    assertError(
      read(path), path: path, location: "line 4",
      problem: ["row 2 has 3 fields, expected 2"], fix: ["quote fields that contain a comma"])
    let short = try write("short.tsv", "text\tlabel\nonly one field\n")
    assertError(
      read(short, .tsv), path: short, location: "line 2",
      problem: ["row 1 has 1 field, expected 2"], fix: ["a tab"])
  }

  func testUnclosedQuoteIsReportedWhereItOpened() throws {
    let path = try write("unclosed.csv", "text,label\nfine,a\n\"never closed,b\nmore\nlines\n")
    assertError(
      read(path), path: path, location: "line 3", problem: ["never closed"], fix: ["\"\""])
  }

  func testTextAfterClosingQuote() throws {
    let path = try write("after.csv", "text,label\n\"quoted\"tail,a\n")
    assertError(
      read(path), path: path, location: "line 2", problem: ["'t' follows the closing quote"],
      fix: ["two quotes"])
  }

  func testLabelOutsideTheGivenLabels() throws {
    let path = try write("labels.csv", "text,label\na,fresh\nb,rotten\nc,frsh\n")
    assertError(
      read(path, labels: ["rotten", "fresh"]), path: path, location: "line 4",
      problem: ["row 3 has label 'frsh'", "not in labels ['rotten', 'fresh']", "'fresh'"],
      fix: ["add 'frsh' to labels"])
  }

  func testDuplicateGivenLabel() throws {
    let path = try write("dup.csv", "text,label\na,x\nb,y\n")
    assertError(
      read(path, labels: ["x", "y", "x"]), path: path, location: nil,
      problem: ["'x' more than once"])
  }

  func testFewerThanTwoDistinctLabels() throws {
    let path = try write("one.csv", "text,label\na,x\nb,x\n")
    assertError(
      read(path), path: path, location: nil,
      problem: ["only one distinct label ('x')", "2 rows", "at least 2 classes"])
    assertError(
      read(path, labels: ["x", "y"]), path: path, location: nil, problem: ["only one distinct"])
  }

  func testEmptyLabel() throws {
    let path = try write("blank-label.csv", "text,label\na,x\nb,\n")
    assertError(
      read(path), path: path, location: "line 3", problem: ["row 2 has an empty label"])
    let jsonl = try write("blank-label.jsonl", "{\"text\": \"a\", \"label\": \"\"}\n")
    assertError(
      read(jsonl, .jsonl), path: jsonl, location: "line 1", problem: ["empty label"])
  }

  func testJSONLLineThatIsNotAnObject() throws {
    let path = try write("array.jsonl", "{\"text\": \"a\", \"label\": 1}\n\n[\"a\", 1]\n")
    assertError(
      read(path, .jsonl), path: path, location: "line 3",
      problem: ["column 1", "an array, not a JSON object"], fix: ["one JSON object per line"])
  }

  func testJSONLMissingFieldListsTheFields() throws {
    let path = try write("missing.jsonl", "{\"txt\": \"a\", \"label\": 1}\n")
    assertError(
      read(path, .jsonl), path: path, location: "line 1",
      problem: ["no field 'text'", "'txt', 'label'"], fix: ["did you mean 'txt'?"])
    let noGroup = try write("nogroup.jsonl", "{\"text\": \"a\", \"label\": 1}\n")
    assertError(
      read(noGroup, .jsonl, group: "movie"), path: noGroup, location: "line 1",
      problem: ["no field 'movie'"])
  }

  func testJSONLWrongTypes() throws {
    let cases: [(String, String)] = [
      ("{\"text\": 5, \"label\": 1}", "field 'text' of row 2 is the number 5, expected a string"),
      ("{\"text\": [\"a\"], \"label\": 1}", "is an array, expected a string"),
      ("{\"text\": \"a\", \"label\": 1.5}", "the non-integer number 1.5"),
      ("{\"text\": \"a\", \"label\": true}", "is a boolean, expected a string or an integer"),
      ("{\"text\": \"a\", \"label\": null}", "is null"),
      ("{\"text\": \"a\", \"label\": {\"x\": 1}}", "is an object"),
    ]
    for (index, (line, message)) in cases.enumerated() {
      let path = try write("type\(index).jsonl", "{\"text\": \"ok\", \"label\": 0}\n" + line + "\n")
      assertError(read(path, .jsonl), path: path, location: "line 2", problem: [message])
    }
  }

  func testJSONLSyntaxErrorsNameTheColumn() throws {
    let cases: [(String, String)] = [
      ("{\"text\": \"a\" \"label\": 1}", "column 14: expected ',' or '}'"),
      ("{\"text\": \"a\", \"label\": 1} extra", "column 27: text follows the JSON object"),
      ("{\"label\": 1, \"text\": \"never closed", "not closed"),
      ("{\"text\": \"a\", label: 1}", "column 15: expected a field name"),
      ("{\"text\": \"bad \\q\", \"label\": 1}", "unknown escape"),
      ("{\"text\": \"\\ud800\", \"label\": 1}", "low surrogate"),
      ("{\"text\": \"a\", \"label\": 01}", "leading zero"),
      ("{\"text\": \"a\", \"label\": tru}", "expected a value"),
      ("{\"text\": \"tab\there\", \"label\": 1}", "control character"),
      (String(repeating: "[", count: 600), "not a JSON object"),
      ("{\"x\": " + String(repeating: "[", count: 600) + "}", "nesting deeper than 512"),
    ]
    for (index, (line, message)) in cases.enumerated() {
      let path = try write("syntax\(index).jsonl", line + "\n")
      assertError(
        read(path, .jsonl), path: path, location: "line 1", problem: [message],
        fix: ["one JSON object per line"])
    }
  }
}

import Datasets
import Foundation
import XCTest

final class TableReaderTests: ScratchTestCase {
  func testCSVWithQuotesEscapesEmbeddedSeparatorsLineBreaksCRLFAndBOM() throws {
    let csv =
      "\u{FEFF}text,label,movie\r\n"
      + "plain text,pos,m1\r\n"
      + "\"a \"\"quoted\"\" word\",neg,m1\r\n"
      + "\"one, two, three\",pos,m2\r\n"
      + "\"first line\nsecond line\",neg,m2\r\n"
      + "\"crlf\r\ninside\",pos,m3\r\n"
      + "\"\",neg,m3\r\n"
      + "a 5\" screen,pos,\"m4\"\r\n"
      + "last row without line end,neg,m4"
    let path = try write("quotes.csv", csv)
    let table = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "label", groupColumn: "movie")
    XCTAssertEqual(
      table.texts,
      [
        "plain text", "a \"quoted\" word", "one, two, three", "first line\nsecond line",
        "crlf\r\ninside", "", "a 5\" screen", "last row without line end",
      ])
    XCTAssertEqual(table.labelNames, ["neg", "pos"])
    XCTAssertEqual(table.labels, [1, 0, 1, 0, 1, 0, 1, 0])
    XCTAssertEqual(table.groups, ["m1", "m1", "m2", "m2", "m3", "m3", "m4", "m4"])
    XCTAssertEqual(table.count, 8)
  }

  func testLFLineEndsBlankLinesAndNoGroupColumn() throws {
    let path = try write("lf.csv", "label,text\n\nb,one\n\na,two\n\n")
    let table = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "label")
    XCTAssertEqual(table.texts, ["one", "two"])
    XCTAssertEqual(table.labels, [1, 0])
    XCTAssertNil(table.groups)
  }

  func testTSVUsesTabsAndTheSameQuoting() throws {
    let tsv = "id\ttext\tlabel\n1\tcommas, stay\tyes\n2\t\"a\ttab and \"\"quotes\"\"\"\tno\n"
    let path = try write("data.tsv", tsv)
    let table = try TableReader.read(
      path: path, format: .tsv, textColumn: "text", labelColumn: "label", groupColumn: "id")
    XCTAssertEqual(table.texts, ["commas, stay", "a\ttab and \"quotes\""])
    XCTAssertEqual(table.labelNames, ["no", "yes"])
    XCTAssertEqual(table.labels, [1, 0])
    XCTAssertEqual(table.groups, ["1", "2"])
  }

  func testJSONLWithStringAndIntegerLabels() throws {
    let jsonl =
      "{\"text\": \"caf\\u00e9 \\\"quoted\\\"\\nnext\", \"label\": 1, "
      + "\"extra\": {\"deep\": [1, 2.5e3, null, true, {}, []]}}\n"
      + "\n"
      + "{\"label\": \"0\", \"text\": \"emoji \\ud83d\\ude00 and é\", \"movie\": 7}\r\n"
      + "  {\"text\": \"\", \"label\": 10, \"movie\": \"m\"}   \n"
      + "   \n"
    let path = try write("data.jsonl", jsonl)
    let table = try TableReader.read(
      path: path, format: .jsonl, textColumn: "text", labelColumn: "label")
    XCTAssertEqual(table.texts, ["café \"quoted\"\nnext", "emoji 😀 and é", ""])
    // Integers become their decimal strings and sort numerically: "10" after "1".
    XCTAssertEqual(table.labelNames, ["0", "1", "10"])
    XCTAssertEqual(table.labels, [1, 0, 2])
  }

  func testJSONLGroupField() throws {
    let path = try write(
      "groups.jsonl",
      "{\"t\": \"a\", \"l\": \"x\", \"g\": \"one\"}\n{\"t\": \"b\", \"l\": \"y\", \"g\": 2}\n")
    let table = try TableReader.read(
      path: path, format: .jsonl, textColumn: "t", labelColumn: "l", groupColumn: "g")
    XCTAssertEqual(table.groups, ["one", "2"])
  }

  func testGivenLabelOrderVersusSortedDefault() throws {
    let path = try write("order.csv", "text,category\na,fresh\nb,rotten\nc,fresh\n")
    let sorted = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "category")
    XCTAssertEqual(sorted.labelNames, ["fresh", "rotten"])
    XCTAssertEqual(sorted.labels, [0, 1, 0])
    let given = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "category",
      labels: ["rotten", "fresh"])
    XCTAssertEqual(given.labelNames, ["rotten", "fresh"])
    XCTAssertEqual(given.labels, [1, 0, 1])
    // A given label that the data lacks keeps its class id.
    let wider = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "category",
      labels: ["certified", "rotten", "fresh"])
    XCTAssertEqual(wider.labels, [2, 1, 2])
  }

  func testIntegerLabelsInCSVSortNumerically() throws {
    let path = try write("numbers.csv", "text,label\na,10\nb,2\nc,-1\nd,2\n")
    let table = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "label")
    XCTAssertEqual(table.labelNames, ["-1", "2", "10"])
    XCTAssertEqual(table.labels, [2, 1, 0, 1])
  }

  func testManyRowsParseQuickly() throws {
    // Rotten Tomatoes' size, with quoting on every other row.
    var csv = "text,category,movie_name\n"
    for row in 0..<12_752 {
      let text =
        row % 2 == 0
        ? "Snippet number \(row), with a comma and \"\"quotes\"\" and a\nline break"
        : "Plain snippet number \(row) of the corpus"
      csv += "\"\(text)\",\(row % 3 == 0 ? "rotten" : "fresh"),movie_\(row / 25)\n"
    }
    let path = try write("large.csv", csv)
    let start = Date()
    let table = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "category",
      groupColumn: "movie_name")
    let seconds = Date().timeIntervalSince(start)
    XCTAssertEqual(table.count, 12_752)
    XCTAssertEqual(
      table.texts[2], "Snippet number 2, with a comma and \"quotes\" and a\nline break")
    XCTAssertEqual(Set(table.groups ?? []).count, 511)
    // Generous for a debug build on a loaded machine; a Character-by-Character parser is far
    // slower.
    XCTAssertLessThan(seconds, 2, "reading 12,752 rows took \(seconds) s")
  }

  func testRottenTomatoesWhenFetched() throws {
    let path = repositoryRoot.appendingPathComponent("data/rotten_tomatoes.csv").path
    guard FileManager.default.fileExists(atPath: path) else {
      throw XCTSkip("\(path) is absent; run Scripts/fetch-rotten-tomatoes.sh to test on it")
    }
    let table = try TableReader.read(
      path: path, format: .csv, textColumn: "text", labelColumn: "category",
      groupColumn: "movie_name", labels: ["rotten", "fresh"])
    XCTAssertEqual(table.count, 12_752)
    XCTAssertEqual(table.labels.filter { $0 == 1 }.count, 7_368)
    XCTAssertEqual(table.labels.filter { $0 == 0 }.count, 5_384)
    let groups = try XCTUnwrap(table.groups)
    XCTAssertEqual(Set(groups).count, 507)
    XCTAssertEqual(table.texts[0], "A three-hour cinema master class.")
    XCTAssertEqual(table.texts.filter { $0.contains("\n") }.count, 141)

    let split = DataSplit.make(
      count: table.count, validation: 0.1, test: 0.2, groups: groups, seed: 0)
    let testMovies = Set(split.test.map { groups[$0] })
    XCTAssertTrue(testMovies.isDisjoint(with: Set(split.train.map { groups[$0] })))
    XCTAssertEqual(Double(split.test.count) / Double(table.count), 0.2, accuracy: 0.01)
    let majority = majorityClassShare(table.labels, over: split.test)
    XCTAssertGreaterThan(majority, 0.5)
    XCTAssertLessThan(majority, 0.7)
  }
}

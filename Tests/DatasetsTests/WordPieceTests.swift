import Foundation
import XCTest

@testable import Datasets

final class WordPieceTests: XCTestCase {
  private struct Fixture: Decodable {
    struct Case: Decodable {
      let text: String
      let ids: [Int32]
    }
    let source: String
    let cases: [Case]
  }

  private func fixturesDirectory() throws -> URL {
    try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
  }

  private func miniLMVocabulary() throws -> URL {
    try fixturesDirectory().appendingPathComponent("minilm-vocab/vocab.txt")
  }

  /// The tiny BERT checkpoint's vocabulary, which the model tests' fixtures hold.
  private func tinyBERTVocabulary() throws -> URL {
    repositoryRoot.appendingPathComponent("Tests/ModelsTests/Fixtures/tiny-bert/vocab.txt")
  }

  /// The vocabulary file's lines, read independently of the tokenizer, to derive expected ids.
  private func lines(of url: URL) throws -> [String] {
    let text = try String(contentsOf: url, encoding: .utf8)
    return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
  }

  private func temporaryFile(named name: String, contents: String) throws -> URL {
    let directory = FileManager.default.temporaryDirectory
      .appendingPathComponent("WordPieceTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent(name)
    try Data(contents.utf8).write(to: url)
    return url
  }

  func testFixtureCasesMatchHuggingFaceTokenizers() throws {
    let data = try Data(contentsOf: fixturesDirectory().appendingPathComponent("wordpiece.json"))
    let fixture = try JSONDecoder().decode(Fixture.self, from: data)
    XCTAssertFalse(fixture.cases.isEmpty, "no cases in wordpiece.json")
    let tokenizer = try WordPieceTokenizer(vocabularyFile: miniLMVocabulary())
    let mismatches = fixture.cases.filter { tokenizer.encode($0.text) != $0.ids }
    let report = mismatches.prefix(5).map { testCase in
      "text: \(testCase.text.debugDescription)\n  expected: \(testCase.ids)\n"
        + "  actual:   \(tokenizer.encode(testCase.text))"
    }
    XCTAssertEqual(
      mismatches.count, 0,
      "\(mismatches.count) of \(fixture.cases.count) cases differ (\(fixture.source)); first:\n"
        + report.joined(separator: "\n"))
  }

  /// Special tokens written in a text are those tokens, matched on the raw text before
  /// normalisation (so "[cls]" is not one). Ids from transformers 5.25.0 (tokenizers-backed
  /// BertTokenizerFast) on the MiniLM vocabulary, with:
  ///
  ///     python -c 'from transformers import BertTokenizerFast as T
  ///     t = T.from_pretrained("Tests/DatasetsTests/Fixtures/minilm-vocab")
  ///     for c in CASES: print(t(c)["input_ids"])'
  func testSpecialTokensInTextMatchHuggingFace() throws {
    let tokenizer = try WordPieceTokenizer(vocabularyFile: miniLMVocabulary())
    let cases: [(String, [Int32])] = [
      ("[CLS] [SEP] [MASK] literal", [101, 101, 102, 103, 18204, 102]),
      ("a[MASK]b", [101, 1037, 103, 1038, 102]),
      ("[cls] is not special", [101, 1031, 18856, 2015, 1033, 2003, 2025, 2569, 102]),
      ("Hello [SEP]world[PAD][UNK]", [101, 7592, 102, 2088, 0, 100, 102]),
      ("[[CLS]]", [101, 1031, 101, 1033, 102]),
      ("[MASK", [101, 1031, 7308, 102]),
      ("[CLS][CLS]  [SEP] Ünïcode [MASK].", [101, 101, 101, 102, 27260, 103, 1012, 102]),
    ]
    for (text, expected) in cases {
      XCTAssertEqual(tokenizer.encode(text), expected, text.debugDescription)
    }
    XCTAssertEqual(tokenizer.tokens("x [MASK]y"), ["x", "[MASK]", "y"])
  }

  func testEncodeBatchTruncatesKeepingSeparatorAndPads() throws {
    let tokenizer = try WordPieceTokenizer(vocabularyFile: miniLMVocabulary())
    let long = "A tense, capably-made film that's exciting and realistic enough."
    let short = "Bad."
    let longIDs = tokenizer.encode(long)
    let shortIDs = tokenizer.encode(short)
    let maxLength = 8
    XCTAssertGreaterThan(longIDs.count, maxLength, "the long sentence must need truncation")
    XCTAssertLessThan(shortIDs.count, maxLength, "the short sentence must need padding")

    let batch = tokenizer.encodeBatch([long, short], maxLength: maxLength)
    XCTAssertEqual(batch.batchSize, 2)
    XCTAssertEqual(batch.sequenceLength, maxLength)
    XCTAssertEqual(batch.inputIDs.count, 2 * maxLength)
    XCTAssertEqual(batch.attentionMask.count, 2 * maxLength)
    XCTAssertEqual(batch.tokenTypeIDs, [Int32](repeating: 0, count: 2 * maxLength))

    let longRow = Array(batch.inputIDs[0..<maxLength])
    XCTAssertEqual(longRow.first, tokenizer.classifierTokenID)
    XCTAssertEqual(longRow.last, tokenizer.separatorTokenID, "[SEP] must end a truncated row")
    XCTAssertEqual(Array(longRow.dropLast()), Array(longIDs.prefix(maxLength - 1)))
    XCTAssertEqual(Array(batch.attentionMask[0..<maxLength]), Array(repeating: 1, count: maxLength))

    let shortRow = Array(batch.inputIDs[maxLength..<2 * maxLength])
    XCTAssertEqual(Array(shortRow.prefix(shortIDs.count)), shortIDs)
    XCTAssertEqual(
      Array(shortRow.dropFirst(shortIDs.count)),
      Array(repeating: tokenizer.paddingTokenID, count: maxLength - shortIDs.count))
    let shortMask = Array(batch.attentionMask[maxLength..<2 * maxLength])
    XCTAssertEqual(
      Array(shortMask.prefix(shortIDs.count)), Array(repeating: 1, count: shortIDs.count))
    XCTAssertEqual(
      Array(shortMask.dropFirst(shortIDs.count)),
      Array(repeating: 0, count: maxLength - shortIDs.count))
  }

  func testEncodeBatchOfNoTextsIsEmpty() throws {
    let tokenizer = try WordPieceTokenizer(vocabularyFile: tinyBERTVocabulary())
    let batch = tokenizer.encodeBatch([], maxLength: 4)
    XCTAssertEqual(batch.batchSize, 0)
    XCTAssertTrue(batch.inputIDs.isEmpty && batch.attentionMask.isEmpty)
  }

  func testTinyBERTVocabulary() throws {
    let url = try tinyBERTVocabulary()
    let vocabulary = try lines(of: url)
    func id(_ token: String) throws -> Int32 {
      Int32(try XCTUnwrap(vocabulary.firstIndex(of: token), "\(token) is not in tiny-bert"))
    }
    let tokenizer = try WordPieceTokenizer(vocabularyFile: url)
    XCTAssertEqual(tokenizer.vocabularySize, vocabulary.count)
    XCTAssertEqual(tokenizer.classifierTokenID, try id("[CLS]"))
    XCTAssertEqual(tokenizer.separatorTokenID, try id("[SEP]"))
    XCTAssertEqual(tokenizer.paddingTokenID, try id("[PAD]"))
    XCTAssertEqual(tokenizer.unknownTokenID, try id("[UNK]"))

    // The vocabulary has single letters only, so a word is its first letter, then "##" letters.
    func pieces(_ word: String) -> [String] {
      [String(word.prefix(1))] + word.dropFirst().map { "##\($0)" }
    }
    let expected = pieces("hello") + [","] + pieces("cafe") + ["[UNK]", "!"]
    XCTAssertEqual(tokenizer.tokens("Hello, CAFÉ\tx1y!"), expected)
    XCTAssertEqual(
      tokenizer.encode("Hello, CAFÉ\tx1y!"),
      try [id("[CLS]")] + expected.map(id) + [id("[SEP]")])

    let cased = try WordPieceTokenizer(vocabularyFile: url, lowercase: false)
    XCTAssertEqual(cased.tokens("Hello hello"), ["[UNK]"] + pieces("hello"))
  }

  func testWordLengthLimitCountsScalars() throws {
    let tokenizer = try WordPieceTokenizer(vocabularyFile: tinyBERTVocabulary())
    let limit = WordPieceTokenizer.maxScalarsPerWord
    let atLimit = String(repeating: "a", count: limit)
    XCTAssertEqual(tokenizer.tokens(atLimit).count, limit)
    XCTAssertEqual(tokenizer.tokens(atLimit + "a"), ["[UNK]"])

    // Half the limit in characters, but "e\u{301}" is two scalars: over the limit when cased,
    // where accents are kept; within it when uncased, where they are stripped.
    let accented = String(repeating: "e\u{301}", count: limit / 2 + 1)
    XCTAssertEqual(accented.count, limit / 2 + 1)
    let cased = try WordPieceTokenizer(vocabularyFile: tinyBERTVocabulary(), lowercase: false)
    XCTAssertEqual(cased.tokens(accented), ["[UNK]"])
    XCTAssertEqual(tokenizer.tokens(accented).count, limit / 2 + 1)
  }

  func testVocabularyLookupComparesScalarsNotCanonicalEquivalence() throws {
    // "é" precomposed is canonically equivalent to "e" + U+0301, so `String` equality would
    // match it; `tokenizers` compares bytes and does not.
    let tokenizer = try WordPieceTokenizer(
      vocabulary: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "\u{E9}", "##\u{E9}"], lowercase: false)
    XCTAssertEqual(tokenizer.tokens("e\u{301}"), ["[UNK]"])
    XCTAssertEqual(tokenizer.tokens("\u{E9}\u{E9}"), ["\u{E9}", "##\u{E9}"])
  }

  func testCleaningDropsControlsAndSplitsOnUnicodeWhitespace() throws {
    let tokenizer = try WordPieceTokenizer(vocabularyFile: tinyBERTVocabulary())
    // U+200B and U+00AD are format characters (dropped), U+3000 and U+00A0 are whitespace.
    XCTAssertEqual(
      tokenizer.tokens("a\u{200B}b\u{AD}c\u{3000}d\u{A0}e\u{0}f\u{FFFD}g"),
      ["a", "##b", "##c", "d", "e", "##f", "##g"])
  }

  func testMissingVocabularyFileNamesTheFile() throws {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("no-such-directory-\(UUID().uuidString)/vocab.txt")
    XCTAssertThrowsError(try WordPieceTokenizer(vocabularyFile: url)) { error in
      guard let error = error as? WordPieceError else {
        return XCTFail("expected a WordPieceError, got \(error)")
      }
      XCTAssertTrue(error.description.contains(url.path), error.description)
    }
  }

  func testVocabularyWithoutUnknownTokenNamesTheFile() throws {
    let url = try temporaryFile(named: "vocab.txt", contents: "[PAD]\n[CLS]\n[SEP]\na\n##b\n")
    XCTAssertThrowsError(try WordPieceTokenizer(vocabularyFile: url)) { error in
      guard let error = error as? WordPieceError else {
        return XCTFail("expected a WordPieceError, got \(error)")
      }
      XCTAssertTrue(error.description.contains(url.path), error.description)
      XCTAssertTrue(error.description.contains("[UNK]"), error.description)
    }
  }

  func testEmptyVocabularyFileNamesTheFile() throws {
    let url = try temporaryFile(named: "vocab.txt", contents: "")
    XCTAssertThrowsError(try WordPieceTokenizer(vocabularyFile: url)) { error in
      XCTAssertTrue(String(describing: error).contains(url.path), "\(error)")
    }
  }

  func testVocabularyFileLinesAreTrimmedLikeTokenizers() throws {
    // CRLF line ends and trailing blanks are dropped; the line number stays the id.
    let url = try temporaryFile(
      named: "vocab.txt", contents: "[PAD]\r\n[UNK] \r\n[CLS]\r\n[SEP]\r\nab\t\r\n##c\r\n")
    let tokenizer = try WordPieceTokenizer(vocabularyFile: url)
    XCTAssertEqual(tokenizer.vocabularySize, 6)
    XCTAssertEqual(tokenizer.unknownTokenID, 1)
    XCTAssertEqual(tokenizer.encode("abc"), [2, 4, 5, 3])
  }
}

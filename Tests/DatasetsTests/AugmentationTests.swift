import Datasets
import Foundation
import Tensor
import XCTest

/// Roget's thesaurus reader and the word- and image-level edits of `train.distill.augment`.
final class AugmentationTests: ScratchTestCase {
  private func fixtureThesaurus() throws -> Thesaurus {
    let url = try XCTUnwrap(
      Bundle.module.url(forResource: "Fixtures", withExtension: nil)?
        .appendingPathComponent("roget-small.csv"))
    return try Thesaurus.read(path: url.path)
  }

  // MARK: Roget's thesaurus

  func testThesaurusKeepsSingleLowercaseWordsAndGroupsThemByCategory() throws {
    let thesaurus = try fixtureThesaurus()
    // Phrases ("moral badness"), names ("Dixiecrats"), stray quotes ('"appetite') and one-letter
    // terms are left out; a word listed twice in a category counts once.
    XCTAssertEqual(
      thesaurus.words,
      ["badness", "evil", "wickedness", "dull", "boring", "tedious", "flat", "film"])
    XCTAssertEqual(thesaurus.categories, ["BADNESS", "TEDIUM", "DULLNESS", "TELEVISION"])
    XCTAssertEqual(thesaurus.synonyms(of: "evil"), ["badness", "wickedness"])
    // Every category of the word, in file order.
    XCTAssertEqual(thesaurus.synonyms(of: "dull"), ["boring", "tedious", "flat"])
    XCTAssertEqual(thesaurus.synonyms(of: "boring"), ["dull", "tedious"])
    XCTAssertEqual(thesaurus.synonyms(of: "flat"), ["dull"])
    XCTAssertEqual(thesaurus.synonyms(of: "film"), [])
    XCTAssertFalse(thesaurus.hasSynonyms("film"))
    XCTAssertTrue(thesaurus.hasSynonyms("flat"))
    XCTAssertEqual(thesaurus.synonyms(of: "appetite"), [])
    XCTAssertEqual(thesaurus.synonyms(of: "Evil"), [], "keys are lowercase")
  }

  func testThesaurusErrorsNameTheFileAndLine() throws {
    let bad = try write("roget.csv", "evil,BADNESS\nno comma here\n")
    XCTAssertThrowsError(try Thesaurus.read(path: bad)) { error in
      XCTAssertEqual(
        (error as? DatasetError)?.description,
        "\(bad):line 2: error: 'no comma here' has no comma; a Roget thesaurus CSV holds 'term,CATEGORY' lines (Scripts/fetch-rotten-tomatoes.sh writes data/roget.csv)"
      )
    }
    let empty = try write("phrases.csv", "moral badness,BADNESS\n")
    XCTAssertThrowsError(try Thesaurus.read(path: empty)) { error in
      XCTAssertTrue(
        (error as? DatasetError)?.description.contains("holds no single-word") == true, "\(error)")
    }
  }

  func testRogetWhenFetched() throws {
    let path = repositoryRoot.appendingPathComponent("data/roget.csv").path
    guard FileManager.default.fileExists(atPath: path) else {
      throw XCTSkip("\(path) is absent; run Scripts/fetch-rotten-tomatoes.sh to test on it")
    }
    let thesaurus = try Thesaurus.read(path: path)
    XCTAssertTrue(thesaurus.synonyms(of: "dull").contains("boring"))
    XCTAssertTrue(thesaurus.synonyms(of: "boring").contains("dull"))
  }

  // MARK: Unlabeled tables

  func testUnlabeledTablesNeedOnlyTheirTextColumn() throws {
    let csv = try write("plots.csv", "text,movie_name\n\"a plot, with a comma\",m1\nanother,m2\n")
    let read = try TableReader.readTexts(
      path: csv, format: .csv, textColumn: "text", groupColumn: "movie_name")
    XCTAssertEqual(read.texts, ["a plot, with a comma", "another"])
    XCTAssertEqual(read.groups, ["m1", "m2"])
    XCTAssertNil(try TableReader.readTexts(path: csv, format: .csv, textColumn: "text").groups)
    let jsonl = try write("plots.jsonl", "{\"plot\": \"one\"}\n{\"plot\": \"two\", \"x\": 1}\n")
    XCTAssertEqual(
      try TableReader.readTexts(path: jsonl, format: .jsonl, textColumn: "plot").texts,
      ["one", "two"])
    XCTAssertThrowsError(try TableReader.readTexts(path: csv, format: .csv, textColumn: "plot")) {
      error in
      XCTAssertEqual(
        (error as? DatasetError)?.description,
        "\(csv):line 1: error: no column 'plot' (the text column) in the header; columns: 'text', 'movie_name'; name one of the columns above as the text column"
      )
    }
  }

  // MARK: Text edits

  private let sentence = "the film was dull and slow"
  private var words: [String] { sentence.split(separator: " ").map(String.init) }

  /// The copy of `text` with one edit of `edit`, from seed `seed`.
  private func once(_ edit: TextEdit, _ text: String, seed: UInt64, thesaurus: Thesaurus? = nil)
    -> String
  {
    var random = RandomStream(seed: seed)
    return TextAugmenter(edits: [edit], rate: 0.1, thesaurus: thesaurus)
      .edited(text, random: &random)
  }

  func testDeleteRemovesTheDrawnWord() {
    var deleted = Set<Int>()
    for seed in UInt64(0)..<40 {
      // The draws, as documented: the edit (of one), then the word.
      var random = RandomStream(seed: seed)
      _ = random.nextInt(below: 1)
      let position = random.nextInt(below: 6)
      var expected = words
      expected.remove(at: position)
      XCTAssertEqual(once(.delete, sentence, seed: seed), expected.joined(separator: " "))
      deleted.insert(position)
    }
    XCTAssertEqual(deleted, Set(0..<6), "every word can go")
    XCTAssertEqual(once(.delete, "alone", seed: 0), "alone", "the last word stays")
  }

  func testSwapExchangesTheDrawnWordWithTheNext() {
    for seed in UInt64(0)..<20 {
      var random = RandomStream(seed: seed)
      _ = random.nextInt(below: 1)
      let position = random.nextInt(below: 5)
      var expected = words
      expected.swapAt(position, position + 1)
      XCTAssertEqual(once(.swap, sentence, seed: seed), expected.joined(separator: " "))
    }
    XCTAssertEqual(once(.swap, "alone", seed: 3), "alone")
  }

  func testMaskReplacesTheDrawnWord() {
    for seed in UInt64(0)..<20 {
      var random = RandomStream(seed: seed)
      _ = random.nextInt(below: 1)
      var expected = words
      expected[random.nextInt(below: 6)] = "[MASK]"
      XCTAssertEqual(once(.mask, sentence, seed: seed), expected.joined(separator: " "))
    }
  }

  func testSynonymReplacesAWordTheThesaurusKnows() throws {
    let thesaurus = try fixtureThesaurus()
    var seen = Set<String>()
    for seed in UInt64(0)..<30 {
      // Only "dull" has synonyms here; punctuation around it stays.
      let copy = once(.synonym, "the film was Dull, and slow", seed: seed, thesaurus: thesaurus)
      var random = RandomStream(seed: seed)
      _ = random.nextInt(below: 1)
      _ = random.nextInt(below: 1)  // the one candidate word
      let synonym = ["boring", "tedious", "flat"][random.nextInt(below: 3)]
      XCTAssertEqual(copy, "the film was \(synonym), and slow")
      seen.insert(synonym)
    }
    XCTAssertEqual(seen, ["boring", "tedious", "flat"])
    XCTAssertEqual(
      once(.synonym, "a film", seed: 1, thesaurus: thesaurus), "a film",
      "no word with a synonym: the copy is the text")
  }

  func testRateSetsTheNumberOfEditsAndTheSeedTheCopy() {
    let text = (0..<20).map { "w\($0)" }.joined(separator: " ")
    let augmenter = TextAugmenter(edits: [.delete], rate: 0.25)
    XCTAssertEqual(augmenter.editCount(words: 20), 5)
    XCTAssertEqual(augmenter.editCount(words: 3), 1, "at least one edit")
    var random = RandomStream(seed: 9)
    let copy = augmenter.edited(text, random: &random)
    XCTAssertEqual(copy.split(separator: " ").count, 15)
    // Mixed edits: the same seed gives the same copy, other seeds other copies.
    let mixed = TextAugmenter(edits: [.delete, .swap, .mask], rate: 0.2)
    var copies = Set<String>()
    for seed in UInt64(0)..<10 {
      var first = RandomStream(seed: seed)
      var second = RandomStream(seed: seed)
      let copy = mixed.edited(text, random: &first)
      XCTAssertEqual(copy, mixed.edited(text, random: &second))
      copies.insert(copy)
    }
    XCTAssertEqual(copies.count, 10)
  }

  // MARK: Image edits

  /// A 1 × 2 × 3 image 1…6.
  private let image: [Float] = [1, 2, 3, 4, 5, 6]

  func testFlipMirrorsEveryRowHalfTheTime() {
    let augmenter = ImageAugmenter(edits: [.flip], pad: 2, noise: 0.05)
    var flips = 0
    for seed in UInt64(0)..<40 {
      var random = RandomStream(seed: seed)
      let copy = augmenter.edited(image, channels: 1, height: 2, width: 3, random: &random)
      var draw = RandomStream(seed: seed)
      if draw.nextInt(below: 2) == 1 {
        XCTAssertEqual(copy, [3, 2, 1, 6, 5, 4])
        flips += 1
      } else {
        XCTAssertEqual(copy, image)
      }
    }
    XCTAssertTrue((10...30).contains(flips), "\(flips) flips of 40")
  }

  func testCropShiftsWithZerosAtTheDrawnOffset() {
    let augmenter = ImageAugmenter(edits: [.crop], pad: 1, noise: 0.05)
    var shifts = Set<[Int]>()
    for seed in UInt64(0)..<40 {
      var random = RandomStream(seed: seed)
      let copy = augmenter.edited(image, channels: 1, height: 2, width: 3, random: &random)
      var draw = RandomStream(seed: seed)
      let dy = draw.nextInt(below: 3) - 1
      let dx = draw.nextInt(below: 3) - 1
      // Output (r, c) reads input (r + dy, c + dx), zero outside: the padded image's crop.
      var expected = [Float](repeating: 0, count: 6)
      for r in 0..<2 {
        for c in 0..<3 where (0..<2).contains(r + dy) && (0..<3).contains(c + dx) {
          expected[r * 3 + c] = image[(r + dy) * 3 + c + dx]
        }
      }
      XCTAssertEqual(copy, expected, "seed \(seed), shift (\(dy), \(dx))")
      shifts.insert([dy, dx])
    }
    XCTAssertEqual(shifts.count, 9, "every offset of the padded image")
  }

  func testNoiseHasTheRequestedStandardDeviation() {
    let augmenter = ImageAugmenter(edits: [.noise], pad: 2, noise: 0.1)
    let flat = [Float](repeating: 0.5, count: 4096)
    var random = RandomStream(seed: 4)
    let copy = augmenter.edited(flat, channels: 1, height: 64, width: 64, random: &random)
    let differences = zip(copy, flat).map { Double($0 - $1) }
    let mean = differences.reduce(0, +) / Double(differences.count)
    let variance =
      differences.map { ($0 - mean) * ($0 - mean) }.reduce(0, +)
      / Double(differences.count)
    XCTAssertEqual(mean, 0, accuracy: 0.01)
    XCTAssertEqual(variance.squareRoot(), 0.1, accuracy: 0.006)
  }
}

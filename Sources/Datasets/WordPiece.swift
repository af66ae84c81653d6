import Foundation

/// Why a WordPiece vocabulary could not be used; the message names the file (or the in-memory
/// vocabulary) and says how to fix it, because it is shown to the person running the tool.
public struct WordPieceError: Error, CustomStringConvertible {
  public let description: String

  init(_ description: String) {
    self.description = description
  }
}

/// Texts encoded for a BERT forward pass: every row is `sequenceLength` tokens long, row-major,
/// so the three arrays can be handed to the model as `batchSize × sequenceLength` tensors.
public struct EncodedBatch: Sendable {
  public var batchSize: Int
  public var sequenceLength: Int
  /// Token ids, `[CLS] … [SEP]` followed by `[PAD]` up to `sequenceLength`.
  public var inputIDs: [Int32]
  /// 1 for real tokens (including `[CLS]` and `[SEP]`), 0 for padding.
  public var attentionMask: [Int32]
  /// All 0: every row is a single segment.
  public var tokenTypeIDs: [Int32]

  public init(
    batchSize: Int, sequenceLength: Int, inputIDs: [Int32], attentionMask: [Int32],
    tokenTypeIDs: [Int32]
  ) {
    self.batchSize = batchSize
    self.sequenceLength = sequenceLength
    self.inputIDs = inputIDs
    self.attentionMask = attentionMask
    self.tokenTypeIDs = tokenTypeIDs
  }
}

/// The BERT (uncased) tokenizer: Hugging Face `tokenizers`' BertNormalizer, BertPreTokenizer and
/// WordPiece, reproduced so that ids match the ones the model was trained and evaluated with.
///
/// Everything works on Unicode scalars (Rust `char`s), not grapheme clusters, and vocabulary
/// lookups compare scalars exactly (not by canonical equivalence, as `String` does), since that is
/// what the reference implementation does.
public struct WordPieceTokenizer: Sendable {
  /// The number of vocabulary entries (lines), i.e. the range of ids an embedding table must hold.
  public let vocabularySize: Int
  public let classifierTokenID: Int32
  public let separatorTokenID: Int32
  public let paddingTokenID: Int32
  public let unknownTokenID: Int32

  /// Words longer than this many scalars become `[UNK]` (WordPiece's `max_input_chars_per_word`).
  static let maxScalarsPerWord = 100

  private let lowercase: Bool
  /// Token text by id, for `tokens(_:)`.
  private let vocabulary: [String]
  /// Pieces that may start a word (every vocabulary entry), keyed by their scalars.
  private let wordStarts: [ArraySlice<Unicode.Scalar>: Int32]
  /// Pieces that continue a word (entries starting with "##"), keyed by the scalars after "##".
  private let continuations: [ArraySlice<Unicode.Scalar>: Int32]
  /// The longest key in each table, so that matching never tries longer candidates.
  private let longestWordStart: Int
  private let longestContinuation: Int
  /// `[CLS]`, `[SEP]`, `[PAD]`, `[UNK]` and `[MASK]` (when listed), longest first: written in a
  /// text they are that token, matched on the raw text before normalisation, as `tokenizers`
  /// matches its special added tokens.
  private let specialTokens: [(scalars: [Unicode.Scalar], id: Int32)]

  /// The special tokens `tokenizers`' BERT tokenizer adds.
  static let specialTokenTexts = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

  /// Loads a `vocab.txt` (one token per line, line number = id), as `tokenizers` reads it: lines
  /// split at "\n", trailing whitespace (including "\r") dropped, a repeated token keeps its last id.
  ///
  /// - Parameter lowercase: BERT uncased behaviour (strip accents, then lowercase); pass `false`
  ///   for cased vocabularies.
  public init(vocabularyFile: URL, lowercase: Bool = true) throws(WordPieceError) {
    let path = vocabularyFile.path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw WordPieceError(
        "vocabulary file \(path) does not exist; pass the vocab.txt that ships with the model")
    }
    guard !isDirectory.boolValue else {
      throw WordPieceError(
        "vocabulary file \(path) is a directory; pass the vocab.txt inside it")
    }
    let data: Data
    do {
      data = try Data(contentsOf: vocabularyFile)
    } catch {
      throw WordPieceError(
        "cannot read vocabulary file \(path) (\(error.localizedDescription)); check that it is "
          + "readable")
    }
    guard let text = String(validating: data, as: UTF8.self) else {
      throw WordPieceError(
        "vocabulary file \(path) is not UTF-8 text; pass a BERT vocab.txt (one token per line)")
    }
    try self.init(
      vocabulary: Self.lines(of: text), lowercase: lowercase, source: "vocabulary file \(path)")
  }

  /// Uses `vocabulary` as given: element index = id, entries are not trimmed.
  ///
  /// - Parameter lowercase: BERT uncased behaviour (strip accents, then lowercase); pass `false`
  ///   for cased vocabularies.
  public init(vocabulary: [String], lowercase: Bool = true) throws(WordPieceError) {
    try self.init(vocabulary: vocabulary, lowercase: lowercase, source: "the vocabulary")
  }

  private init(vocabulary: [String], lowercase: Bool, source: String) throws(WordPieceError) {
    guard !vocabulary.isEmpty else {
      throw WordPieceError(
        "\(source) is empty; pass the vocab.txt of a BERT model (one token per line)")
    }
    guard vocabulary.count <= Int(Int32.max) else {
      throw WordPieceError(
        "\(source) has \(vocabulary.count) tokens, more than 32-bit ids can number")
    }
    var wordStarts: [ArraySlice<Unicode.Scalar>: Int32] = [:]
    var continuations: [ArraySlice<Unicode.Scalar>: Int32] = [:]
    wordStarts.reserveCapacity(vocabulary.count)
    continuations.reserveCapacity(vocabulary.count / 4)
    var longestWordStart = 0
    var longestContinuation = 0
    for (index, token) in vocabulary.enumerated() {
      let scalars = Array(token.unicodeScalars)
      // Later duplicates overwrite earlier ones, as in `tokenizers` (a hash map insert).
      wordStarts[scalars[...]] = Int32(index)
      longestWordStart = max(longestWordStart, scalars.count)
      if scalars.count > 2 && scalars[0] == "#" && scalars[1] == "#" {
        continuations[Array(scalars[2...])[...]] = Int32(index)
        longestContinuation = max(longestContinuation, scalars.count - 2)
      }
    }
    func id(of token: String) -> Int32? {
      wordStarts[Array(token.unicodeScalars)[...]]
    }
    let specials = ["[CLS]", "[SEP]", "[PAD]", "[UNK]"]
    let missing = specials.filter { id(of: $0) == nil }
    guard missing.isEmpty,
      let classifier = id(of: "[CLS]"), let separator = id(of: "[SEP]"),
      let padding = id(of: "[PAD]"), let unknown = id(of: "[UNK]")
    else {
      throw WordPieceError(
        "\(source) has no \(missing.joined(separator: ", ")) token; BERT vocabularies list "
          + "[PAD], [UNK], [CLS] and [SEP] on lines of their own, so pass the vocab.txt that "
          + "belongs to the model")
    }
    self.vocabularySize = vocabulary.count
    self.classifierTokenID = classifier
    self.separatorTokenID = separator
    self.paddingTokenID = padding
    self.unknownTokenID = unknown
    self.lowercase = lowercase
    self.vocabulary = vocabulary
    self.wordStarts = wordStarts
    self.continuations = continuations
    self.longestWordStart = longestWordStart
    self.longestContinuation = longestContinuation
    self.specialTokens = Self.specialTokenTexts.compactMap { text in
      id(of: text).map { (Array(text.unicodeScalars), $0) }
    }.sorted { $0.scalars.count > $1.scalars.count }
  }

  /// The wordpieces of `text` (continuations prefixed "##"), without `[CLS]` and `[SEP]`.
  public func tokens(_ text: String) -> [String] {
    pieceIDs(text).map { vocabulary[Int($0)] }
  }

  /// `[CLS]`, the wordpiece ids of `text`, `[SEP]`; never truncated.
  public func encode(_ text: String) -> [Int32] {
    var ids = [classifierTokenID]
    ids.append(contentsOf: pieceIDs(text))
    ids.append(separatorTokenID)
    return ids
  }

  /// Encodes `texts` into rows of exactly `maxLength` tokens: a longer text loses its last
  /// wordpieces (`[SEP]` still ends it), a shorter one is padded with `[PAD]`, mask 0.
  ///
  /// - Precondition: `maxLength >= 2`, room for `[CLS]` and `[SEP]`.
  public func encodeBatch(_ texts: [String], maxLength: Int) -> EncodedBatch {
    encodeBatch(pieces: texts.map(pieceIDs), maxLength: maxLength)
  }

  /// The id of `[MASK]`; nil when the vocabulary has none.
  public var maskTokenID: Int32? { wordStarts[Array("[MASK]".unicodeScalars)[...]] }

  /// As `encodeBatch(_:maxLength:)`, with every `[MASK]` in the texts encoded as the mask token
  /// (as Hugging Face's tokenizers keep special tokens whole; the normalizer alone would make it
  /// "[", "mask", "]").
  ///
  /// - Precondition: the vocabulary has `[MASK]` (`maskTokenID` is not nil).
  public func encodeBatch(maskingTexts texts: [String], maxLength: Int) -> EncodedBatch {
    guard let mask = maskTokenID else {
      preconditionFailure("the vocabulary has no [MASK] token")
    }
    let pieces = texts.map { text in
      var ids: [Int32] = []
      for (index, segment) in text.split(separator: "[MASK]", omittingEmptySubsequences: false)
        .enumerated()
      {
        if index > 0 { ids.append(mask) }
        ids += pieceIDs(String(segment))
      }
      return ids
    }
    return encodeBatch(pieces: pieces, maxLength: maxLength)
  }

  private func encodeBatch(pieces texts: [[Int32]], maxLength: Int) -> EncodedBatch {
    precondition(maxLength >= 2, "maxLength \(maxLength) leaves no room for [CLS] and [SEP]")
    let total = texts.count * maxLength
    var inputIDs = [Int32](repeating: paddingTokenID, count: total)
    var attentionMask = [Int32](repeating: 0, count: total)
    for (row, ids) in texts.enumerated() {
      let pieces = ids.prefix(maxLength - 2)
      let rowStart = row * maxLength
      inputIDs[rowStart] = classifierTokenID
      inputIDs.replaceSubrange(rowStart + 1..<rowStart + 1 + pieces.count, with: pieces)
      inputIDs[rowStart + 1 + pieces.count] = separatorTokenID
      let realCount = pieces.count + 2
      attentionMask.replaceSubrange(
        rowStart..<rowStart + realCount, with: repeatElement(1, count: realCount))
    }
    return EncodedBatch(
      batchSize: texts.count, sequenceLength: maxLength, inputIDs: inputIDs,
      attentionMask: attentionMask, tokenTypeIDs: [Int32](repeating: 0, count: total))
  }

  // MARK: - Pipeline

  /// Splits `text` at the special tokens written in it (leftmost, longest first), and runs the
  /// pipeline on the text between them.
  private func pieceIDs(_ text: String) -> [Int32] {
    guard text.utf8.contains(UInt8(ascii: "[")) else { return wordPieceIDs(text) }
    let scalars = Array(text.unicodeScalars)
    var ids: [Int32] = []
    var segmentStart = 0
    var index = 0
    func flush(upTo end: Int) {
      if end > segmentStart {
        ids += wordPieceIDs(String(String.UnicodeScalarView(scalars[segmentStart..<end])))
      }
    }
    while index < scalars.count {
      guard scalars[index] == "[",
        let special = specialTokens.first(where: { token in
          index + token.scalars.count <= scalars.count
            && scalars[index..<index + token.scalars.count].elementsEqual(token.scalars)
        })
      else {
        index += 1
        continue
      }
      flush(upTo: index)
      ids.append(special.id)
      index += special.scalars.count
      segmentStart = index
    }
    flush(upTo: scalars.count)
    return ids
  }

  /// Normalizes, pre-tokenizes and runs WordPiece on every word.
  private func wordPieceIDs(_ text: String) -> [Int32] {
    let scalars = normalized(text)
    var ids: [Int32] = []
    ids.reserveCapacity(scalars.count / 4 + 1)
    var wordStart = 0
    for (index, scalar) in scalars.enumerated() {
      if Self.isWhitespace(scalar) {
        appendPieces(of: scalars[wordStart..<index], to: &ids)
        wordStart = index + 1
      } else if Self.isPunctuation(scalar) {
        appendPieces(of: scalars[wordStart..<index], to: &ids)
        appendPieces(of: scalars[index..<index + 1], to: &ids)
        wordStart = index + 1
      }
    }
    appendPieces(of: scalars[wordStart...], to: &ids)
    return ids
  }

  /// BertNormalizer: clean text, space out CJK ideographs, and when lowercasing strip accents
  /// (NFD, drop nonspacing marks) and lowercase, in that order.
  private func normalized(_ text: String) -> [Unicode.Scalar] {
    var cleaned: [Unicode.Scalar] = []
    cleaned.reserveCapacity(text.utf8.count)
    var mayDecompose = false
    for scalar in text.unicodeScalars {
      let value = scalar.value
      if value < 0x80 {
        if value == 0x09 || value == 0x0A || value == 0x0D || value == 0x20 {
          cleaned.append(" ")
        } else if value >= 0x20 && value != 0x7F {
          cleaned.append(scalar)
        }  // Other ASCII controls (NUL, \u{0B}, \u{0C}, DEL, …) are dropped.
        continue
      }
      // Control comes first: U+0085 is both a control and whitespace, and is dropped.
      if value == 0xFFFD || Self.isControl(scalar) { continue }
      if scalar.properties.isWhitespace {
        cleaned.append(" ")
        continue
      }
      mayDecompose = mayDecompose || value >= 0xC0
      if Self.isChineseIdeograph(value) {
        cleaned.append(" ")
        cleaned.append(scalar)
        cleaned.append(" ")
      } else {
        cleaned.append(scalar)
      }
    }
    guard lowercase else { return cleaned }

    // Nothing below U+00C0 has a canonical decomposition, so ASCII-heavy text skips NFD.
    var decomposed = cleaned
    if mayDecompose {
      let text = String(String.UnicodeScalarView(cleaned))
      decomposed = Array(text.decomposedStringWithCanonicalMapping.unicodeScalars)
    }
    var result: [Unicode.Scalar] = []
    result.reserveCapacity(decomposed.count)
    for scalar in decomposed {
      let value = scalar.value
      if value < 0x80 {
        let isUpper = value >= 0x41 && value <= 0x5A
        result.append(isUpper ? Unicode.Scalar(UInt8(value + 0x20)) : scalar)
        continue
      }
      let properties = scalar.properties
      if properties.generalCategory == .nonspacingMark { continue }
      // Full per-scalar mapping, like Rust's `char::to_lowercase` (no final-sigma context).
      result.append(contentsOf: properties.lowercaseMapping.unicodeScalars)
    }
    return result
  }

  /// WordPiece on one word: greedy longest match first, or a single `[UNK]` when the word is too
  /// long or some position matches no piece.
  private func appendPieces(of word: ArraySlice<Unicode.Scalar>, to ids: inout [Int32]) {
    guard !word.isEmpty else { return }
    guard word.count <= Self.maxScalarsPerWord else {
      ids.append(unknownTokenID)
      return
    }
    let firstPiece = ids.count
    var start = word.startIndex
    while start < word.endIndex {
      let isFirst = start == word.startIndex
      let table = isFirst ? wordStarts : continuations
      var end = min(word.endIndex, start + (isFirst ? longestWordStart : longestContinuation))
      var match: Int32?
      while end > start {
        if let id = table[word[start..<end]] {
          match = id
          break
        }
        end -= 1
      }
      guard let id = match else {
        ids.removeSubrange(firstPiece...)
        ids.append(unknownTokenID)
        return
      }
      ids.append(id)
      start = end
    }
  }

  /// Split `vocab.txt` text as Rust's `BufRead::lines` and `trim_end` do.
  static func lines(of text: String) -> [String] {
    var lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last?.isEmpty == true { lines.removeLast() }  // The newline ending the last line.
    return lines.map { line in
      let end = line.lastIndex { !$0.properties.isWhitespace }.map(line.index(after:))
      return String(line[..<(end ?? line.startIndex)])
    }
  }

  // MARK: - Character classes (as `tokenizers` defines them)

  /// Cc, Cf and Co (the `unicode_categories` crate's `is_other`), except tab, newline and
  /// carriage return, which count as whitespace. Unassigned code points are kept.
  static func isControl(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0x09, 0x0A, 0x0D: return false
    default: break
    }
    switch scalar.properties.generalCategory {
    case .control, .format, .privateUse, .surrogate: return true
    default: return false
    }
  }

  /// Rust's `char::is_whitespace` (the White_Space property).
  static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
    let value = scalar.value
    if value < 0x80 { return value == 0x20 || (0x09...0x0D).contains(value) }
    return scalar.properties.isWhitespace
  }

  /// ASCII punctuation (which includes symbols such as `$` and `^`) or any Unicode P* category.
  static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
    let value = scalar.value
    if value < 0x80 {
      return (0x21...0x2F).contains(value) || (0x3A...0x40).contains(value)
        || (0x5B...0x60).contains(value) || (0x7B...0x7E).contains(value)
    }
    switch scalar.properties.generalCategory {
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
      .initialPunctuation, .finalPunctuation, .otherPunctuation:
      return true
    default:
      return false
    }
  }

  /// The CJK ideograph blocks `tokenizers` spaces out. Its sixth range starts at U+2B920, not at
  /// U+2B820 as in the original BERT code; ids follow `tokenizers`.
  static func isChineseIdeograph(_ value: UInt32) -> Bool {
    switch value {
    case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
      0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
      return true
    default:
      return false
    }
  }
}

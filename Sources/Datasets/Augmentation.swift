import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A word-level edit of a text (EDA-style augmentation, Wei & Zou 2019; TinyBERT's masking).
public enum TextEdit: String, Sendable, Equatable, CaseIterable, Codable {
  /// Removes one word (a one-word text is kept).
  case delete
  /// Exchanges one word with the next.
  case swap
  /// Replaces one word with `[MASK]`.
  case mask
  /// Replaces one word the thesaurus knows with one of its synonyms.
  case synonym
}

/// Edited copies of texts: `max(1, round(rate · words))` edits per copy, each an edit drawn
/// uniformly from `edits` at a uniformly drawn place. Words are the text's whitespace-separated
/// pieces; the copy joins them with single spaces.
public struct TextAugmenter: Sendable {
  public static let maskToken = "[MASK]"
  public var edits: [TextEdit]
  public var rate: Double
  /// Needed by `synonym`; without it a synonym edit changes nothing.
  public var thesaurus: Thesaurus?

  public init(edits: [TextEdit], rate: Double, thesaurus: Thesaurus? = nil) {
    self.edits = edits
    self.rate = rate
    self.thesaurus = thesaurus
  }

  /// The number of edits a text of `words` words gets.
  public func editCount(words: Int) -> Int {
    max(1, Int((rate * Double(words)).rounded()))
  }

  /// A copy of `text`; the same `random` state gives the same copy.
  public func edited(_ text: String, random: inout RandomStream) -> String {
    var words = text.split(whereSeparator: { $0.isWhitespace }).map(String.init)
    guard !words.isEmpty, !edits.isEmpty else { return text }
    for _ in 0..<editCount(words: words.count) {
      apply(edits[random.nextInt(below: edits.count)], to: &words, random: &random)
    }
    return words.joined(separator: " ")
  }

  /// Applies one edit. An edit with nothing to act on (deleting the last word, swapping in a
  /// one-word text, a synonym where no word has one) leaves the words as they are.
  public func apply(_ edit: TextEdit, to words: inout [String], random: inout RandomStream) {
    switch edit {
    case .delete:
      guard words.count > 1 else { return }
      words.remove(at: random.nextInt(below: words.count))
    case .swap:
      guard words.count > 1 else { return }
      let index = random.nextInt(below: words.count - 1)
      words.swapAt(index, index + 1)
    case .mask:
      words[random.nextInt(below: words.count)] = Self.maskToken
    case .synonym:
      guard let thesaurus else { return }
      let candidates = words.indices.filter { thesaurus.hasSynonyms(Self.core(of: words[$0]).word) }
      guard !candidates.isEmpty else { return }
      let index = candidates[random.nextInt(below: candidates.count)]
      let (prefix, word, suffix) = Self.core(of: words[index])
      let synonyms = thesaurus.synonyms(of: word)
      words[index] = prefix + synonyms[random.nextInt(below: synonyms.count)] + suffix
    }
  }

  /// A word without its leading and trailing non-letters ("(great," → "(", "great", ","),
  /// lowercased: the thesaurus's key, with what the replacement keeps around it.
  static func core(of word: String) -> (prefix: String, word: String, suffix: String) {
    let characters = Array(word)
    var start = 0
    var end = characters.count
    while start < end && !characters[start].isLetter { start += 1 }
    while end > start && !characters[end - 1].isLetter { end -= 1 }
    return (
      String(characters[..<start]), String(characters[start..<end]).lowercased(),
      String(characters[end...])
    )
  }
}

/// An edit of an image.
public enum ImageEdit: String, Sendable, Equatable, CaseIterable, Codable {
  /// A horizontal mirror, with probability 1/2.
  case flip
  /// Zero-pad by `pad` pixels on every side, then crop back to the size at a uniformly drawn
  /// offset: a shift of up to `pad` pixels in each direction.
  case crop
  /// Adds Gaussian noise of standard deviation `noise` to every pixel.
  case noise
}

/// Edited copies of `C × H × W` images: each edit of `edits` applied once, in the order
/// flip, crop, noise.
public struct ImageAugmenter: Sendable {
  public var edits: [ImageEdit]
  public var pad: Int
  public var noise: Float

  public init(edits: [ImageEdit], pad: Int, noise: Float) {
    self.edits = edits
    self.pad = pad
    self.noise = noise
  }

  /// A copy of `image` (`channels × height × width` values, row-major).
  public func edited(
    _ image: [Float], channels: Int, height: Int, width: Int, random: inout RandomStream
  ) -> [Float] {
    var pixels = image
    if edits.contains(.flip) && random.nextInt(below: 2) == 1 {
      for plane in 0..<channels {
        for row in 0..<height {
          let start = (plane * height + row) * width
          pixels[start..<(start + width)].reverse()
        }
      }
    }
    if edits.contains(.crop) && pad > 0 {
      let dy = random.nextInt(below: 2 * pad + 1) - pad
      let dx = random.nextInt(below: 2 * pad + 1) - pad
      let source = pixels
      for plane in 0..<channels {
        for row in 0..<height {
          for column in 0..<width {
            let (y, x) = (row + dy, column + dx)
            let inside = y >= 0 && y < height && x >= 0 && x < width
            pixels[(plane * height + row) * width + column] =
              inside ? source[(plane * height + y) * width + x] : 0
          }
        }
      }
    }
    if edits.contains(.noise) && noise > 0 {
      var values = [Float](repeating: 0, count: pixels.count)
      values.withUnsafeMutableBufferPointer {
        random.fillNormal($0, mean: 0, standardDeviation: noise)
      }
      for index in pixels.indices { pixels[index] += values[index] }
    }
    return pixels
  }
}

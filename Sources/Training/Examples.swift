import Datasets
import Models
import Surgery
import Tensor

/// Labelled texts, tokenised per batch.
public struct TextExamples: ExampleSource {
  public var texts: LabeledTexts
  public var tokenizer: WordPieceTokenizer
  public var maxLength: Int
  public var split: DataSplit

  public init(texts: LabeledTexts, tokenizer: WordPieceTokenizer, maxLength: Int, split: DataSplit)
  {
    self.texts = texts
    self.tokenizer = tokenizer
    self.maxLength = maxLength
    self.split = split
  }

  public var classCount: Int { texts.labelNames.count }
  public var labels: [Int32] { texts.labels }

  /// The batch, cut to its longest text: padded positions are masked out of attention and the
  /// classifier reads [CLS], so the logits are the same and the work is smaller.
  public func batch(_ indices: [Int]) throws -> Batch {
    let full = makeTextBatch(texts, indices, tokenizer: tokenizer, maxLength: maxLength)
    var longest = 1
    for row in 0..<full.batchSize {
      for column in stride(from: full.length - 1, through: longest, by: -1)
      where full.attentionMask[row * full.length + column] != 0 {
        longest = column + 1
        break
      }
    }
    guard longest < full.length else { return .text(full) }
    func cut(_ values: [Int32]) -> [Int32] {
      (0..<full.batchSize).flatMap { row in
        values[(row * full.length)..<(row * full.length + longest)]
      }
    }
    return .text(
      TextBatch(
        batchSize: full.batchSize, length: longest, inputIDs: cut(full.inputIDs),
        attentionMask: cut(full.attentionMask), tokenTypeIDs: cut(full.tokenTypeIDs),
        labels: full.labels))
  }
}

/// Labelled images.
public struct ImageExamples: ExampleSource {
  public var images: LabeledImages
  public var classCount: Int
  public var split: DataSplit

  public init(images: LabeledImages, classCount: Int, split: DataSplit) {
    self.images = images
    self.classCount = classCount
    self.split = split
  }

  public var labels: [Int32] { images.labels }

  public func batch(_ indices: [Int]) throws -> Batch {
    let (pixels, labels) = images.batch(indices)
    return .images(pixels: pixels, labels: labels)
  }
}

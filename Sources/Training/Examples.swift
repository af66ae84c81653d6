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

  /// The batch, cut to its longest text (`trimmed`).
  public func batch(_ indices: [Int]) throws -> Batch {
    .text(trimmed(makeTextBatch(texts, indices, tokenizer: tokenizer, maxLength: maxLength)))
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

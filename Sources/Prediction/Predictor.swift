import Datasets
import Foundation
import Manifest
import Models
import Tensor

/// Why a checkpoint cannot predict: the file and the fix.
public struct PredictionError: Error, CustomStringConvertible, Sendable {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// A checkpoint ready to classify: its model, its class names, and (BERT) its tokenizer and the
/// sequence length it was trained with.
public struct Predictor: Sendable {
  public var model: Model
  /// Class names, index = class id (`config.json`'s `id2label` or `labels`; `LABEL_i` /
  /// the index when it names none).
  public var labelNames: [String]
  public var tokenizer: WordPieceTokenizer?
  /// Tokens per text, `[CLS]` and `[SEP]` included; longer texts lose their last wordpieces.
  public var maxLength: Int

  public init(
    model: Model, labelNames: [String], tokenizer: WordPieceTokenizer?, maxLength: Int
  ) {
    self.model = model
    self.labelNames = labelNames
    self.tokenizer = tokenizer
    self.maxLength = maxLength
  }

  /// The predictor for a loaded checkpoint: labels from its `config.json`, the tokenizer from
  /// its `vocab.txt`, and the manifest's `max_length` when the checkpoint records the manifest
  /// (else the model's position count), unless `maxLength` is given.
  public init(checkpoint: LoadedCheckpoint, maxLength: Int? = nil) throws(PredictionError) {
    let directory = checkpoint.directory
    guard let classes = checkpoint.model.classCount else {
      throw PredictionError(
        "\(directory.path): error: the model has no classifier head, so it predicts no labels; pass a checkpoint surgeon apply trained"
      )
    }
    var names: [String]
    do {
      names =
        try ConfigurationFile.labelNames(directory.appendingPathComponent("config.json"))
        ?? (0..<classes).map { checkpoint.model.family == "bert" ? "LABEL_\($0)" : String($0) }
    } catch {
      throw PredictionError(error.description)
    }
    guard names.count == classes else {
      throw PredictionError(
        "\(directory.appendingPathComponent("config.json").path): error: names \(names.count) labels but the classifier has \(classes) classes; list one label per class"
      )
    }
    switch checkpoint.model {
    case .bert(let bert):
      let vocabulary = directory.appendingPathComponent("vocab.txt")
      let tokenizer: WordPieceTokenizer
      do {
        tokenizer = try WordPieceTokenizer(vocabularyFile: vocabulary)
      } catch {
        throw PredictionError("\(directory.path): error: \(error.description)")
      }
      guard tokenizer.vocabularySize <= bert.configuration.vocabularySize else {
        throw PredictionError(
          "\(vocabulary.path): error: has \(tokenizer.vocabularySize) tokens but the model embeds \(bert.configuration.vocabularySize); use the vocab.txt of this model"
        )
      }
      let positions = bert.configuration.maxPositions
      let length = maxLength ?? Self.recordedMaxLength(checkpoint.metadata) ?? positions
      guard length >= 2, length <= positions else {
        throw PredictionError(
          "\(directory.path): error: a maximum length of \(length) tokens is outside 2…\(positions) (the model's positions); pass --max-length in that range"
        )
      }
      self.init(model: checkpoint.model, labelNames: names, tokenizer: tokenizer, maxLength: length)
    case .vgg:
      self.init(model: checkpoint.model, labelNames: names, tokenizer: nil, maxLength: 0)
    }
  }

  /// `train.data.max_length` of the manifest a surgeon checkpoint carries.
  static func recordedMaxLength(_ metadata: [String: String]) -> Int? {
    guard let text = metadata["surgeon.manifest"] else { return nil }
    return ManifestDecoder.decode(text: text, file: "surgeon.manifest").manifest?.train?.data
      .maxLength.value
  }

  /// `C × H × W` a VGG takes; nil for BERT.
  public var imageShape: [Int]? {
    guard case .vgg(let vgg) = model else { return nil }
    let c = vgg.configuration
    return [c.inChannels, c.imageSize, c.imageSize]
  }

  /// Class probabilities (softmax of the logits) of `input`'s examples `rows`: `rows.count ×
  /// classes`. Each text batch is padded to its longest row (at most `maxLength`), which the
  /// attention mask hides, so a batch of short texts costs little.
  public func probabilities(of input: PredictionInput, rows: Range<Int>) throws(PredictionError)
    -> Tensor
  {
    var random = RandomStream(seed: 0)
    var logits: Tensor
    do throws(ModelInputError) {
      switch (model, input.examples) {
      case (.bert(let bert), .texts(let texts)):
        guard let tokenizer else { throw ModelInputError("no tokenizer") }
        // A truncated text keeps [CLS] and ends with [SEP], as the trainer's batches do.
        let encoded = texts[rows].map { text -> [Int32] in
          let ids = tokenizer.encode(text)
          guard ids.count > maxLength else { return ids }
          return Array(ids.prefix(maxLength - 1)) + [tokenizer.separatorTokenID]
        }
        let length = encoded.map(\.count).max() ?? 2
        var ids = [Int32](repeating: tokenizer.paddingTokenID, count: rows.count * length)
        var mask = [Int32](repeating: 0, count: rows.count * length)
        for (row, tokens) in encoded.enumerated() {
          let span = row * length..<row * length + tokens.count
          ids.replaceSubrange(span, with: tokens)
          mask.replaceSubrange(span, with: repeatElement(1, count: tokens.count))
        }
        let batch = TextBatch(
          batchSize: rows.count, length: length, inputIDs: ids, attentionMask: mask)
        guard
          let result = try bert.forward(batch, mode: .evaluation, random: &random).outputs.logits
        else { throw ModelInputError("the model has no classifier head") }
        logits = result
      case (.vgg(var vgg), .images(let pixels)):
        logits = try vgg.forward(
          pixels: Self.slice(pixels, rows: rows), labels: nil, mode: .evaluation, random: &random
        ).outputs.logits
      default:
        throw ModelInputError("a \(model.family) model cannot classify this kind of input")
      }
    } catch {
      throw PredictionError("error: \(error.description)")
    }
    Self.softmaxRows(&logits)
    return logits
  }

  /// Rows `rows` of an `N × …` tensor.
  static func slice(_ tensor: Tensor, rows: Range<Int>) -> Tensor {
    let stride = tensor.count / max(1, tensor.shape[0])
    var result = Tensor(zeros: [rows.count] + tensor.shape.dropFirst())
    tensor.withUnsafeBufferPointer { source in
      result.withUnsafeMutableBufferPointer { destination in
        _ = destination.update(
          fromContentsOf: source[rows.lowerBound * stride..<rows.upperBound * stride])
      }
    }
    return result
  }

  /// Softmax of every row, in place (max subtracted first; sums in Double).
  static func softmaxRows(_ logits: inout Tensor) {
    let classes = logits.shape[1]
    logits.withUnsafeMutableBufferPointer { z in
      for row in 0..<z.count / classes {
        let values = z[row * classes..<(row + 1) * classes]
        let largest = values.max() ?? 0
        let exponentials = values.map { Foundation.exp(Double($0 - largest)) }
        let total = exponentials.reduce(0, +)
        for (offset, value) in exponentials.enumerated() {
          z[row * classes + offset] = Float(value / total)
        }
      }
    }
  }
}

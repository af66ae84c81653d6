import Models
import Tensor

/// The order in which training draws examples: a fresh seeded shuffle of `indices` every epoch.
///
/// The whole state is (seed, epoch, position): saved with a checkpoint (it is `Codable`), a
/// resumed run draws exactly the batches the interrupted one would have drawn.
public struct BatchOrder: Sendable, Equatable, Codable {
  /// The examples drawn from (for example a split's `train`).
  public let indices: [Int]
  public let seed: UInt64
  /// Completed passes over `indices`.
  public private(set) var epoch: Int
  /// How many examples of the current epoch's order have been drawn.
  public private(set) var position: Int
  /// The current epoch's order: derived from (seed, epoch), so it is not saved.
  private var order: [Int]

  /// Batches draw from streams of their own, apart from splits and initialisation.
  static let stream: UInt64 = 0x4241_5443_4800_0000  // "BATCH"

  public init(indices: [Int], seed: UInt64) {
    self.init(indices: indices, seed: seed, epoch: 0, position: 0)
  }

  private init(indices: [Int], seed: UInt64, epoch: Int, position: Int) {
    self.indices = indices
    self.seed = seed
    self.epoch = epoch
    self.position = position
    order = Self.order(of: indices, seed: seed, epoch: epoch)
  }

  /// Epoch `epoch`'s shuffle of `indices`, from a stream derived from the seed and the epoch.
  private static func order(of indices: [Int], seed: UInt64, epoch: Int) -> [Int] {
    var random = RandomStream(seed: seed, stream: stream).substream(UInt64(epoch))
    return shuffled(indices, &random)
  }

  /// The next `batchSize` examples. A batch that runs past the end of an epoch continues with
  /// the next epoch's shuffle, so every batch is full; each epoch draws every index exactly once.
  /// Returns an empty batch when there are no indices.
  ///
  /// - Precondition: `batchSize > 0`.
  public mutating func next(_ batchSize: Int) -> [Int] {
    precondition(batchSize > 0, "batch size \(batchSize) must be positive")
    guard !indices.isEmpty else { return [] }
    var batch: [Int] = []
    batch.reserveCapacity(batchSize)
    while batch.count < batchSize {
      let take = min(batchSize - batch.count, order.count - position)
      batch += order[position..<(position + take)]
      position += take
      if position == order.count {
        epoch += 1
        position = 0
        order = Self.order(of: indices, seed: seed, epoch: epoch)
      }
    }
    return batch
  }

  private enum CodingKeys: String, CodingKey {
    case indices, seed, epoch, position
  }

  /// Restores a saved state; the epoch's order is recomputed, not read.
  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    let indices = try container.decode([Int].self, forKey: .indices)
    let seed = try container.decode(UInt64.self, forKey: .seed)
    let epoch = try container.decode(Int.self, forKey: .epoch)
    let position = try container.decode(Int.self, forKey: .position)
    guard epoch >= 0 else {
      throw DecodingError.dataCorruptedError(
        forKey: .epoch, in: container, debugDescription: "epoch \(epoch) is negative")
    }
    guard position >= 0 && position < max(indices.count, 1) else {
      throw DecodingError.dataCorruptedError(
        forKey: .position, in: container,
        debugDescription: "position \(position) is outside 0..<\(indices.count)")
    }
    self.init(indices: indices, seed: seed, epoch: epoch, position: position)
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(indices, forKey: .indices)
    try container.encode(seed, forKey: .seed)
    try container.encode(epoch, forKey: .epoch)
    try container.encode(position, forKey: .position)
  }
}

/// The examples at `indices` tokenized into one batch of exactly `maxLength` tokens per row
/// (`[CLS] … [SEP]`, truncated or padded with `[PAD]`), with their class ids as labels.
///
/// - Precondition: `maxLength >= 2`, and every index is in `0..<texts.count`.
public func makeTextBatch(
  _ texts: LabeledTexts, _ indices: [Int], tokenizer: WordPieceTokenizer, maxLength: Int
) -> TextBatch {
  let encoded = tokenizer.encodeBatch(indices.map { texts.texts[$0] }, maxLength: maxLength)
  return TextBatch(
    batchSize: encoded.batchSize, length: encoded.sequenceLength, inputIDs: encoded.inputIDs,
    attentionMask: encoded.attentionMask, tokenTypeIDs: encoded.tokenTypeIDs,
    labels: indices.map { texts.labels[$0] })
}

/// The share of the examples at `indices` that belong to their most common class: the accuracy
/// of always guessing it, the baseline a trained model must beat. 0 for no indices.
public func majorityClassShare(_ labels: [Int32], over indices: [Int]) -> Double {
  guard !indices.isEmpty else { return 0 }
  var counts: [Int32: Int] = [:]
  for index in indices { counts[labels[index], default: 0] += 1 }
  return Double(counts.values.max() ?? 0) / Double(indices.count)
}

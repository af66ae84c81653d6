import Datasets
import Manifest
import Models
import Plumbing
import Surgery
import Tensor

/// Examples without labels that the teacher labels (`train.distill.augment` and `unlabeled`):
/// `count` of them, numbered `0..<count`, batched by number.
public protocol UnlabeledExampleSource: Sendable {
  var count: Int { get }
  func batch(_ indices: [Int]) throws -> Batch
}

/// One source of extra distillation examples and how each step draws from it: after the
/// training batch, a batch of `batchSize` of its examples (in a seeded shuffle that is
/// reshuffled every pass, like the training batches) adds `weight · T²·KL(teacher ‖ student)`
/// to the step's loss.
public struct SoftLabelPool: Sendable {
  /// "augment" or "unlabeled".
  public var name: String
  public var source: any UnlabeledExampleSource
  public var batchSize: Int
  public var weight: Float
  /// Seeds the order the examples are drawn in.
  public var orderSeed: UInt64
  /// What results.json records about the source (the counts drawn are added after training).
  public var record: ExtraSourceRecord

  public init(
    name: String, source: any UnlabeledExampleSource, batchSize: Int, weight: Float,
    orderSeed: UInt64, record: ExtraSourceRecord
  ) {
    self.name = name
    self.source = source
    self.batchSize = batchSize
    self.weight = weight
    self.orderSeed = orderSeed
    self.record = record
  }

  /// The order a run starts with. The seed is mixed (with "EXTRA") so that a pool's shuffle is
  /// not the training batches' shuffle of another length.
  func initialOrder() -> BatchOrder {
    BatchOrder(indices: Array(0..<source.count), seed: orderSeed ^ 0x4558_5452_4100_0000)
  }

  /// Examples drawn from the pool during each epoch of the training split (a step counts in the
  /// epoch its training batch starts in), over `steps` steps of `batchSize` training examples.
  public func perEpoch(steps: Int, trainingBatchSize: Int, trainingExamples: Int) -> [Int] {
    guard trainingExamples > 0 else { return [] }
    var counts: [Int] = []
    for step in 0..<steps {
      let epoch = step * trainingBatchSize / trainingExamples
      while counts.count <= epoch { counts.append(0) }
      counts[epoch] += batchSize
    }
    return counts
  }
}

/// results.json's account of one extra source (`distill_data.augment`, `.unlabeled`).
public struct ExtraSourceRecord: Codable, Sendable, Equatable {
  /// Distinct examples the source holds.
  public var pool: Int
  public var batchSize: Int
  public var weight: Double
  /// Examples drawn over the whole run, and in each epoch of the training split.
  public var examples: Int = 0
  public var perEpoch: [Int] = []
  // augment
  public var seed: Int?
  public var edits: [String]?
  public var rate: Double?
  public var copies: Int?
  // unlabeled
  public var path: String?
  public var rows: Int?
  /// Rows dropped because their group is a validation or test group.
  public var droppedHeldOutGroups: Int?
  /// Rows dropped because their text is a validation or test text.
  public var droppedHeldOutTexts: Int?

  public init(pool: Int, batchSize: Int, weight: Double) {
    self.pool = pool
    self.batchSize = batchSize
    self.weight = weight
  }

  enum CodingKeys: String, CodingKey {
    case pool, weight, examples, seed, edits, rate, copies, path, rows
    case batchSize = "batch_size"
    case perEpoch = "per_epoch"
    case droppedHeldOutGroups = "dropped_held_out_groups"
    case droppedHeldOutTexts = "dropped_held_out_texts"
  }
}

/// Pool example `index` of `copies` copies of `examples`: copy `index / examples.count` of
/// `examples[index % examples.count]`. Each copy's edits come from a stream of its own, derived
/// from (seed, example, copy), so a copy is the same whatever else the run draws.
struct CopyNumbering: Sendable {
  var examples: [Int]
  var copies: Int
  var seed: UInt64

  /// Edits draw from a stream apart from batches, splits and initialisation.
  static let stream: UInt64 = 0x4155_474D_454E_5400  // "AUGMENT"

  var count: Int { examples.count * copies }

  func origin(of index: Int) -> (example: Int, random: RandomStream) {
    let example = examples[index % examples.count]
    let copy = index / examples.count
    let random = RandomStream(seed: seed, stream: Self.stream).substream(UInt64(example))
      .substream(UInt64(copy))
    return (example, random)
  }
}

/// Edited copies of the training texts.
public struct AugmentedTexts: UnlabeledExampleSource {
  var texts: [String]
  var numbering: CopyNumbering
  public var augmenter: TextAugmenter
  var tokenizer: WordPieceTokenizer
  var maxLength: Int

  /// Copies of `texts[i]` for every `i` of `training` (the training split: validation and test
  /// texts are never copied).
  public init(
    texts: [String], training: [Int], copies: Int, seed: UInt64, augmenter: TextAugmenter,
    tokenizer: WordPieceTokenizer, maxLength: Int
  ) {
    self.texts = texts
    numbering = CopyNumbering(examples: training, copies: copies, seed: seed)
    self.augmenter = augmenter
    self.tokenizer = tokenizer
    self.maxLength = maxLength
  }

  public var count: Int { numbering.count }

  /// The training example pool example `index` copies.
  public func origin(of index: Int) -> Int { numbering.origin(of: index).example }

  /// Pool example `index`'s text.
  public func text(_ index: Int) -> String {
    var (example, random) = numbering.origin(of: index)
    return augmenter.edited(texts[example], random: &random)
  }

  public func batch(_ indices: [Int]) throws -> Batch {
    let texts = indices.map(text)
    let encoded =
      augmenter.edits.contains(.mask)
      ? tokenizer.encodeBatch(maskingTexts: texts, maxLength: maxLength)
      : tokenizer.encodeBatch(texts, maxLength: maxLength)
    return .text(trimmed(unlabeledBatch(encoded)))
  }
}

/// Edited copies of the training images.
public struct AugmentedImages: UnlabeledExampleSource {
  var images: LabeledImages
  var numbering: CopyNumbering
  public var augmenter: ImageAugmenter

  public init(
    images: LabeledImages, training: [Int], copies: Int, seed: UInt64, augmenter: ImageAugmenter
  ) {
    self.images = images
    numbering = CopyNumbering(examples: training, copies: copies, seed: seed)
    self.augmenter = augmenter
  }

  public var count: Int { numbering.count }

  public func origin(of index: Int) -> Int { numbering.origin(of: index).example }

  public func batch(_ indices: [Int]) throws -> Batch {
    let shape = Array(images.pixels.shape.dropFirst())
    let (channels, height, width) = (shape[0], shape[1], shape[2])
    let size = channels * height * width
    var values: [Float] = []
    values.reserveCapacity(indices.count * size)
    for index in indices {
      var (example, random) = numbering.origin(of: index)
      let image = images.batch([example]).pixels.withUnsafeBufferPointer { Array($0) }
      values += augmenter.edited(
        image, channels: channels, height: height, width: width, random: &random)
    }
    return .images(pixels: Tensor(shape: [indices.count] + shape, scalars: values), labels: nil)
  }
}

/// Unlabeled texts read from a table.
public struct UnlabeledTexts: UnlabeledExampleSource {
  public var texts: [String]
  var tokenizer: WordPieceTokenizer
  var maxLength: Int

  public init(texts: [String], tokenizer: WordPieceTokenizer, maxLength: Int) {
    self.texts = texts
    self.tokenizer = tokenizer
    self.maxLength = maxLength
  }

  public var count: Int { texts.count }

  public func batch(_ indices: [Int]) throws -> Batch {
    .text(
      trimmed(
        unlabeledBatch(tokenizer.encodeBatch(indices.map { texts[$0] }, maxLength: maxLength))))
  }

  /// The rows of an unlabeled table that may be distilled on: none whose group is a group of
  /// the held-out (validation and test) examples, none whose text is a held-out text.
  public static func keptRows(
    texts: [String], groups: [String]?, heldOutGroups: Set<String>, heldOutTexts: Set<String>
  ) -> (kept: [Int], droppedForGroups: Int, droppedForTexts: Int) {
    var kept: [Int] = []
    var droppedForGroups = 0
    var droppedForTexts = 0
    for row in texts.indices {
      if let groups, heldOutGroups.contains(groups[row]) {
        droppedForGroups += 1
      } else if heldOutTexts.contains(texts[row]) {
        droppedForTexts += 1
      } else {
        kept.append(row)
      }
    }
    return (kept, droppedForGroups, droppedForTexts)
  }
}

/// A batch without labels.
func unlabeledBatch(_ encoded: EncodedBatch) -> TextBatch {
  TextBatch(
    batchSize: encoded.batchSize, length: encoded.sequenceLength, inputIDs: encoded.inputIDs,
    attentionMask: encoded.attentionMask, tokenTypeIDs: encoded.tokenTypeIDs)
}

/// A batch cut to its longest text: padded positions are masked out of attention and
/// the classifier reads [CLS], so the logits are the same and the work is smaller.
func trimmed(_ full: TextBatch) -> TextBatch {
  var longest = 1
  for row in 0..<full.batchSize {
    for column in stride(from: full.length - 1, through: longest, by: -1)
    where full.attentionMask[row * full.length + column] != 0 {
      longest = column + 1
      break
    }
  }
  guard longest < full.length else { return full }
  func cut(_ values: [Int32]) -> [Int32] {
    (0..<full.batchSize).flatMap { row in
      values[(row * full.length)..<(row * full.length + longest)]
    }
  }
  return TextBatch(
    batchSize: full.batchSize, length: longest, inputIDs: cut(full.inputIDs),
    attentionMask: cut(full.attentionMask), tokenTypeIDs: cut(full.tokenTypeIDs),
    labels: full.labels)
}

extension RunSetup {
  /// The pools of `train.distill.augment` and `unlabeled` over `source`'s split: augmented copies
  /// of training examples only, unlabeled rows of no validation or test group or text.
  static func extraPools(
    _ distill: DistillSettings, source: any ExampleSource, trainSeed: Int, batchSize: Int,
    path: (String) -> String
  ) -> ([SoftLabelPool], [Diagnostic]) {
    var pools: [SoftLabelPool] = []
    var diagnostics: [Diagnostic] = []
    func report(_ location: SourceLocation, _ message: String, fix: String? = nil) {
      diagnostics.append(
        Diagnostic(location: location, severity: .error, message: message, fix: fix))
    }
    let split = source.split
    if let augment = distill.augment {
      let seed = UInt64(augment.seed)
      var record = ExtraSourceRecord(
        pool: split.train.count * augment.copies, batchSize: augment.batch.batchSize ?? batchSize,
        weight: augment.batch.weight)
      record.seed = augment.seed
      record.edits = augment.edits.map(\.value.rawValue)
      record.copies = augment.copies
      var augmented: (any UnlabeledExampleSource)?
      if let texts = source as? TextExamples {
        record.rate = augment.rate
        var thesaurus: Thesaurus?
        if let file = augment.thesaurus {
          do throws(DatasetError) {
            thesaurus = try Thesaurus.read(path: path(file.value))
          } catch {
            report(file.location, error.quoted)
          }
        }
        let mask = augment.edits.first { $0.value == .mask }
        if let mask, texts.tokenizer.maskTokenID == nil {
          report(
            mask.location, "the mask edit needs a [MASK] token, and the model's vocab.txt has none",
            fix: "remove mask from edits")
        }
        let augmenter = TextAugmenter(
          edits: augment.edits.compactMap { TextEdit(rawValue: $0.value.rawValue) },
          rate: augment.rate, thesaurus: thesaurus)
        augmented = AugmentedTexts(
          texts: texts.texts.texts, training: split.train, copies: augment.copies, seed: seed,
          augmenter: augmenter, tokenizer: texts.tokenizer, maxLength: texts.maxLength)
      } else if let images = source as? ImageExamples {
        let augmenter = ImageAugmenter(
          edits: augment.edits.compactMap { ImageEdit(rawValue: $0.value.rawValue) },
          pad: augment.pad, noise: Float(augment.noise))
        augmented = AugmentedImages(
          images: images.images, training: split.train, copies: augment.copies, seed: seed,
          augmenter: augmenter)
      }
      if let augmented, !split.train.isEmpty {
        pools.append(
          SoftLabelPool(
            name: "augment", source: augmented, batchSize: record.batchSize,
            weight: Float(augment.batch.weight), orderSeed: seed, record: record))
      }
    }
    if let unlabeled = distill.unlabeled, let texts = source as? TextExamples {
      do throws(DatasetError) {
        let read = try TableReader.readTexts(
          path: path(unlabeled.path.value),
          format: TableFormat(rawValue: unlabeled.format.rawValue) ?? .csv,
          textColumn: unlabeled.textColumn, groupColumn: unlabeled.groupBy?.value)
        let heldOut = split.validation + split.test
        let heldOutGroups = Set(
          texts.texts.groups.map { groups in heldOut.map { groups[$0] } } ?? [])
        let (kept, droppedForGroups, droppedForTexts) = UnlabeledTexts.keptRows(
          texts: read.texts, groups: read.groups, heldOutGroups: heldOutGroups,
          heldOutTexts: Set(heldOut.map { texts.texts.texts[$0] }))
        if kept.isEmpty {
          report(
            unlabeled.location,
            "none of the \(read.texts.count) rows of \(unlabeled.path.value) is left once the rows of validation and test groups and texts are dropped",
            fix: "distil on other unlabeled texts, or remove unlabeled")
        } else {
          var record = ExtraSourceRecord(
            pool: kept.count, batchSize: unlabeled.batch.batchSize ?? batchSize,
            weight: unlabeled.batch.weight)
          record.path = unlabeled.path.value
          record.rows = read.texts.count
          record.droppedHeldOutGroups = droppedForGroups
          record.droppedHeldOutTexts = droppedForTexts
          pools.append(
            SoftLabelPool(
              name: "unlabeled",
              source: UnlabeledTexts(
                texts: kept.map { read.texts[$0] }, tokenizer: texts.tokenizer,
                maxLength: texts.maxLength), batchSize: record.batchSize,
              weight: Float(unlabeled.batch.weight), orderSeed: UInt64(trainSeed),
              record: record))
        }
      } catch {
        report(unlabeled.location, quotedDescription(of: error))
      }
    }
    return (pools, diagnostics)
  }
}

import Datasets
import Models
import Tensor

/// The layouts `surgeon predict` reads.
public enum PredictionFormat: String, Sendable, CaseIterable {
  case csv, tsv, jsonl, idx

  /// The format a file name implies (`.csv`, `.tsv`, `.jsonl`/`.json`, `-ubyte`/`.idx*`, each
  /// optionally `.gz` for IDX); nil when the name does not say.
  public static func implied(byName name: String) -> PredictionFormat? {
    let lower = name.lowercased()
    if lower.hasSuffix(".csv") { return .csv }
    if lower.hasSuffix(".tsv") { return .tsv }
    if lower.hasSuffix(".jsonl") || lower.hasSuffix(".json") { return .jsonl }
    let stem = lower.hasSuffix(".gz") ? String(lower.dropLast(3)) : lower
    if stem.hasSuffix("-ubyte") || stem.hasSuffix(".idx") || stem.contains(".idx3")
      || stem.contains("-idx3")
    {
      return .idx
    }
    return nil
  }
}

/// Examples to classify, and the class ids of their labels when the input has them.
public struct PredictionInput: Sendable {
  public enum Examples: Sendable {
    case texts([String])
    /// `N × C × H × W` in [0, 1].
    case images(Tensor)
  }

  public var examples: Examples
  /// Class ids (indices into the checkpoint's labels), one per example; nil without labels.
  public var labels: [Int32]?

  public init(examples: Examples, labels: [Int32]?) {
    self.examples = examples
    self.labels = labels
  }

  public var count: Int {
    switch examples {
    case .texts(let texts): return texts.count
    case .images(let pixels): return pixels.shape[0]
    }
  }
}

/// Reads prediction inputs and checks them against the checkpoint they are for, so that every
/// problem is found before anything is computed or written.
public enum PredictionReader {
  /// Texts from a CSV, TSV or JSON Lines table; labels when it has `labelColumn`.
  ///
  /// - Parameters:
  ///   - name: the file as messages call it (`<stdin>` for `/dev/stdin`).
  ///   - labelNames: the checkpoint's classes, index = class id.
  ///   - checkpoint: the checkpoint's directory, named in the fix for an unknown label.
  public static func readTexts(
    path: String, name: String? = nil, format: TableFormat, textColumn: String,
    labelColumn: String, labelNames: [String], checkpoint: String
  ) throws(DatasetError) -> PredictionInput {
    let shown = name ?? path
    let rows = try TableReader.readTexts(
      path: path, name: shown, format: format, textColumn: textColumn, labelColumn: labelColumn)
    var classIDs: [Int32]?
    if let labels = rows.labels {
      let index = Dictionary(
        labelNames.enumerated().map { ($0.element, Int32($0.offset)) },
        uniquingKeysWith: { a, _ in a })
      var ids: [Int32] = []
      ids.reserveCapacity(labels.count)
      for (row, label) in labels.enumerated() {
        guard let id = index[label] else {
          throw DatasetError(
            file: shown, location: "line \(rows.lines[row])",
            problem: "row \(row + 1) has label '\(label)' in column '\(labelColumn)', which the "
              + "checkpoint does not know (its labels: \(quoted(labelNames)))",
            fix: "write the labels as \(checkpoint)/config.json names them, or pass --label with "
              + "the column that holds them")
        }
        ids.append(id)
      }
      classIDs = ids
    }
    return PredictionInput(examples: .texts(rows.texts), labels: classIDs)
  }

  /// Images from an IDX file (`N × H × W` or `N × C × H × W` unsigned bytes, plain or gzip) and,
  /// optionally, their labels from an IDX labels file.
  ///
  /// - Parameter imageShape: `C × H × W` the checkpoint takes.
  public static func readImages(
    path: String, name: String? = nil, labelsPath: String?, imageShape: [Int], classCount: Int,
    checkpoint: String
  ) throws(DatasetError) -> PredictionInput {
    let shown = name ?? path
    let pixels: Tensor
    do {
      pixels = try IDXReader.readImages(path: path)
    } catch {
      var renamed = error
      if renamed.file == path { renamed.file = shown }
      throw renamed
    }
    let found = Array(pixels.shape.dropFirst())
    guard found == imageShape else {
      throw DatasetError(
        file: shown,
        problem:
          "holds images of \(describe(found)) but the checkpoint takes \(describe(imageShape))",
        fix: "resize the images to \(imageShape[1])×\(imageShape[2]) with \(imageShape[0]) "
          + "channel\(imageShape[0] == 1 ? "" : "s") (\(checkpoint)/config.json: image_size, "
          + "in_channels)")
    }
    var labels: [Int32]?
    if let labelsPath {
      let read = try IDXReader.readLabels(path: labelsPath)
      guard read.count == pixels.shape[0] else {
        throw DatasetError(
          file: labelsPath,
          problem: "holds \(read.count) labels but \(shown) holds \(pixels.shape[0]) images",
          fix: "pass the labels file that belongs to these images")
      }
      if let bad = read.firstIndex(where: { $0 >= classCount }) {
        throw DatasetError(
          file: labelsPath, location: "record \(bad + 1)",
          problem: "label \(read[bad]) is not a class of the checkpoint, which has "
            + "\(classCount) (0…\(classCount - 1))",
          fix: "pass the labels of the data the checkpoint was trained on")
      }
      labels = read
    }
    return PredictionInput(examples: .images(pixels), labels: labels)
  }

  /// "3 channels of 32×32".
  private static func describe(_ shape: [Int]) -> String {
    guard shape.count == 3 else { return shape.map(String.init).joined(separator: "×") }
    return "\(shape[0]) channel\(shape[0] == 1 ? "" : "s") of \(shape[1])×\(shape[2])"
  }

  static func quoted(_ names: [String]) -> String {
    names.map { "'\($0)'" }.joined(separator: ", ")
  }
}

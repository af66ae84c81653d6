import Foundation
import Plumbing

/// What a sweep keeps of a finished cell once its output directory is gone: the manifest it ran
/// and everything the comparison reads (accuracies, counts, curves, the test predictions), in
/// one small JSON file (`records:` in the sweep file; docs/compare.md). Model weights are not
/// kept. Records are meant to be committed, so a sweep outlives the machine that ran it.
public struct CellRecord: Sendable {
  /// The format of the file; a reader refuses others.
  public static let format = 1

  public var result: CellResult
  /// The derived manifest the cell ran, without its first line (the comment naming the sweep
  /// file), as `SweepRun.sameManifest` compares it.
  public var manifest: String

  public init(result: CellResult, manifest: String) {
    self.result = result
    self.manifest = manifest
  }

  /// The record's JSON: keys sorted, one line per field, so a record diffs and merges sanely.
  public func encoded() -> Data {
    let cell = result.cell
    var object: [String: Any] = [
      "record": Self.format,
      "id": cell.id,
      "method": cell.method,
      "lr": cell.learningRate,
      "seed": cell.seed,
      "manifest": manifest,
      "validation": result.validationAccuracy,
      "test": result.testAccuracy,
      "train_seconds": result.trainSeconds,
      "ends_w_free": result.endsWFree,
      "stuck_at_chance": result.stuckAtChance,
      "deployed_params": result.deployedParameters,
      "kept_share": result.keptShare,
      "curve": result.curve.map { [Double($0.step), $0.accuracy, $0.wFree] },
      "losses": result.losses.map { [Double($0.step), $0.loss] },
    ]
    if let rank = cell.rank { object["rank"] = rank }
    if let build = result.build { object["build"] = build }
    if let inputs = result.inputs {
      object["inputs"] = inputs.mapValues {
        ["crc32": $0.crc32, "bytes": $0.bytes] as [String: Any]
      }
    }
    if let predictions = result.predictions {
      object["predictions"] = [
        "model": predictions.model,
        "indices": predictions.indices,
        "labels": predictions.labels,
        "predicted": predictions.predicted,
      ]
    }
    var lines: [String] = []
    for key in object.keys.sorted() {
      // Every value is JSON-encodable by construction (numbers are finite or JSON's null).
      let value = Self.json(object[key]!)
      lines.append("  \(Self.json(key)): \(value)")
    }
    return Data(("{\n" + lines.joined(separator: ",\n") + "\n}\n").utf8)
  }

  private static func json(_ value: Any) -> String {
    if let number = value as? Double, !number.isFinite { return "null" }
    if let list = value as? [[Double]] {
      return "["
        + list.map { "[" + $0.map { json($0) }.joined(separator: ",") + "]" }
        .joined(separator: ",") + "]"
    }
    let data =
      (try? JSONSerialization.data(
        withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]))
      ?? Data("null".utf8)
    return String(decoding: data, as: UTF8.self)
  }

  /// The record of `cell` in `url`; nil when there is none. A file that is not a record of this
  /// cell is an error naming it and the fix.
  public static func read(_ url: URL, cell: Cell) throws -> CellRecord? {
    guard let data = FileContents.read(url.path) else { return nil }
    func invalid(_ problem: String) -> CellReader.ReadError {
      CellReader.ReadError(
        description:
          "\(url.path): error: \(problem); restore it from version control, or delete it to rerun the cell"
      )
    }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw invalid("not a JSON object (a cell record of a sweep)")
    }
    guard object["record"] as? Int == format else {
      throw invalid("'record' must be \(format), the record format this surgeon reads")
    }
    guard object["id"] as? String == cell.id else {
      throw invalid("it records cell '\(object["id"] as? String ?? "?")', not '\(cell.id)'")
    }
    guard let manifest = object["manifest"] as? String,
      let validation = number(object["validation"]), let test = object["test"] as? Double
    else {
      throw invalid("'manifest', 'validation' and 'test' are required")
    }
    guard (0...1).contains(test), validation.isNaN || (0...1).contains(validation) else {
      throw invalid("'test' and 'validation' must be accuracies in [0, 1]")
    }
    // Lists of [step, value...]: a step is a whole number of steps, the values numbers or null.
    func rows(_ key: String, width: Int) throws -> [(step: Int, values: [Double])] {
      guard let value = object[key] else { return [] }
      guard let list = value as? [[Any]] else {
        throw invalid("'\(key)' must be a list of [step, value...] lists")
      }
      return try list.map { row in
        let numbers = row.compactMap(number)
        guard row.count == width, numbers.count == width, let step = Int(exactly: numbers[0]),
          step >= 0
        else {
          throw invalid(
            "each entry of '\(key)' must be [step, \(width - 1) numbers], the step a whole number")
        }
        return (step, Array(numbers.dropFirst()))
      }
    }
    let curve = try rows("curve", width: 3).map { ($0.step, $0.values[0], $0.values[1]) }
    let losses = try rows("losses", width: 2).map { ($0.step, $0.values[0]) }
    var predictions: CellPredictions?
    if let entry = object["predictions"] {
      guard let fields = entry as? [String: Any] else {
        throw invalid("'predictions' must be an object")
      }
      predictions = try CellPredictions.decode(fields) { invalid("predictions: " + $0) }
    }
    let result = CellResult(
      cell: cell, validationAccuracy: validation, testAccuracy: test,
      trainSeconds: object["train_seconds"] as? Double ?? 0,
      endsWFree: object["ends_w_free"] as? Bool ?? false,
      stuckAtChance: object["stuck_at_chance"] as? Bool ?? false,
      deployedParameters: object["deployed_params"] as? Int ?? 0,
      keptShare: object["kept_share"] as? Double ?? 1, curve: curve, losses: losses,
      predictions: predictions, build: object["build"] as? String,
      inputs: try object["inputs"].map { try CellReader.inputFingerprints($0, invalid: invalid) })
    return CellRecord(result: result, manifest: manifest)
  }

  /// A JSON number, or NaN for JSON's null (a record of a validation accuracy that was not a
  /// number).
  private static func number(_ value: Any?) -> Double? {
    if value is NSNull { return .nan }
    return value as? Double
  }
}

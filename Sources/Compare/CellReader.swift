import Foundation
import Plumbing
import SafeTensors

/// Reads a finished cell's output directory: results.json, metrics.jsonl, predictions.json (when
/// the run wrote one) and the tensor shapes of model.safetensors (its header only).
public enum CellReader {
  public struct ReadError: Error, CustomStringConvertible {
    public var description: String
  }

  /// The cell's result; nil when it has not finished (no results.json).
  public static func read(_ cell: Cell, directory: URL) throws -> CellResult? {
    let resultsURL = directory.appendingPathComponent("results.json")
    guard let data = FileContents.read(resultsURL.path) else { return nil }
    guard let results = try JSONSerialization.jsonObject(with: data) as? [String: Any],
      let test = results["test_accuracy"] as? Double
    else {
      throw ReadError(description: "\(resultsURL.path): not a surgeon results.json")
    }
    let endsWFree = results["ends_w_free"] as? Bool ?? false
    let params = results["params"] as? [String: Any] ?? [:]
    var curve: [(step: Int, accuracy: Double, wFree: Double)] = []
    var losses: [(step: Int, loss: Double)] = []
    let metrics = directory.appendingPathComponent("metrics.jsonl")
    if let text = try? String(contentsOf: metrics, encoding: .utf8) {
      for line in text.split(separator: "\n") {
        guard
          let object = try? JSONSerialization.jsonObject(with: Data(line.utf8))
            as? [String: Any],
          let step = object["step"] as? Int
        else { continue }
        if object["type"] as? String == "step", let loss = object["loss"] as? Double {
          losses.append((step, loss))
        } else if object["type"] as? String == "evaluation",
          object["split"] as? String == "validation",
          let accuracy = object["accuracy"] as? Double,
          let exported = object["exportedAccuracy"] as? Double
        {
          curve.append((step, accuracy, exported))
        }
      }
    }
    let last = curve.last
    let validation =
      last.map { endsWFree ? $0.wFree : $0.accuracy }
      ?? (results["validation_accuracy"] as? Double
        ?? .nan)
    let shapes = try tensorShapes(directory.appendingPathComponent("model.safetensors"))
    let (base, factors) = wrappedCounts(shapes)
    let total = params["total"] as? Int ?? 0
    let deployed: Int
    let kept: Double
    if endsWFree {
      deployed = params["compressed_total"] as? Int ?? total
      kept = base > 0 ? Double(factors) / Double(base) : 1
    } else {
      // W kept: the adapters merge into W (or there are none).
      let adapters = shapes.filter { $0.key.hasSuffix(".lora_A") || $0.key.hasSuffix(".lora_B") }
        .values.reduce(0) { $0 + $1.reduce(1, *) }
      deployed = total - adapters
      kept = 1
    }
    return CellResult(
      cell: cell, validationAccuracy: validation, testAccuracy: test,
      trainSeconds: results["train_seconds"] as? Double ?? 0, endsWFree: endsWFree,
      stuckAtChance: results["stuck_at_chance"] as? Bool ?? false, deployedParameters: deployed,
      keptShare: kept, curve: curve, losses: losses,
      predictions: try CellPredictions.read(directory.appendingPathComponent("predictions.json")),
      build: (results["build"] as? [String: Any])?["executable_crc32"] as? String,
      inputs: try (results["inputs"]).map {
        try inputFingerprints($0) {
          ReadError(
            description: "\(resultsURL.path): \($0); rerun the cell (delete its results.json)")
        }
      })
  }

  /// A JSON object of input fingerprints (`{"path": {"crc32": "…", "bytes": n}}`: results.json's
  /// and a record's `inputs`); `invalid` phrases a problem for the file it came from.
  static func inputFingerprints(_ value: Any, invalid: (String) -> ReadError) throws -> [String:
    FileFingerprint]
  {
    guard let object = value as? [String: Any] else {
      throw invalid("'inputs' must be an object of path: {crc32, bytes}")
    }
    return try object.mapValues { entry in
      guard let fields = entry as? [String: Any], let crc32 = fields["crc32"] as? String,
        let bytes = fields["bytes"] as? Int
      else {
        throw invalid("each entry of 'inputs' must be {\"crc32\": \"8 hex digits\", \"bytes\": n}")
      }
      return FileFingerprint(crc32: crc32, bytes: bytes)
    }
  }

  /// For every node with an adapter (`<node>.lora_A`): `W` + `b` against `A` + `B` + `C`.
  public static func wrappedCounts(_ shapes: [String: [Int]]) -> (base: Int, factors: Int) {
    var base = 0
    var factors = 0
    func count(_ name: String) -> Int { shapes[name].map { $0.reduce(1, *) } ?? 0 }
    for name in shapes.keys where name.hasSuffix(".lora_A") {
      let node = String(name.dropLast(".lora_A".count))
      base += count(node + ".weight") + count(node + ".bias")
      factors += count(node + ".lora_A") + count(node + ".lora_B") + count(node + ".lora_C")
    }
    return (base, factors)
  }

  /// Tensor name → shape, from a safetensors file's header (the shared reader, so a cell's file
  /// is held to the same limits as a checkpoint's); empty when the run wrote no weights.
  public static func tensorShapes(_ url: URL) throws -> [String: [Int]] {
    guard FileManager.default.fileExists(atPath: url.path) else { return [:] }
    return try SafeTensorsFile.readHeader(contentsOf: url).tensors.mapValues(\.shape)
  }
}

import Foundation

/// Reads a finished cell's output directory: results.json, metrics.jsonl, predictions.json (when
/// the run wrote one) and the tensor shapes of model.safetensors (its header only).
public enum CellReader {
  public struct ReadError: Error, CustomStringConvertible {
    public var description: String
  }

  /// The cell's result; nil when it has not finished (no results.json).
  public static func read(_ cell: Cell, directory: URL) throws -> CellResult? {
    let resultsURL = directory.appendingPathComponent("results.json")
    guard let data = FileManager.default.contents(atPath: resultsURL.path) else { return nil }
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
      predictions: try CellPredictions.read(directory.appendingPathComponent("predictions.json")))
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

  /// Tensor name → shape, from a safetensors file's JSON header.
  public static func tensorShapes(_ url: URL) throws -> [String: [Int]] {
    guard let handle = try? FileHandle(forReadingFrom: url) else { return [:] }
    defer { try? handle.close() }
    guard let prefix = try handle.read(upToCount: 8), prefix.count == 8 else {
      throw ReadError(description: "\(url.path): too short for a safetensors file")
    }
    let length = prefix.enumerated().reduce(UInt64(0)) {
      $0 | UInt64($1.element) << (8 * $1.offset)
    }
    guard length < 100_000_000, let header = try handle.read(upToCount: Int(length)),
      let object = try JSONSerialization.jsonObject(with: header) as? [String: Any]
    else {
      throw ReadError(description: "\(url.path): unreadable safetensors header")
    }
    var result: [String: [Int]] = [:]
    for (name, value) in object where name != "__metadata__" {
      if let entry = value as? [String: Any], let shape = entry["shape"] as? [Int] {
        result[name] = shape
      }
    }
    return result
  }
}

import Foundation
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// `surgeon plan`, lock files, `expect:` and the checks around them, through the built binary
/// on the tiny BERT fixture (hidden 32, 2 layers, intermediate 64, 2 classes).
final class PlanCommandTests: XCTestCase {
  private var workspace: URL!

  override func setUpWithError() throws {
    workspace = try makeTinyBertWorkspace(
      prefix: "surgeon-plan", seed: 3, rows: 40, extraWords: 3, groups: false)
    addTeardownBlock { [workspace] in try? FileManager.default.removeItem(at: workspace!) }
  }

  /// Line 7: the lora rule; 10: freeze; 11: train.
  private func manifest(
    layers: String = "[query, value]", rank: Int = 4, extra: String = "",
    output: String = "checkpoints/planned"
  ) -> String {
    """
    surgeon: 1
    name: planned
    model:
      family: bert
      checkpoint: checkpoints/tiny-bert
    surgery:
      - lora:
          layers: \(layers)
          rank: \(rank)
      - freeze: [encoder.layer.1.attention.self.value]
      - train: [classifier]
    output:
      dir: \(output)
    \(extra)
    """
  }

  @discardableResult
  private func write(_ text: String, _ name: String = "planned.yaml") throws -> String {
    try text.write(to: file(name), atomically: true, encoding: .utf8)
    return name
  }

  private func file(_ path: String) -> URL { workspace.appendingPathComponent(path) }

  private func surgeon(_ arguments: [String]) throws -> SurgeonRun {
    try runSurgeon(arguments, in: workspace)
  }

  private func json(_ text: String) throws -> [String: Any] {
    try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
  }

  // Hand counts: an r-4 adapter on a 32×32 Linear is A 4×32 + B 32×4 = 256 parameters; the
  // classifier is 2×32 + 2 = 66; a 32×32 Linear with bias is 1,056. Linear parameters of the
  // model: per layer 4 × 1,056 + (64×32 + 64) + (32×64 + 32) = 8,416, two layers, the pooler
  // 1,056 and the classifier 66: 17,954.
  func testPlanListsRulesNodesOverridesAndCounts() throws {
    try write(manifest())
    let run = try surgeon(["plan", "planned.yaml", "--json"])
    XCTAssertEqual(run.status, 0, run.error)
    let plan = try json(run.output)
    let rules = try XCTUnwrap(plan["rules"] as? [[String: Any]])
    XCTAssertEqual(rules.map { $0["line"] as? Int }, [7, 10, 11])
    XCTAssertEqual(rules.map { $0["kind"] as? String }, ["lora", "freeze", "train"])
    XCTAssertEqual(
      rules[0]["matched"] as? [String],
      [
        "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.value",
        "bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.attention.self.value",
      ])
    XCTAssertEqual(rules[2]["matched"] as? [String], ["classifier"])
    let nodes = try XCTUnwrap(plan["nodes"] as? [[String: Any]])
    func node(_ name: String) throws -> [String: Any] {
      try XCTUnwrap(nodes.first { $0["name"] as? String == name }, name)
    }
    let overridden = try node("bert.encoder.layer.1.attention.self.value")
    XCTAssertEqual(overridden["action"] as? String, "frozen")
    XCTAssertEqual(overridden["rule"] as? Int, 2)
    XCTAssertEqual(overridden["overrides"] as? [Int], [1])
    XCTAssertTrue(overridden["rank"] is NSNull)
    let query = try node("bert.encoder.layer.0.attention.self.query")
    XCTAssertEqual(query["action"] as? String, "wrapped")
    XCTAssertEqual(query["rank"] as? Int, 4)
    XCTAssertEqual(query["overrides"] as? [Int], [])
    XCTAssertEqual(try node("classifier")["action"] as? String, "trained")
    XCTAssertTrue(try node("bert.encoder.layer.0.attention.self.key")["rule"] is NSNull)
    let counts = try XCTUnwrap(plan["counts"] as? [String: Any])
    XCTAssertEqual(counts["trainable"] as? Int, 3 * 256 + 66)
    XCTAssertEqual(counts["wrapped"] as? Int, 3)
    XCTAssertEqual(
      try XCTUnwrap(counts["coverage"] as? Double), 3 * 1_056 / 17_954, accuracy: 1e-12)
    // The same counts summary prints.
    let summary = try json(try surgeon(["summary", "planned.yaml", "--json"]).output)
    XCTAssertEqual(counts["total"] as? Int, summary["total"] as? Int)
    XCTAssertEqual(counts["trainable"] as? Int, summary["trainable"] as? Int)
    XCTAssertEqual(counts["compressed_total"] as? Int, summary["compressed_total"] as? Int)

    let text = try surgeon(["plan", "planned.yaml"])
    XCTAssertEqual(text.status, 0, text.error)
    XCTAssertTrue(text.output.contains("1. lora (line 7): 4 nodes"), text.output)
    XCTAssertTrue(text.output.contains("no weights read"), text.output)
    XCTAssertTrue(
      text.output.contains("trainable 834") && text.output.contains("wrapped 3 nodes"),
      text.output)
  }

  func testBudgetedRanksAreDecidedAtApply() throws {
    try write(
      manifest(
        extra: "", output: "checkpoints/planned"
      ).replacingOccurrences(
        of: "      rank: 4\n", with: "      rank: 4\n      budget: {share: 0.2, floor: 1}\n"))
    let run = try surgeon(["plan", "planned.yaml", "--json"])
    XCTAssertEqual(run.status, 0, run.error)
    let nodes = try XCTUnwrap(try json(run.output)["nodes"] as? [[String: Any]])
    let query = try XCTUnwrap(
      nodes.first { $0["name"] as? String == "bert.encoder.layer.0.attention.self.query" })
    XCTAssertEqual(query["rank"] as? String, "≤4, decided at apply from the weights")
  }

  /// Keeps the header and 16 bytes of data: header-only readers work, loading refuses.
  private func truncateWeights() throws {
    let url = file("checkpoints/tiny-bert/model.safetensors")
    let bytes = try Data(contentsOf: url)
    let headerLength = bytes.prefix(8).withUnsafeBytes {
      Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
    }
    try bytes.prefix(8 + headerLength + 16).write(to: url)
  }

  func testPlanValidateAndSummaryReadTheHeaderOnlyWhileApplyRefusesTruncatedWeights() throws {
    try write(manifest())
    let before = try surgeon(["plan", "planned.yaml", "--json"])
    XCTAssertEqual(before.status, 0, before.error)
    try truncateWeights()
    let after = try surgeon(["plan", "planned.yaml", "--json"])
    XCTAssertEqual(after.status, 0, after.error)
    XCTAssertEqual(after.output, before.output)
    XCTAssertEqual(try surgeon(["validate", "planned.yaml"]).status, 0)
    let summary = try surgeon(["summary", "checkpoints/tiny-bert"])
    XCTAssertEqual(summary.status, 0, summary.error)
    let apply = try surgeon(["apply", "planned.yaml"])
    XCTAssertEqual(apply.status, 1, apply.error)
    XCTAssertTrue(apply.error.contains("the file is truncated"), apply.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/planned").path))
  }

  // MARK: - Locks

  private func lockAndExpectDrift(
    from original: String, to changed: String, lines expected: [String]
  ) throws {
    try write(original)
    let locked = try surgeon(["plan", "planned.yaml", "--lock"])
    XCTAssertEqual(locked.status, 0, locked.error)
    XCTAssertTrue(FileManager.default.fileExists(atPath: file("planned.lock.json").path))
    XCTAssertEqual(try surgeon(["validate", "planned.yaml"]).status, 0)
    try write(changed)
    let drifted = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(drifted.status, 1, drifted.error)
    let lines = drifted.error.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines, expected)
    // apply refuses before writing anything; --update-lock accepts the new plan.
    let apply = try surgeon(["apply", "planned.yaml"])
    XCTAssertEqual(apply.status, 1, apply.error)
    XCTAssertTrue(apply.error.contains("planned.lock.json"), apply.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/planned").path))
    XCTAssertEqual(try surgeon(["validate", "planned.yaml", "--update-lock"]).status, 0)
    let accepted = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(accepted.status, 0, accepted.error)
  }

  func testAnEditedRuleDriftsAtItsLine() throws {
    try lockAndExpectDrift(
      from: manifest(), to: manifest(rank: 8),
      lines: [
        "planned.yaml:7:5: error: the plan differs from planned.lock.json for 3 nodes (if the change is intended, accept it with --update-lock):",
        "    - bert.encoder.layer.0.attention.self.query  lora r4  [32, 32]",
        "    + bert.encoder.layer.0.attention.self.query  lora r8  [32, 32]",
        "    - bert.encoder.layer.0.attention.self.value  lora r4  [32, 32]",
        "    + bert.encoder.layer.0.attention.self.value  lora r8  [32, 32]",
        "    - bert.encoder.layer.1.attention.self.query  lora r4  [32, 32]",
        "    + bert.encoder.layer.1.attention.self.query  lora r8  [32, 32]",
      ])
  }

  func testAWidenedRegexDriftsAtItsRule() throws {
    try lockAndExpectDrift(
      from: manifest(layers: "['/.*layer\\.0\\.attention\\.self\\.query/']"),
      to: manifest(layers: "['/.*layer\\.0\\.attention\\.self\\.(query|key)/']"),
      lines: [
        "planned.yaml:7:5: error: the plan differs from planned.lock.json for 1 node (if the change is intended, accept it with --update-lock):",
        "    - bert.encoder.layer.0.attention.self.key  frozen  [32, 32]",
        "    + bert.encoder.layer.0.attention.self.key  lora r4  [32, 32]",
      ])
  }

  func testAChangedConfigFieldDriftsAtTheModel() throws {
    try write(manifest())
    XCTAssertEqual(try surgeon(["plan", "planned.yaml", "--lock"]).status, 0)
    let lock = try json(try String(contentsOf: file("planned.lock.json"), encoding: .utf8))
    let model = try XCTUnwrap(lock["model"] as? [String: Any])
    let fingerprint = try XCTUnwrap(model["fingerprint"] as? String)
    XCTAssertEqual(lock["surgeon_lock"] as? Int, 1)
    XCTAssertEqual((lock["nodes"] as? [Any])?.count, 22)
    let config = file("checkpoints/tiny-bert/config.json")
    let text = try String(contentsOf: config, encoding: .utf8)
    try text.replacingOccurrences(of: "\"gelu\"", with: "\"relu\"").write(
      to: config, atomically: true, encoding: .utf8)
    let drifted = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(drifted.status, 1)
    let lines = drifted.error.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.count, 1, drifted.error)
    XCTAssertTrue(
      lines[0].hasPrefix(
        "planned.yaml:5:15: error: the model differs from planned.lock.json (fingerprint \(fingerprint) → "
      ), drifted.error)
    XCTAssertTrue(
      lines[0].hasSuffix(
        "): hidden_act gelu → relu; if the change is intended, accept it with --update-lock"),
      drifted.error)
  }

  /// A checkpoint with a third layer, header only (its data is never read): the layer-1
  /// entries copied as layer 2 after the last tensor.
  private func addLayer() throws {
    let url = file("checkpoints/tiny-bert/model.safetensors")
    let bytes = try Data(contentsOf: url)
    let length = bytes.prefix(8).withUnsafeBytes {
      Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
    }
    var header = try json(String(decoding: bytes[8..<(8 + length)], as: UTF8.self))
    var end =
      header.values.compactMap { ($0 as? [String: Any])?["data_offsets"] as? [Int] }
      .map { $0[1] }.max() ?? 0
    for (name, value) in header where name.contains("encoder.layer.1.") {
      var entry = try XCTUnwrap(value as? [String: Any])
      let offsets = try XCTUnwrap(entry["data_offsets"] as? [Int])
      entry["data_offsets"] = [end, end + offsets[1] - offsets[0]]
      end += offsets[1] - offsets[0]
      header[name.replacingOccurrences(of: "encoder.layer.1.", with: "encoder.layer.2.")] = entry
    }
    let newHeader = try JSONSerialization.data(withJSONObject: header)
    var data = Data()
    withUnsafeBytes(of: UInt64(newHeader.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(newHeader)
    try data.write(to: url)
    let config = file("checkpoints/tiny-bert/config.json")
    let text = try String(contentsOf: config, encoding: .utf8)
    try text.replacingOccurrences(of: "\"num_hidden_layers\": 2", with: "\"num_hidden_layers\": 3")
      .write(to: config, atomically: true, encoding: .utf8)
  }

  func testAModelWithAnExtraLayerDriftsAtTheModelAndTheRule() throws {
    try write(manifest())
    XCTAssertEqual(try surgeon(["plan", "planned.yaml", "--lock"]).status, 0)
    try addLayer()
    let drifted = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(drifted.status, 1)
    let lines = drifted.error.split(separator: "\n").map(String.init)
    XCTAssertTrue(lines[0].hasPrefix("planned.yaml:5:15: error: the model differs"), drifted.error)
    XCTAssertTrue(lines[0].contains("num_hidden_layers 2 → 3"), drifted.error)
    // Nodes no rule names are decided by the defaults: their lines are at the model.
    XCTAssertEqual(
      Array(lines.dropFirst()),
      [
        "planned.yaml:5:15: error: the plan differs from planned.lock.json for 6 nodes (if the change is intended, accept it with --update-lock):",
        "    + bert.encoder.layer.2.attention.self.key  frozen  [32, 32]",
        "    + bert.encoder.layer.2.attention.output.dense  frozen  [32, 32]",
        "    + bert.encoder.layer.2.attention.output.LayerNorm  frozen  [32]",
        "    + bert.encoder.layer.2.intermediate.dense  frozen  [64, 32]",
        "    + bert.encoder.layer.2.output.dense  frozen  [32, 64]",
        "    + bert.encoder.layer.2.output.LayerNorm  frozen  [32]",
        "planned.yaml:7:5: error: the plan differs from planned.lock.json for 2 nodes (if the change is intended, accept it with --update-lock):",
        "    + bert.encoder.layer.2.attention.self.query  lora r4  [32, 32]",
        "    + bert.encoder.layer.2.attention.self.value  lora r4  [32, 32]",
      ])
  }

  func testADamagedLockIsAnErrorNamingIt() throws {
    try write(manifest())
    try "{\"surgeon_lock\": 7}".write(
      to: file("planned.lock.json"), atomically: true, encoding: .utf8)
    let run = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(run.status, 1)
    XCTAssertEqual(
      run.error.trimmingCharacters(in: .newlines),
      "planned.yaml:1:1: error: planned.lock.json is lock format 7; this surgeon reads format 1; write it again with: surgeon plan MANIFEST --lock"
    )
    try Data().write(to: file("planned.lock.json"))
    let empty = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(empty.status, 1)
    XCTAssertTrue(
      empty.error.contains("planned.lock.json is not a surgeon lock file (not valid JSON)"),
      empty.error)
  }

  // MARK: - expect:

  func testExpectationsAreCheckedAtTheirLines() throws {
    let holding = "expect:\n  trainable: 834\n  wrapped: \">= 3\"\n  coverage: \"< 0.2\"\n"
    try write(manifest(extra: holding))
    let valid = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(valid.status, 0, valid.error)
    let broken = "expect:\n  trainable: 835\n  total: \"<= 1000\"\n  coverage: \">= 0.9\"\n"
    try write(manifest(extra: broken))
    let run = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(run.status, 1)
    let lines = run.error.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.count, 3, run.error)
    XCTAssertEqual(
      lines[0],
      "planned.yaml:15:14: error: expect.trainable == 835 does not hold: the plan has 834; if the plan is right, write trainable: 834"
    )
    XCTAssertTrue(
      lines[1].hasPrefix(
        "planned.yaml:16:10: error: expect.total <= 1000 does not hold: the plan has "), lines[1])
    XCTAssertEqual(
      lines[2],
      "planned.yaml:17:13: error: expect.coverage >= 0.9 does not hold: the plan has 0.1765; if the plan is right, write coverage: \"0.1765\""
    )
    let apply = try surgeon(["apply", "planned.yaml"])
    XCTAssertEqual(apply.status, 1)
    XCTAssertTrue(apply.error.contains("planned.yaml:15:14: error: expect.trainable"), apply.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/planned").path))
  }

  // MARK: - Validation holes

  func testBlocksTheModelDoesNotHaveAreAnError() throws {
    try write(
      manifest().replacingOccurrences(
        of: "      rank: 4\n", with: "      rank: 4\n      blocks: 0-9\n"))
    let run = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(run.status, 1)
    XCTAssertEqual(
      run.error.trimmingCharacters(in: .newlines),
      "planned.yaml:10:15: error: blocks names block 2, but this model has 2 blocks (0-1); use block indices from 0 to 1"
    )
  }

  func testStrictPrintsPromotedWarningsAsErrors() throws {
    try write(
      manifest(
        extra: """
          train:
            task: text-classification
            data: {train: {format: csv, path: missing.csv, text: text, label: label}}
            steps: 2
          """))
    let lenient = try surgeon(["validate", "planned.yaml"])
    XCTAssertEqual(lenient.status, 0, lenient.error)
    XCTAssertTrue(lenient.error.contains(": warning: train.data.train"), lenient.error)
    let strict = try surgeon(["validate", "planned.yaml", "--strict"])
    XCTAssertEqual(strict.status, 1)
    XCTAssertTrue(strict.error.contains(": error: train.data.train"), strict.error)
    XCTAssertFalse(strict.error.contains("warning"), strict.error)
    let github = try surgeon(["validate", "planned.yaml", "--strict", "--format", "github"])
    XCTAssertEqual(github.status, 1)
    XCTAssertTrue(github.error.hasPrefix("::error file=planned.yaml,line=16,col="), github.error)
    XCTAssertFalse(github.error.contains("::warning"), github.error)
  }

  func testSummaryOfADirectoryWithoutSafetensorsSaysWhereTheCountsComeFrom() throws {
    let directory = file("configonly")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
      at: file("checkpoints/tiny-bert/config.json"),
      to: directory.appendingPathComponent("config.json"))
    let plain = try surgeon(["summary", "configonly"])
    XCTAssertEqual(plain.status, 0, plain.error)
    XCTAssertEqual(
      plain.error.trimmingCharacters(in: .newlines),
      "note: configonly has no model.safetensors: these counts come from config.json and no weights were read (names assume no 'bert.' prefix)"
    )
    try Data([0x80]).write(to: directory.appendingPathComponent("pytorch_model.bin"))
    let pickle = try surgeon(["summary", "configonly", "--json"])
    XCTAssertEqual(pickle.status, 0, pickle.error)
    XCTAssertNoThrow(try json(pickle.output))
    XCTAssertEqual(pickle.error.split(separator: "\n").count, 1, pickle.error)
    XCTAssertTrue(
      pickle.error.hasPrefix(
        "note: configonly has no model.safetensors, only pytorch_model.bin (never unpickled): these counts come from config.json and no weights were read; convert once with: python3 -c"
      ), pickle.error)
    XCTAssertTrue(pickle.error.contains("save_file("), pickle.error)
  }

  func testASecondApplyOnTheSameOutputIsRefusedNamingTheFirstsPid() throws {
    try write(manifest(output: "checkpoints/held"))
    // This process plays the first run: it holds the lock a run takes, with its pid inside.
    let lockPath = file("checkpoints/.held.lock").path
    let descriptor = open(lockPath, O_RDWR | O_CREAT, 0o644)
    XCTAssertGreaterThanOrEqual(descriptor, 0)
    XCTAssertEqual(flock(descriptor, LOCK_EX | LOCK_NB), 0)
    let pid = Array("\(getpid())\n".utf8)
    XCTAssertEqual(
      pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress!, $0.count, 0) }, pid.count)
    let refused = try surgeon(["apply", "planned.yaml"])
    XCTAssertEqual(refused.status, 1)
    XCTAssertEqual(
      refused.error.split(separator: "\n").last.map(String.init),
      "\(file("checkpoints/held").standardizedFileURL.path): error: another surgeon apply (pid \(getpid())) is writing this output directory; wait for it to finish, or choose another output.dir"
    )
    XCTAssertFalse(FileManager.default.fileExists(atPath: file("checkpoints/held").path))
    close(descriptor)
    let applied = try surgeon(["apply", "planned.yaml"])
    XCTAssertEqual(applied.status, 0, applied.error)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: file("checkpoints/held/model.safetensors").path))
    // The run removes its lock file as it ends.
    XCTAssertFalse(FileManager.default.fileExists(atPath: lockPath))
  }

  func testAnAbsoluteOutputDirectoryIsWritten() throws {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent(
      "surgeon-absolute-\(UUID().uuidString)")
    addTeardownBlock { try? FileManager.default.removeItem(at: scratch) }
    try write(manifest(output: scratch.appendingPathComponent("run").path))
    let run = try surgeon(["apply", "planned.yaml"])
    XCTAssertEqual(run.status, 0, run.error)
    XCTAssertTrue(
      FileManager.default.fileExists(
        atPath: scratch.appendingPathComponent("run/model.safetensors").path))
  }
}

import Compare
import Manifest
import XCTest

/// Sweep files, the grid, derived manifests, learning-rate selection and aggregation.
final class CompareTests: XCTestCase {
  private let sweepText = """
    sweep: 1
    name: tiny
    base: manifests/base.yaml
    seeds: [0, 1, 2]
    methods:
      - name: full
        lr: [1.0e-4, 3.0e-4]
        set:
          surgery: []
          output: {compress: false}
      - name: decay-c
        rank: [4, 8]
        lr: [1.0e-3]
        seeds: [5, 6]
        set:
          surgery:
            - lora: {layers: [query], rank: 2, decay: {start: 0.1, end: 0.5}}
            - train: [classifier]
    """

  private func sweep() throws -> Sweep {
    let (decoded, diagnostics) = SweepDecoder.decode(sweepText, file: "s.yaml")
    XCTAssertEqual(diagnostics, [])
    return try XCTUnwrap(decoded)
  }

  func testGridExpandsMethodsRanksRatesAndSeeds() throws {
    let sweep = try sweep()
    XCTAssertEqual(sweep.output, "checkpoints/tiny")
    XCTAssertEqual(
      sweep.rows.map(\.description), ["full", "decay-c r4", "decay-c r8"])
    // first_seed: every rate at the first seed of each method.
    XCTAssertEqual(
      sweep.selectionCells.map(\.id),
      ["full_lr1e-4_s0", "full_lr3e-4_s0", "decay-c_r4_lr1e-3_s5", "decay-c_r8_lr1e-3_s5"])
    XCTAssertEqual(sweep.allCells.count, 2 * 3 + 2 * 1 * 2)
    let rest = sweep.finalCells(chosen: [
      RowKey(method: "full", rank: nil): "3.0e-4", RowKey(method: "decay-c", rank: 4): "1.0e-3",
    ])
    XCTAssertEqual(
      rest.map(\.id), ["full_lr3e-4_s1", "full_lr3e-4_s2", "decay-c_r4_lr1e-3_s6"],
      "the chosen rate at the seeds not yet run; rows without a choice wait")
  }

  func testDerivedManifestSetsTheCellsValuesAndReadsBack() throws {
    let sweep = try sweep()
    let base = """
      surgeon: 1
      name: base   # a comment that the derived file drops
      model: {family: bert, preset: bert-tiny, weights: random, seed: 3, head: {classes: 2}}
      surgery:
        - lora: {layers: [value], rank: 16}
      train:
        task: text-classification
        data:
          train: {format: csv, path: "data/x: y.csv", text: text, label: label}
          split: {validation: 0.1, test: 0.2, seed: 7}
        steps: 10
        optimizer: {lr: 1.0e-2, weight_decay: 0.01}
      output: {dir: checkpoints/base, compress: true}
      """
    let root = try XCTUnwrap(YAMLParser.parse(base, file: "b.yaml").root)
    let cell = Cell(method: "decay-c", rank: 8, learningRate: "1.0e-3", seed: 6)
    let text = YAMLEmitter.emit(
      sweep.derive(cell, base: root, outputDirectory: "checkpoints/tiny/cells/\(cell.id)"))
    let (decoded, diagnostics) = ManifestDecoder.decode(text: text, file: "d.yaml")
    XCTAssertEqual(diagnostics.filter { $0.severity == .error }, [], text)
    let manifest = try XCTUnwrap(decoded, text)
    XCTAssertEqual(manifest.name.value, "decay-c_r8_lr1e-3_s6")
    XCTAssertEqual(manifest.train?.optimizer.learningRate, 1e-3)
    XCTAssertEqual(manifest.train?.optimizer.weightDecay, 0.01, "untouched keys stay")
    XCTAssertEqual(manifest.train?.seed, 6)
    XCTAssertEqual(manifest.model.seed, 6)
    XCTAssertEqual(manifest.train?.data.split.seed, 7, "the data split stays the base's")
    XCTAssertEqual(manifest.output.directory.value, "checkpoints/tiny/cells/decay-c_r8_lr1e-3_s6")
    XCTAssertTrue(manifest.output.compress)
    guard case .table(_, let path, _, _) = manifest.train?.data.train.value else {
      return XCTFail("not a table")
    }
    XCTAssertEqual(path, "data/x: y.csv", "a quoted scalar stays quoted")
    // The method's surgery replaces the base's (lists are replaced, not merged); rank set.
    XCTAssertEqual(manifest.surgery.count, 2)
    guard case .lora(let rule) = manifest.surgery[0] else { return XCTFail("not lora") }
    XCTAssertEqual(rule.layers.map(\.value), ["query"])
    XCTAssertEqual(rule.rank.value, 8)
    XCTAssertEqual(rule.decay?.end, 0.5)
  }

  func testLearningRateIsChosenOnValidationNeverOnTest() throws {
    let sweep = try sweep()
    let full = RowKey(method: "full", rank: nil)
    func result(_ rate: String, seed: Int, validation: Double, test: Double) -> CellResult {
      CellResult(
        cell: Cell(method: "full", rank: nil, learningRate: rate, seed: seed),
        validationAccuracy: validation, testAccuracy: test)
    }
    // 3e-4 wins on validation, 1e-4 would win on test: validation decides.
    let results = [
      result("1.0e-4", seed: 0, validation: 0.80, test: 0.95),
      result("3.0e-4", seed: 0, validation: 0.85, test: 0.70),
    ]
    XCTAssertEqual(Selection.chooseLearningRates(sweep, results: results)[full], "3.0e-4")
    // Later seeds of a rate do not take part in first_seed selection.
    let more = results + [result("1.0e-4", seed: 1, validation: 0.99, test: 0.99)]
    XCTAssertEqual(Selection.chooseLearningRates(sweep, results: more)[full], "3.0e-4")
  }

  func testAggregationIsMeanAndSampleStdOverSeeds() throws {
    let sweep = try sweep()
    let results = [0.80, 0.82, 0.84].enumerated().map { seed, test in
      CellResult(
        cell: Cell(method: "full", rank: nil, learningRate: "3.0e-4", seed: seed),
        validationAccuracy: 0.9, testAccuracy: test, trainSeconds: Double(10 * (seed + 1)),
        deployedParameters: 100)
    }
    let chosen = [RowKey(method: "full", rank: nil): "3.0e-4"]
    let rows = Aggregation.rows(sweep, results: results, chosen: chosen)
    XCTAssertEqual(rows.count, 1)
    XCTAssertEqual(rows[0].test.mean, 0.82, accuracy: 1e-12)
    XCTAssertEqual(rows[0].test.std, 0.02, accuracy: 1e-12, "n − 1 in the denominator")
    XCTAssertEqual(rows[0].test.count, 3)
    XCTAssertEqual(rows[0].trainSeconds, 20, accuracy: 1e-12)
    XCTAssertEqual(MeanStd([0.5]).std, 0)
    let table = Aggregation.markdown(rows, reference: "full")
    XCTAssertTrue(table.contains("0.8200 ± 0.0200"), table)
    XCTAssertTrue(table.contains("| reference | — |"), table)
  }

  /// Which builds finished a row's cells: per row in comparison.json, counted in one line of
  /// comparison.md, and "unrecorded" for cells from before results.json named its build.
  func testRowsNameTheBuildsThatFinishedTheirCells() throws {
    let sweep = try sweep()
    let builds: [String?] = ["0badf00d", nil, "0badf00d"]
    let results = builds.enumerated().map { seed, build in
      CellResult(
        cell: Cell(method: "full", rank: nil, learningRate: "3.0e-4", seed: seed),
        validationAccuracy: 0.9, testAccuracy: 0.8, build: build)
    }
    let rows = Aggregation.rows(
      sweep, results: results, chosen: [RowKey(method: "full", rank: nil): "3.0e-4"])
    XCTAssertEqual(rows.first?.builds, ["0badf00d", "unrecorded"])
    let json = String(decoding: try JSONEncoder().encode(rows[0]), as: UTF8.self)
    XCTAssertTrue(json.contains(#""builds":["0badf00d","unrecorded"]"#), json)
    XCTAssertEqual(
      Aggregation.buildsNote(
        results + [
          CellResult(
            cell: results[0].cell, validationAccuracy: 0, testAccuracy: 0, build: "12345678")
        ]),
      "Builds (CRC-32 of the surgeon executable, results.json `build`; per row in comparison.json `builds`): 0badf00d (2 cells), 12345678 (1 cell), unrecorded (1 cell).\n"
    )
    // No cell names a build: no line.
    XCTAssertEqual(Aggregation.buildsNote([results[1]]), "")
  }

  func testSweepErrorsNameTheLine() {
    let bad = """
      sweep: 1
      name: tiny
      base: m.yaml
      methods:
        - name: full
          lr: [2.0]
          sed: [1]
        - name: kd
          teacher: nobody
          lr: [1.0e-3]
      """
    let (sweep, diagnostics) = SweepDecoder.decode(bad, file: "s.yaml")
    XCTAssertNil(sweep)
    let lines = diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" }
    XCTAssertTrue(lines.contains("6:10: a learning rate must be a number in (0, 1)"), "\(lines)")
    XCTAssertTrue(
      lines.contains { $0.hasPrefix("7:5: unknown key 'sed' in a method (did you mean 'set'?)") },
      "\(lines)")
    XCTAssertTrue(
      lines.contains("9:14: teacher must name a method listed before this one"), "\(lines)")
  }

  func testRecordsMustLieOutsideTheOutputDirectory() {
    let text = """
      sweep: 1
      name: tiny
      base: m.yaml
      output: checkpoints/tiny/
      records: checkpoints/tiny/records
      methods:
        - name: full
          lr: [1.0e-3]
      """
    let (sweep, diagnostics) = SweepDecoder.decode(text, file: "s.yaml")
    XCTAssertNil(sweep)
    XCTAssertEqual(
      diagnostics.map { "\($0.location.line):\($0.location.column): \($0.message)" },
      [
        "5:10: records 'checkpoints/tiny/records' must not be inside the output directory 'checkpoints/tiny/'"
      ])
    let (kept, _) = SweepDecoder.decode(
      text.replacingOccurrences(of: "records: checkpoints/tiny/records", with: "records: docs/r"),
      file: "s.yaml")
    XCTAssertEqual(kept?.records, "docs/r")
  }

  func testStartFromTeacherPointsTheCellsCheckpointAtTheTeachersRun() throws {
    let text = """
      sweep: 1
      name: tiny
      base: m.yaml
      methods:
        - name: full
          lr: [1.0e-3]
        - name: kd
          teacher: full
          lr: [1.0e-3]
        - name: compress-teacher
          teacher: full
          start_from: teacher
          lr: [1.0e-3]
      """
    let (parsed, diagnostics) = SweepDecoder.decode(text, file: "s.yaml")
    let sweep = try XCTUnwrap(parsed, "\(diagnostics)")
    let base = try XCTUnwrap(
      YAMLParser.parse("model: {family: bert, checkpoint: pretrained}\n", file: "m.yaml").root)
    let presetBase = try XCTUnwrap(
      YAMLParser.parse(
        "model: {family: bert, preset: bert-tiny, weights: random, seed: 3}\n", file: "m.yaml"
      ).root)
    func derived(_ method: String) -> YAMLNode {
      sweep.derive(
        Cell(method: method, rank: nil, learningRate: "1.0e-3", seed: 1), base: base,
        outputDirectory: "out/cells/x", teacherDirectory: "out/cells/full_lr1e-3_s0")
    }
    XCTAssertEqual(derived("kd")["model"]?["checkpoint"]?.scalarText, "pretrained")
    XCTAssertEqual(
      derived("compress-teacher")["model"]?["checkpoint"]?.scalarText, "out/cells/full_lr1e-3_s0")
    XCTAssertEqual(
      derived("compress-teacher")["train"]?["distill"]?["teacher"]?.scalarText,
      "out/cells/full_lr1e-3_s0")
    // A base that builds its model from a preset starts from the teacher's directory alone.
    let fromPreset = sweep.derive(
      Cell(method: "compress-teacher", rank: nil, learningRate: "1.0e-3", seed: 1),
      base: presetBase, outputDirectory: "out/cells/x",
      teacherDirectory: "out/cells/full_lr1e-3_s0")
    XCTAssertEqual(fromPreset["model"]?["checkpoint"]?.scalarText, "out/cells/full_lr1e-3_s0")
    XCTAssertNil(fromPreset["model"]?["preset"])
    XCTAssertNil(fromPreset["model"]?["weights"])
    XCTAssertEqual(fromPreset["model"]?["family"]?.scalarText, "bert")

    let bad = """
      sweep: 1
      name: tiny
      base: m.yaml
      methods:
        - name: a
          start_from: teacher
          lr: [1.0e-3]
        - name: b
          teacher: a
          start_from: scratch
          lr: [1.0e-3]
      """
    let lines = SweepDecoder.decode(bad, file: "s.yaml").diagnostics.map {
      "\($0.location.line):\($0.location.column): \($0.message)"
    }
    XCTAssertTrue(lines.contains("6:5: start_from: teacher needs a teacher"), "\(lines)")
    XCTAssertTrue(lines.contains("10:17: start_from can only be teacher"), "\(lines)")
  }

  func testEmitterQuotesWhatPlainWouldChange() throws {
    let node = YAMLNode(
      .mapping([
        (
          .plain("a", at: .init(file: "", line: 1, column: 1)),
          YAMLNode(.scalar("x: y", style: .plain), location: .init(file: "", line: 1, column: 1))
        ),
        (
          .plain("b", at: .init(file: "", line: 1, column: 1)),
          YAMLNode(
            .scalar("16", style: .doubleQuoted), location: .init(file: "", line: 1, column: 1))
        ),
        (
          .plain("c", at: .init(file: "", line: 1, column: 1)),
          YAMLNode(.sequence([]), location: .init(file: "", line: 1, column: 1))
        ),
      ]), location: .init(file: "", line: 1, column: 1))
    let text = YAMLEmitter.emit(node)
    XCTAssertEqual(text, "a: \"x: y\"\nb: \"16\"\nc: []\n")
    let back = try XCTUnwrap(YAMLParser.parse(text, file: "t").root)
    XCTAssertEqual(back["a"]?.scalarText, "x: y")
    guard case .scalar(_, let style)? = back["b"]?.kind else { return XCTFail("not a scalar") }
    XCTAssertEqual(style, .doubleQuoted, "a quoted number stays a string")
  }
}

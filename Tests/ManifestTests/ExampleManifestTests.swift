import Foundation
import Manifest
import XCTest

/// docs/manifest.md's example, copied verbatim into Fixtures/good, decodes to exactly what it says.
final class ExampleManifestTests: XCTestCase {
  let path = "manifests/minilm-rotten-tomatoes.yaml"

  func example() throws -> Manifest {
    let text = try Fixtures.text("good/minilm-rotten-tomatoes.yaml")
    let result = ManifestDecoder.decode(text: text, file: path)
    XCTAssertEqual(result.diagnostics.map(\.text), [])
    return try XCTUnwrap(result.manifest)
  }

  func at(_ line: Int, _ column: Int) -> SourceLocation {
    SourceLocation(file: path, line: line, column: column)
  }

  func testTopLevel() throws {
    let manifest = try example()
    XCTAssertEqual(manifest.file, path)
    XCTAssertEqual(manifest.text, try Fixtures.text("good/minilm-rotten-tomatoes.yaml"))
    XCTAssertEqual(manifest.name, Located("minilm-rotten-tomatoes", at: at(3, 7)))
    XCTAssertEqual(manifest.surgery.count, 3)
  }

  func testModel() throws {
    let model = try example().model
    XCTAssertEqual(model.family, Located(.bert, at: at(6, 11)))
    XCTAssertEqual(
      model.source, Located(.checkpoint("checkpoints/all-minilm-l6-v2"), at: at(7, 15)))
    XCTAssertEqual(model.configOverrides, [])
    XCTAssertEqual(model.headClasses, Located(2, at: at(16, 19)))
    XCTAssertEqual(model.seed, 0)
  }

  func testLoRARule() throws {
    let rule = try firstLoRA(try example())
    XCTAssertEqual(rule.location, at(21, 5))
    XCTAssertEqual(rule.layers.map(\.value), ["query", "key", "value", "dense"])
    XCTAssertEqual(rule.layers.map(\.location), [at(22, 16), at(22, 23), at(22, 28), at(22, 35)])
    XCTAssertEqual(rule.exclude, [Located("pooler", at: at(23, 17))])
    XCTAssertEqual(rule.blocks, Located([0, 1, 2, 3, 4, 5], at: at(24, 15)))
    XCTAssertEqual(rule.rank, Located(16, at: at(25, 13)))
    XCTAssertEqual(rule.alpha, Located(16.0, at: at(26, 14)))
    XCTAssertEqual(rule.initialization, Located(.lora, at: at(27, 13)))
    XCTAssertEqual(rule.biasC, Located(.zeros, at: at(28, 15)))
    XCTAssertEqual(rule.convForm, Located(.lowrank, at: at(30, 18)))
    XCTAssertEqual(
      rule.decay, DecaySchedule(shape: .linear, start: 0.05, end: 0.85, location: at(32, 7)))
    XCTAssertEqual(
      rule.noise,
      NoiseSettings(statistics: .global, clearBelow: 0.3, scale: 1.0, location: at(36, 7)))
  }

  func testFreezeAndTrainRules() throws {
    let surgery = try example().surgery
    guard case .freeze(let frozen, let freezeAt) = surgery[1] else {
      return XCTFail("\(surgery[1])")
    }
    XCTAssertEqual(frozen, [Located("embeddings", at: at(40, 14))])
    XCTAssertEqual(freezeAt, at(40, 5))
    guard case .train(let trained, let trainAt) = surgery[2] else {
      return XCTFail("\(surgery[2])")
    }
    XCTAssertEqual(trained, [Located("classifier", at: at(41, 13))])
    XCTAssertEqual(trainAt, at(41, 5))
  }

  func testTrain() throws {
    let train = try XCTUnwrap(try example().train)
    XCTAssertEqual(train.location, at(43, 1))
    XCTAssertEqual(train.task, Located(.textClassification, at: at(44, 9)))
    XCTAssertEqual(train.steps, Located(400, at: at(53, 10)))
    XCTAssertEqual(train.batchSize, Located(32, at: at(54, 15)))
    XCTAssertEqual(
      train.optimizer,
      OptimizerSettings(name: "adamw", learningRate: 1e-3, weightDecay: 0, warmup: 0))
    XCTAssertEqual(train.evalEvery, Located(50, at: at(56, 15)))
    XCTAssertEqual(train.seed, 0)
  }

  func testData() throws {
    let data = try XCTUnwrap(try example().train?.data)
    XCTAssertEqual(
      data.train,
      Located(
        .table(
          format: .csv, path: "data/rotten_tomatoes.csv", textColumn: "text",
          labelColumn: "category"), at: at(46, 12)))
    XCTAssertNil(data.test)
    XCTAssertEqual(
      data.labels, [Located("rotten", at: at(50, 14)), Located("fresh", at: at(50, 22))])
    XCTAssertEqual(
      data.split, SplitSettings(validation: 0.1, test: 0.2, groupBy: "movie_name", seed: 0))
    XCTAssertEqual(data.maxLength, Located(64, at: at(52, 17)))
  }

  func testOutput() throws {
    let output = try example().output
    XCTAssertEqual(output.directory, Located("checkpoints/minilm-rotten-tomatoes", at: at(60, 8)))
    XCTAssertTrue(output.compress)
    XCTAssertEqual(output.checkpointEvery, Located(100, at: at(62, 21)))
  }

  func testDecodingAFileNamesItInEveryLocation() throws {
    let url = try Fixtures.url("good/minilm-rotten-tomatoes.yaml")
    let result = ManifestDecoder.decode(contentsOf: url.path)
    XCTAssertEqual(result.diagnostics, [])
    XCTAssertEqual(result.manifest?.file, url.path)
    XCTAssertEqual(result.manifest?.name.location.file, url.path)
    XCTAssertEqual(result.manifest?.text, try Fixtures.text("good/minilm-rotten-tomatoes.yaml"))
  }

  func testAMissingFileIsOneDiagnosticNamingIt() {
    let result = ManifestDecoder.decode(contentsOf: "/nonexistent/m.yaml")
    XCTAssertNil(result.manifest)
    XCTAssertEqual(
      result.diagnostics.map(\.text),
      [
        "/nonexistent/m.yaml:1:1: error: cannot read manifest /nonexistent/m.yaml: no such file; check the path"
      ])
  }

  func testADirectoryIsNotAManifest() throws {
    let directory = try Fixtures.url("good").path
    XCTAssertEqual(
      ManifestDecoder.decode(contentsOf: directory).diagnostics.map(\.message),
      ["cannot read manifest \(directory): it is a directory"])
  }

  func testAFileThatIsNotUTF8IsOneDiagnostic() throws {
    let path = NSTemporaryDirectory() + "surgeon-latin1-\(getpid()).yaml"
    defer { try? FileManager.default.removeItem(atPath: path) }
    XCTAssertTrue(
      FileManager.default.createFile(
        atPath: path, contents: Data("surgeon: 1\nname: caf".utf8 + [0xE9, 0x0A])))
    XCTAssertEqual(
      ManifestDecoder.decode(contentsOf: path).diagnostics.map(\.text),
      [
        "\(path):2:10: error: manifest is not valid UTF-8: incomplete UTF-8 octet sequence; "
          + "save the file as UTF-8 text"
      ])
  }
}

/// What a manifest that says almost nothing decodes to.
final class DefaultsTests: XCTestCase {
  func testTheSmallestManifest() throws {
    let manifest = try valid(
      "surgeon: 1\nname: tiny\nmodel: {family: vgg, preset: vgg11, weights: random}\n")
    XCTAssertEqual(manifest.model.family.value, .vgg)
    XCTAssertEqual(manifest.model.source.value, .preset("vgg11", randomWeights: true))
    XCTAssertEqual(manifest.model.source.location.lineColumn, "3:30")
    XCTAssertNil(manifest.model.headClasses)
    XCTAssertEqual(manifest.model.seed, 0)
    XCTAssertEqual(manifest.surgery.count, 0)
    XCTAssertNil(manifest.train)
    XCTAssertEqual(
      manifest.output.directory, Located("checkpoints/tiny", at: manifest.name.location))
    XCTAssertFalse(manifest.output.compress)
    XCTAssertNil(manifest.output.checkpointEvery)
  }

  func testLoRADefaults() throws {
    let rule = try firstLoRA(try valid(loraManifest("layers: query\nrank: 4")))
    XCTAssertEqual(rule.layers.map(\.value), ["query"])
    XCTAssertEqual(rule.layers.first?.location.lineColumn, "9:15")
    XCTAssertEqual(rule.exclude, [])
    XCTAssertNil(rule.blocks)
    XCTAssertNil(rule.alpha)
    XCTAssertEqual(rule.initialization.value, .lora)
    XCTAssertEqual(rule.biasC.value, .none)
    XCTAssertEqual(rule.convForm.value, .lowrank)
    XCTAssertNil(rule.decay)
    XCTAssertNil(rule.noise)
    // Defaults point at the rule's key.
    XCTAssertEqual(rule.initialization.location, rule.location)
    XCTAssertEqual(rule.location.lineColumn, "8:5")
  }

  func testDecayAndNoiseDefaults() throws {
    let rule = try firstLoRA(
      try valid(loraManifest("layers: query\nrank: 4\ndecay: {}\nnoise: {}")))
    XCTAssertEqual(
      rule.decay,
      DecaySchedule(
        shape: .linear, start: 0.05, end: 0.85, location: rule.decay?.location ?? rule.location))
    XCTAssertEqual(rule.decay?.location.lineColumn, "11:7")
    XCTAssertEqual(rule.noise?.statistics, .global)
    XCTAssertEqual(rule.noise?.clearBelow, 0.3)
    XCTAssertEqual(rule.noise?.scale, 1.0)
    XCTAssertEqual(rule.biasC.value, .zeros, "bias_c defaults to zeros when decay is set")
  }

  func testTrainDefaults() throws {
    let train = try XCTUnwrap(try valid(trainManifest()).train)
    XCTAssertEqual(train.batchSize.value, 32)
    XCTAssertEqual(train.evalEvery.value, 10)
    XCTAssertEqual(train.evalEvery.location, train.steps.location)
    XCTAssertEqual(
      train.optimizer,
      OptimizerSettings(name: "adamw", learningRate: 1e-3, weightDecay: 0, warmup: 0))
    XCTAssertEqual(train.seed, 0)
    XCTAssertEqual(
      train.data.split, SplitSettings(validation: 0.1, test: 0.2, groupBy: nil, seed: 0))
    XCTAssertEqual(train.data.maxLength.value, 128)
    XCTAssertNil(train.data.labels)
    XCTAssertNil(train.data.test)
  }

  func testEvalEveryDefaultIsNeverZero() throws {
    let manifest = try valid(
      trainManifest().replacingOccurrences(of: "steps: 100", with: "steps: 7"))
    XCTAssertEqual(manifest.train?.evalEvery.value, 1)
  }

  func testSplitTestDefaultsToZeroWithATestFile() throws {
    let data = "    test: {format: tsv, path: data/test.tsv, text: sentence, label: y}\n"
    let manifest = try valid(trainManifest(data: data))
    XCTAssertEqual(manifest.train?.data.split.test, 0)
    XCTAssertEqual(
      manifest.train?.data.test?.value,
      .table(format: .tsv, path: "data/test.tsv", textColumn: "sentence", labelColumn: "y"))
  }
}

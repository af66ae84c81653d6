import Manifest
import XCTest

/// The top level and `model`: accepted values and rejections with their positions.
final class ModelKeyTests: XCTestCase {
  func model(_ body: String, file: StaticString = #filePath, line: UInt = #line) throws
    -> ModelSection
  {
    try valid("surgeon: 1\nname: t\nmodel:\n" + body, file: file, line: line).model
  }

  /// Problems of a manifest whose model section is `body` (keys on line 4 on, column 3).
  func modelProblems(_ body: String) -> [String] {
    problems("surgeon: 1\nname: t\nmodel:\n" + body)
  }

  func testFamilies() throws {
    XCTAssertEqual(try model("  family: vgg\n  checkpoint: x\n").family.value, .vgg)
    XCTAssertEqual(
      modelProblems("  family: brt\n  checkpoint: x\n"),
      ["4:11: error: model.family must be bert or vgg, not 'brt' (did you mean 'bert'?)"])
    XCTAssertEqual(
      modelProblems("  family: resnet\n  checkpoint: x\n"),
      ["4:11: error: model.family must be bert or vgg, not 'resnet'"])
  }

  func testCheckpoints() throws {
    XCTAssertEqual(
      try model("  family: bert\n  checkpoint: hf://sentence-transformers/all-MiniLM-L6-v2\n")
        .source.value, .checkpoint("hf://sentence-transformers/all-MiniLM-L6-v2"))
    XCTAssertEqual(
      try model("  family: bert\n  checkpoint: /abs/dir\n").source.value, .checkpoint("/abs/dir"))
    XCTAssertEqual(
      modelProblems("  family: bert\n  checkpoint: https://huggingface.co/x/y\n"),
      [
        "5:15: error: model.checkpoint must be a directory or hf://ORG/NAME, not "
          + "'https://huggingface.co/x/y'; download the checkpoint and give its directory"
      ])
    XCTAssertEqual(
      modelProblems("  family: bert\n  checkpoint: hf://a/../b\n"),
      [
        "5:15: error: model.checkpoint 'hf://a/../b' is not hf://ORG/NAME; for example: "
          + "hf://sentence-transformers/all-MiniLM-L6-v2"
      ])
    XCTAssertEqual(
      modelProblems("  family: bert\n  checkpoint: ''\n"),
      ["5:15: error: model.checkpoint must not be empty"])
  }

  func testEveryPresetWithItsFamily() throws {
    for (name, family) in ModelSource.presets {
      let section = try model(
        "  family: \(family.rawValue)\n  preset: \(name)\n  weights: random\n")
      XCTAssertEqual(section.source.value, .preset(name, randomWeights: true))
      XCTAssertEqual(section.source.location.lineColumn, "5:11")
    }
    XCTAssertEqual(ModelSource.presets.count, 13)
    XCTAssertEqual(
      modelProblems("  family: vgg\n  preset: vgg16bn\n  weights: random\n"),
      [
        "5:11: error: unknown preset 'vgg16bn' (did you mean 'vgg16-bn'?); use one of bert-tiny, "
          + "bert-small, bert-medium, bert-base, vgg11, vgg11-bn, vgg13, vgg13-bn, vgg16, vgg16-bn, "
          + "vgg19, vgg19-bn, vgg16-cifar"
      ])
    XCTAssertEqual(
      modelProblems("  family: vgg\n  preset: bert-base\n  weights: random\n"),
      [
        "5:11: error: preset bert-base is a bert model, but model.family is vgg; use family: "
          + "bert, or a vgg preset (vgg11, vgg11-bn, vgg13, vgg13-bn, vgg16, vgg16-bn, vgg19, "
          + "vgg19-bn, vgg16-cifar)"
      ])
  }

  func testWeights() {
    XCTAssertEqual(
      modelProblems("  family: bert\n  preset: bert-tiny\n  weights: pretrained\n"),
      [
        "6:12: error: model.weights must be random, not 'pretrained'; presets have no pretrained "
          + "weights offline; for trained weights use checkpoint"
      ])
    XCTAssertEqual(
      modelProblems("  family: bert\n  preset: bert-tiny\n  weights: 'random'\n"), [],
      "a quoted 'random' is the same string")
  }

  func testConfigOverridesKeepYAMLTypes() throws {
    let section = try model(
      """
        family: vgg
        preset: vgg11
        weights: random
        config:
          in_channels: 1
          dropout: 0.25
          batch_norm: true
          avgpool: null
          cfg: [16, M, 32, "M"]
          hidden_act: gelu
          image_size: '28'

      """)
    XCTAssertEqual(
      section.configOverrides.map(\.key),
      ["in_channels", "dropout", "batch_norm", "avgpool", "cfg", "hidden_act", "image_size"])
    XCTAssertEqual(
      section.configOverrides.map(\.value),
      [
        .int(1), .double(0.25), .bool(true), .null,
        .list([.int(16), .string("M"), .int(32), .string("M")]), .string("gelu"),
        .string("28"),
      ])
    XCTAssertEqual(section.configOverrides.first?.location.lineColumn, "8:5")
  }

  func testConfigRejections() {
    let head = "  family: bert\n  preset: bert-tiny\n  weights: random\n"
    XCTAssertEqual(
      modelProblems(head + "  config: [hidden_size]\n"),
      [
        "7:11: error: model.config must be a mapping of configuration fields, not a list; for "
          + "example: config: {hidden_size: 128}"
      ])
    XCTAssertEqual(
      modelProblems(head + "  config: {a: {b: 1}, c: 1, c: 2, d: [1, {e: 2}]}\n"),
      [
        "7:15: error: model.config.a must be a number, string, boolean, null or list, not a mapping",
        "7:29: error: duplicate key 'c' (first at 7:23)",
        "7:42: error: model.config.d must be a number, string, boolean, null or list, not a mapping",
      ])
  }

  func testHeadAndSeed() throws {
    let section = try model(
      "  family: bert\n  checkpoint: x\n  head:\n    classes: 100000\n  seed: 42\n")
    XCTAssertEqual(section.headClasses?.value, 100_000)
    XCTAssertEqual(section.headClasses?.location.lineColumn, "7:14")
    XCTAssertEqual(section.seed, 42)
    XCTAssertEqual(
      modelProblems("  family: bert\n  checkpoint: x\n  head: 2\n  seed: -1\n"),
      [
        "6:9: error: model.head must be a mapping of keys, not '2'",
        "7:9: error: model.seed must be at least 0, not -1; use 0 or more",
      ])
    XCTAssertEqual(
      modelProblems("  family: bert\n  checkpoint: x\n  head: {num_labels: 3}\n"),
      [
        "6:3: error: missing required key 'classes' in model.head; add 'classes: 2'",
        "6:10: error: unknown key 'num_labels' in model.head (did you mean 'classes'?)",
      ])
  }

  func testModelMustBeAMapping() {
    XCTAssertEqual(
      modelProblems("  - bert\n"), ["4:3: error: model must be a mapping of keys, not a list"])
  }
}

final class TopLevelTests: XCTestCase {
  let rest = "model: {family: bert, preset: bert-tiny, weights: random}\n"

  func testNames() throws {
    let longest = String(repeating: "a", count: 100)
    XCTAssertEqual(try valid("surgeon: 1\nname: \(longest)\n" + rest).name.value, longest)
    XCTAssertEqual(try valid("surgeon: 1\nname: 'V1.2_b-3'\n" + rest).name.value, "V1.2_b-3")
    XCTAssertEqual(try valid("surgeon: 1\nname: 2024\n" + rest).name.value, "2024")
    for bad in [longest + "a", "'a/b'", "'é'", "''"] {
      XCTAssertEqual(
        problems("surgeon: 1\nname: \(bad)\n" + rest).first?.hasPrefix(
          "2:7: error: name must be 1 to 100 letters, digits, '.', '_' or '-', not "), true, bad)
    }
    XCTAssertEqual(
      problems("surgeon: 1\nname: [a]\n" + rest), ["2:7: error: name must be a string, not a list"])
  }

  func testFormatVersion() {
    XCTAssertEqual(
      problems("surgeon: 1.0\nname: t\n" + rest),
      ["1:10: error: surgeon must be an integer, not '1.0'"])
    XCTAssertEqual(
      problems("surgeon: 0\nname: t\n" + rest),
      ["1:10: error: unknown manifest format 0; this surgeon reads format 1"])
  }

  func testUnknownTopLevelKeys() {
    XCTAssertEqual(
      problems("surgeon: 1\nname: t\n" + rest + "extras: 1\nversion: 1\n"),
      [
        "4:1: error: unknown top-level key 'extras'; the top level takes surgeon, name, model, "
          + "surgery, train, output, expect",
        "5:1: error: unknown top-level key 'version' (did you mean 'surgeon'?)",
      ])
  }

  func testTheRootMustBeAMapping() {
    XCTAssertEqual(
      problems("just text\n"),
      [
        "1:1: error: a manifest is a mapping of keys, not 'just text'; start the file with 'surgeon: 1'"
      ])
    XCTAssertEqual(problems("---\n"), ["2:1: error: manifest is empty; start it with 'surgeon: 1'"])
    XCTAssertEqual(problems("~\n"), ["1:1: error: manifest is empty; start it with 'surgeon: 1'"])
    for blank in ["", "\n\n", "   \t\n", "# only a comment\n"] {
      XCTAssertEqual(
        problems(blank), ["1:1: error: manifest is empty; start it with 'surgeon: 1'"], blank)
    }
  }

  func testKeysMustBeNames() {
    XCTAssertEqual(
      problems("surgeon: 1\nname: t\n" + rest + "? [a]\n: 1\n"),
      ["4:3: error: a key must be a name, not a list"])
  }

  func testDiagnosticsComeInFileOrderWhateverOrderTheyAreFoundIn() {
    let text = """
      train:
        task: text-classification
        steps: 0
        data: {train: {format: csv, path: a, text: t, label: l}}
      output: {dir: ../abs}
      name: bad name
      surgeon: 1
      model: {family: vgg, checkpoint: x}

      """
    XCTAssertEqual(
      problems(text),
      [
        "2:9: error: train.task text-classification needs family bert, but model.family is vgg; "
          + "use task: image-classification for vgg",
        "3:10: error: train.steps must be at least 1, not 0; use 1 or more",
        "5:15: error: output.dir must stay inside the working directory; remove the '..' "
          + "(for example: checkpoints/NAME)",
        "6:7: error: name must be 1 to 100 letters, digits, '.', '_' or '-', not 'bad name'; for "
          + "example: name: minilm-rotten-tomatoes",
      ])
  }

  func testWarningsAloneLeaveAValidManifest() throws {
    let result = decode(trainManifest("  eval_every: 200\n"))
    XCTAssertNotNil(result.manifest)
    XCTAssertEqual(result.diagnostics.map(\.severity), [.warning])
  }
}

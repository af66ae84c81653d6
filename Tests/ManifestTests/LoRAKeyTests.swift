import Manifest
import XCTest

/// Every key of a lora rule (and of freeze and train rules): accepted forms and rejections.
/// Rule bodies start on line 9, keys in column 7.
final class LoRAKeyTests: XCTestCase {
  func rule(_ body: String, file: StaticString = #filePath, line: UInt = #line) throws -> LoRARule {
    try firstLoRA(try valid(loraManifest(body), file: file, line: line), file: file, line: line)
  }

  func testLayersAcceptOneSelectorOrAList() throws {
    XCTAssertEqual(try rule("layers: query\nrank: 4").layers.map(\.value), ["query"])
    let listed = try rule("layers: [encoder.layer.*.intermediate.dense, /.*value/]\nrank: 4")
    XCTAssertEqual(listed.layers.map(\.value), ["encoder.layer.*.intermediate.dense", "/.*value/"])
    XCTAssertEqual(listed.layers.map(\.location.lineColumn), ["9:16", "9:52"])
    let block = try rule("layers:\n  - query\n  - value\nrank: 4")
    XCTAssertEqual(block.layers.map(\.location.lineColumn), ["10:11", "11:11"])
  }

  func testLayersRejections() {
    XCTAssertEqual(
      problems(loraManifest("layers: []\nrank: 4")),
      ["9:15: error: layers needs at least one selector"])
    XCTAssertEqual(
      problems(loraManifest("layers: [query, {a: 1}, '']\nrank: 4")),
      [
        "9:23: error: a selector must be a string, not a mapping",
        "9:31: error: a selector must not be empty",
      ])
    XCTAssertEqual(
      problems(loraManifest("layers: {query: 1}\nrank: 4")),
      [
        "9:15: error: layers must be a selector or a list of selectors, not a mapping; write "
          + "layers: [query, value]"
      ])
    XCTAssertEqual(
      problems(loraManifest("layers:\nrank: 4")),
      ["9:14: error: layers must be a string, not an empty value"])
  }

  func testExclude() throws {
    XCTAssertEqual(
      try rule("layers: dense\nexclude: pooler\nrank: 4").exclude,
      [Located("pooler", at: SourceLocation(file: "m.yaml", line: 10, column: 16))])
    XCTAssertEqual(
      problems(loraManifest("layers: dense\nexclude: [1.5, [x]]\nrank: 4")),
      ["10:22: error: a selector must be a string, not a list"])
  }

  func testBlocksForms() throws {
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: 3").blocks?.value, [3])
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: '3'").blocks?.value, [3])
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: 0-5").blocks?.value, [0, 1, 2, 3, 4, 5])
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: 2 - 3").blocks?.value, [2, 3])
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: \"4-4\"").blocks?.value, [4])
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: [0, 2, 4]").blocks?.value, [0, 2, 4])
    XCTAssertEqual(try rule("layers: q\nrank: 4\nblocks: [5, 0-1]").blocks?.value, [5, 0, 1])
    XCTAssertEqual(
      try rule("layers: q\nrank: 4\nblocks: [0, 2]").blocks?.location.lineColumn, "11:15")
  }

  func testBlocksRejections() {
    func blocks(_ value: String) -> [String] {
      problems(loraManifest("layers: q\nrank: 4\nblocks: \(value)"))
    }
    XCTAssertEqual(blocks("5-2"), ["11:15: error: blocks range 5-2 runs backwards; write 2-5"])
    XCTAssertEqual(
      blocks("-3"), ["11:15: error: blocks cannot be negative, not -3; count blocks from 0"])
    XCTAssertEqual(
      blocks("-1-4"),
      [
        "11:15: error: blocks must be an index, a range like 0-5 or a list, not '-1-4'; count blocks from 0"
      ])
    XCTAssertEqual(
      blocks("0..5"),
      [
        "11:15: error: blocks must be an index, a range like 0-5 or a list, not '0..5'; write a range as 0-5"
      ])
    XCTAssertEqual(
      blocks("1.5"),
      ["11:15: error: blocks must be an index, a range like 0-5 or a list, not '1.5'"])
    XCTAssertEqual(
      blocks("[]"),
      ["11:15: error: blocks needs at least one index; omit blocks to wrap every block"])
    XCTAssertEqual(
      blocks("[1, 0-2]"), ["11:15: error: block 1 is listed twice in blocks; list it once"])
    XCTAssertEqual(
      blocks("0-100000"), ["11:15: error: block 100000 is out of range; blocks go up to 9999"])
    XCTAssertEqual(
      blocks("{a: 1}"),
      ["11:15: error: blocks must be an index, a range like 0-5 or a list, not a mapping"])
    XCTAssertEqual(
      blocks("[0, 7-3, -2]"),
      [
        "11:19: error: blocks range 7-3 runs backwards; write 3-7",
        "11:24: error: blocks cannot be negative, not -2; count blocks from 0",
      ])
  }

  func testRank() throws {
    XCTAssertEqual(try rule("layers: q\nrank: 1").rank.value, 1)
    XCTAssertEqual(try rule("layers: q\nrank: +512").rank.value, 512)
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: -3")),
      ["10:13: error: rank must be at least 1, not -3; use 1 or more"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 1.5")),
      ["10:13: error: rank must be an integer, not '1.5'"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 0x10")),
      ["10:13: error: rank must be an integer, not '0x10'"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 99999999999999999999")),
      ["10:13: error: rank is too large: 99999999999999999999"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: [8]")),
      ["10:13: error: rank must be an integer, not a list"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: !!int \"8\"")).count, 0,
      "an explicit int tag is an int")
  }

  func testAlpha() throws {
    XCTAssertEqual(try rule("layers: q\nrank: 8\nalpha: 0.5").alpha?.value, 0.5)
    XCTAssertEqual(try rule("layers: q\nrank: 8\nalpha: 32").alpha?.value, 32)
    XCTAssertEqual(try rule("layers: q\nrank: 8\nalpha: 1e1").alpha?.value, 10)
    XCTAssertNil(try rule("layers: q\nrank: 8\nalpha: null").alpha)
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\nalpha: 0")),
      ["11:14: error: alpha must be > 0, not 0; use a number > 0"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\nalpha: .inf")),
      ["11:14: error: alpha must be a number, not '.inf'"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\nalpha: '16'")),
      ["11:14: error: alpha must be a number, not the string '16'; remove the quotes"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\nalpha: 1e400")),
      ["11:14: error: alpha is out of range: 1e400"])
  }

  func testInitBiasCAndConvForm() throws {
    let chosen = try rule("layers: q\nrank: 8\ninit: svd\nbias_c: copy\nconv_form: loralib")
    XCTAssertEqual(chosen.initialization.value, .svd)
    XCTAssertEqual(chosen.initialization.location.lineColumn, "11:13")
    XCTAssertEqual(chosen.biasC.value, .copy)
    XCTAssertEqual(chosen.convForm.value, .loralib)
    XCTAssertEqual(try rule("layers: q\nrank: 8\ndecay: {}\nbias_c: none").biasC.value, .none)
    XCTAssertEqual(try rule("layers: q\nrank: 8\nbias_c: zeros").biasC.value, .zeros)
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\nbias_c: zero\nconv_form: full")),
      [
        "11:15: error: bias_c must be zeros, copy or none, not 'zero' (did you mean 'zeros'?)",
        "12:18: error: conv_form must be lowrank or loralib, not 'full'",
      ])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\ninit: LoRA")),
      [
        "11:13: error: init must be lora, svd, svd_residual or svd_whitened, not 'LoRA' (did you mean 'lora'?)"
      ])
  }

  func testDecay() throws {
    let decay = try XCTUnwrap(
      try rule("layers: q\nrank: 8\ndecay: {shape: cosine, start: 0, end: 1}").decay)
    XCTAssertEqual(decay.shape, .cosine)
    XCTAssertEqual(decay.start, 0)
    XCTAssertEqual(decay.end, 1)
    XCTAssertEqual(decay.location.lineColumn, "11:7")
    XCTAssertEqual(try rule("layers: q\nrank: 8\ndecay: {shape: sine}").decay?.shape, .sine)
    XCTAssertEqual(try rule("layers: q\nrank: 8\ndecay: {start: 0.1, end: 0.9}").decay?.start, 0.1)
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\ndecay: {shape: step, start: 1, strat: 0.1}")),
      [
        "11:22: error: decay.shape must be linear, cosine or sine, not 'step'",
        "11:35: error: decay.start must be in [0, 1), not 1; use a number in [0, 1)",
        "11:38: error: unknown key 'strat' in lora.decay (did you mean 'start'?)",
      ])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\ndecay: {start: -0.1}")),
      ["11:22: error: decay.start must be in [0, 1), not -0.1; use a number in [0, 1)"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\ndecay:")),
      ["11:13: error: lora.decay must be a mapping of keys, not an empty value"])
    XCTAssertEqual(
      problems(loraManifest("layers: q\nrank: 8\ndecay: linear")),
      ["11:14: error: lora.decay must be a mapping of keys, not 'linear'"])
  }

  func testNoise() throws {
    let noise = try XCTUnwrap(
      try rule(
        "layers: q\nrank: 8\ndecay: {}\nnoise: {stats: per_output, clear_below: 1, scale: 0}"
      ).noise)
    XCTAssertEqual(noise.statistics, .perOutput)
    XCTAssertEqual(noise.clearBelow, 1)
    XCTAssertEqual(noise.scale, 0)
    XCTAssertEqual(noise.location.lineColumn, "12:7")
    for never in ["null", "~", "", "Null"] {
      let settings = try rule("layers: q\nrank: 8\ndecay: {}\nnoise:\n  clear_below: \(never)")
        .noise
      XCTAssertNotNil(settings, never)
      XCTAssertNil(settings?.clearBelow, "clear_below: \(never) means never")
    }
    XCTAssertEqual(
      problems(
        loraManifest(
          "layers: q\nrank: 8\ndecay: {}\nnoise: {stats: local, scale: -1, clear_below: 1.5}")),
      [
        "12:22: error: noise.stats must be global or per_output, not 'local' (did you mean 'global'?)",
        "12:36: error: noise.scale must be >= 0, not -1; use a number >= 0",
        "12:53: error: noise.clear_below must be in (0, 1], not 1.5; use a number in (0, 1]",
      ])
  }

  func testCommonMisnamingsGetSuggestions() {
    XCTAssertEqual(
      problems(loraManifest("target_modules: [q]\nr: 8\nlora_alpha: 16")),
      [
        "8:5: error: missing required key 'layers' in lora; add 'layers: [query, value]'",
        "8:5: error: missing required key 'rank' in lora; add 'rank: 16'",
        "9:7: error: unknown key 'target_modules' in lora (did you mean 'layers'?)",
        "10:7: error: unknown key 'r' in lora (did you mean 'rank'?)",
        "11:7: error: unknown key 'lora_alpha' in lora (did you mean 'alpha'?)",
      ])
  }

  func testALoRARuleMustBeAMapping() {
    XCTAssertEqual(
      problems(modelHead + "surgery:\n  - lora: [query]\n"),
      ["8:11: error: a lora rule must be a mapping of keys, not a list"])
  }

  func testMergeKeysShareSettingsBetweenRules() throws {
    let manifest = try valid(
      modelHead + """
        surgery:
          - lora: &base {layers: [query, value], rank: 8, decay: {end: 0.5}}
          - lora: {<<: *base, rank: 4, blocks: 0-1}

        """)
    guard case .lora(let second) = manifest.surgery[1] else { return XCTFail("not lora") }
    XCTAssertEqual(second.rank.value, 4, "an explicit key wins over the merged one")
    XCTAssertEqual(second.layers.map(\.value), ["query", "value"])
    XCTAssertEqual(
      second.layers.first?.location.lineColumn, "8:27", "merged values keep their marks")
    XCTAssertEqual(second.decay?.end, 0.5)
    XCTAssertEqual(second.blocks?.value, [0, 1])
    XCTAssertEqual(
      problems(modelHead + "surgery:\n  - lora: {<<: 5, layers: q, rank: 2}\n"),
      [
        "8:16: error: '<<' merges a mapping, not '5'; write '<<: *anchor' with the anchor of a mapping"
      ])
  }

  func testFreezeAndTrainRules() throws {
    let manifest = try valid(
      modelHead + "surgery:\n  - freeze: embeddings\n  - train: [classifier, pooler]\n")
    guard case .freeze(let frozen, let location) = manifest.surgery[0],
      case .train(let trained, _) = manifest.surgery[1]
    else { return XCTFail("\(manifest.surgery)") }
    XCTAssertEqual(frozen.map(\.value), ["embeddings"])
    XCTAssertEqual(location.lineColumn, "8:5")
    XCTAssertEqual(trained.map(\.value), ["classifier", "pooler"])
    XCTAssertEqual(trained.map(\.location.lineColumn), ["9:13", "9:25"])
    XCTAssertEqual(
      problems(modelHead + "surgery:\n  - freeze: {embeddings: true}\n  - train:\n"),
      [
        "8:13: error: freeze must be a selector or a list of selectors, not a mapping; write "
          + "freeze: [query, value]",
        "9:11: error: train must be a string, not an empty value",
      ])
  }

  func testSurgeryElementShapes() {
    XCTAssertEqual(
      problems(modelHead + "surgery:\n  - freeze\n  - {}\n"),
      [
        "8:5: error: a surgery rule is a mapping with one key, lora, freeze or train, not "
          + "'freeze'; for example: '- freeze: [embeddings]'",
        "9:5: error: a surgery rule is a mapping with one key, lora, freeze or train, not a "
          + "mapping; for example: '- freeze: [embeddings]'",
      ])
    XCTAssertEqual(
      problems(modelHead + "surgery:\n  - prune: [x]\n"),
      ["8:5: error: unknown surgery rule 'prune'; a rule is lora, freeze or train"])
    XCTAssertEqual(
      problems(modelHead + "surgery:\n"),
      [
        "7:9: error: surgery must be a list of rules, not an empty value; write each rule as a "
          + "list item: '- lora: {...}', '- freeze: [...]', '- train: [...]'"
      ])
  }

  func testEveryBrokenRuleIsReported() {
    let text =
      modelHead + """
        surgery:
          - lora: {layers: q, rank: 0}
          - freeze: []
          - lora: {layers: q, rank: 2, init: x}

        """
    XCTAssertEqual(
      problems(text).map { String($0.prefix(5)) }, ["8:29:", "9:13:", "10:38"])
  }
}

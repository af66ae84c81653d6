import Models
import Surgery
import XCTest

/// Selectors against the nodes of real presets; every expectation is written out by hand from
/// the graphs' names (BERTGraph.swift, VGG.swift), not computed by the code under test.
final class SelectorTests: XCTestCase {
  // MARK: Fixtures

  /// bert-tiny: 2 layers; 4 embedding nodes, 8 per layer, pooler.dense, then `classifier`.
  private func bertTiny(prefix: String = "", classes: Int? = nil) throws -> [GraphNode] {
    guard case .bert(let configuration, _) = Preset.architecture(named: "bert-tiny") else {
      XCTFail("bert-tiny is not a BERT preset")
      return []
    }
    return BertModel(
      configuration: configuration, prefix: prefix, classes: classes, initialization: .zeros
    ).nodes
  }

  private func vgg(_ preset: String) throws -> [GraphNode] {
    let architecture = try XCTUnwrap(Preset.architecture(named: preset))
    return Model(architecture: architecture, initialization: .zeros).nodes
  }

  /// The names `selectNodes` picks.
  private func names(
    _ selectors: [String], exclude: [String] = [], blocks: Set<Int>? = nil, in nodes: [GraphNode]
  ) throws -> [String] {
    try selectNodes(selectors, exclude: exclude, blocks: blocks, in: nodes).map { nodes[$0].name }
  }

  private func layerNames(_ prefix: String, _ suffix: String) -> [String] {
    ["\(prefix)encoder.layer.0.\(suffix)", "\(prefix)encoder.layer.1.\(suffix)"]
  }

  /// vgg16-cifar's convolutions (conv, ReLU per conv; max-pools at 4, 9, 16, 23, 30).
  private let vgg16Convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28].map { "features.\($0)" }
  /// vgg11-bn's convolutions and batch norms (conv, BN, ReLU; max-pools at 3, 7, 14, 21, 28).
  private let vgg11Convs = [0, 4, 8, 11, 15, 18, 22, 25].map { "features.\($0)" }
  private let vgg11Norms = [1, 5, 9, 12, 16, 19, 23, 26].map { "features.\($0)" }

  // MARK: Roles

  func testEveryRoleOnBertTinyWithAndWithoutPrefix() throws {
    for prefix in ["", "bert."] {
      let nodes = try bertTiny(prefix: prefix, classes: 2)
      XCTAssertEqual(nodes.count, 22)
      let p = prefix
      let expected: [String: [String]] = [
        "query": layerNames(p, "attention.self.query"),
        "key": layerNames(p, "attention.self.key"),
        "value": layerNames(p, "attention.self.value"),
        "attention_output": layerNames(p, "attention.output.dense"),
        "attention_norm": layerNames(p, "attention.output.LayerNorm"),
        "ffn_intermediate": layerNames(p, "intermediate.dense"),
        "ffn_output": layerNames(p, "output.dense"),
        "ffn_norm": layerNames(p, "output.LayerNorm"),
        "embeddings": [
          p + "embeddings.word_embeddings", p + "embeddings.position_embeddings",
          p + "embeddings.token_type_embeddings", p + "embeddings.LayerNorm",
        ],
        "pooler": [p + "pooler.dense"],
        // The head is named `classifier` without the prefix, as in Hugging Face checkpoints.
        "classifier": ["classifier"],
        "head": ["classifier"],
      ]
      for (role, names) in expected {
        XCTAssertEqual(try self.names([role], in: nodes), names, "\(role), prefix '\(p)'")
      }
      for role in ["conv", "batch_norm", "fc"] {
        XCTAssertNotNil(unmatchedSelector(role, in: nodes), "\(role), prefix '\(p)'")
      }
      // Every role the graph code knows is covered above.
      let covered = Set(expected.keys).union(["conv", "batch_norm", "fc"])
      XCTAssertEqual(covered, Set(NodeRole.allCases.map(\.rawValue)))
    }
  }

  func testHeadIsNothingWithoutAClassifier() throws {
    let nodes = try bertTiny()
    XCTAssertEqual(nodes.count, 21)
    // The last Linear is then pooler.dense, which is not a head.
    XCTAssertNotNil(unmatchedSelector("head", in: nodes))
    XCTAssertNotNil(unmatchedSelector("logits", in: nodes))
    XCTAssertNotNil(unmatchedSelector("classifier", in: nodes))
    XCTAssertEqual(try names(["pooler"], in: nodes), ["pooler.dense"])
  }

  func testVGG16CifarRoles() throws {
    let nodes = try vgg("vgg16-cifar")
    XCTAssertEqual(try names(["conv"], in: nodes), vgg16Convs)
    XCTAssertEqual(try names(["fc"], in: nodes), ["classifier.0"])
    XCTAssertEqual(try names(["head"], in: nodes), ["classifier.3"])
    XCTAssertEqual(try names(["logits"], in: nodes), ["classifier.3"])
    XCTAssertEqual(try names(["classifier"], in: nodes), ["classifier.0", "classifier.3"])
    for role in [
      "batch_norm", "query", "key", "value", "attention_output", "attention_norm",
      "ffn_intermediate", "ffn_output", "ffn_norm", "embeddings", "pooler",
    ] {
      XCTAssertNotNil(unmatchedSelector(role, in: nodes), role)
    }
  }

  func testVGG11BNRoles() throws {
    let nodes = try vgg("vgg11-bn")
    XCTAssertEqual(try names(["conv"], in: nodes), vgg11Convs)
    XCTAssertEqual(try names(["batch_norm"], in: nodes), vgg11Norms)
    XCTAssertEqual(try names(["fc"], in: nodes), ["classifier.0", "classifier.3"])
    XCTAssertEqual(try names(["head"], in: nodes), ["classifier.6"])
    XCTAssertEqual(
      try names(["classifier"], in: nodes), ["classifier.0", "classifier.3", "classifier.6"])
  }

  func testMatchesNeedsTheWholeGraphForHead() throws {
    let nodes = try bertTiny(classes: 2)
    let head = try NodeSelector("head")
    let classifier = try XCTUnwrap(nodes.last)
    XCTAssertTrue(head.matches(classifier, among: nodes))
    // Out of its graph the classifier is not known to be the last Linear.
    XCTAssertFalse(head.matches(classifier, among: []))
    XCTAssertFalse(head.matches(nodes[nodes.count - 2], among: nodes))
  }

  // MARK: Names and suffixes

  func testDenseSuffixPicksSevenNodesOfBertTiny() throws {
    for prefix in ["", "bert."] {
      let nodes = try bertTiny(prefix: prefix, classes: 2)
      let p = prefix
      XCTAssertEqual(
        try names(["dense"], in: nodes),
        [
          p + "encoder.layer.0.attention.output.dense", p + "encoder.layer.0.intermediate.dense",
          p + "encoder.layer.0.output.dense", p + "encoder.layer.1.attention.output.dense",
          p + "encoder.layer.1.intermediate.dense", p + "encoder.layer.1.output.dense",
          p + "pooler.dense",
        ])
    }
  }

  func testSuffixesOnDotBoundaries() throws {
    let nodes = try bertTiny(prefix: "bert.", classes: 2)
    XCTAssertEqual(
      try names(["attention.self.query"], in: nodes), layerNames("bert.", "attention.self.query"))
    XCTAssertEqual(
      try names(["layer.0.attention.self.query"], in: nodes),
      ["bert.encoder.layer.0.attention.self.query"])
    // The unprefixed full name is a suffix of the prefixed one.
    XCTAssertEqual(
      try names(["encoder.layer.1.attention.self.key"], in: nodes),
      ["bert.encoder.layer.1.attention.self.key"])
    XCTAssertEqual(
      try names(["output.dense"], in: nodes),
      [
        "bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.output.dense",
        "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.1.output.dense",
      ])
    XCTAssertEqual(try names(["LayerNorm"], in: nodes).count, 5)
    // Not on a dot boundary: no match.
    XCTAssertNotNil(unmatchedSelector("uery", in: nodes))
    XCTAssertNotNil(unmatchedSelector("ayer.0.attention.self.query", in: nodes))
    XCTAssertNotNil(unmatchedSelector("ert.pooler.dense", in: nodes))
  }

  func testFeatureIndexDoesNotMatchLongerIndices() throws {
    let bn = try vgg("vgg11-bn")
    // features.15, .16, .18, .19 exist and must not match `features.1`.
    XCTAssertEqual(try names(["features.1"], in: bn), ["features.1"])
    let cifar = try vgg("vgg16-cifar")
    // features.21, .24, .26, .28 exist and must not match `features.2`.
    XCTAssertEqual(try names(["features.2"], in: cifar), ["features.2"])
    XCTAssertEqual(try names(["features.0"], in: cifar), ["features.0"])
    XCTAssertEqual(try names(["classifier.3"], in: cifar), ["classifier.3"])
    // features.1 is a ReLU in vgg16-cifar: not a node.
    XCTAssertNotNil(unmatchedSelector("features.1", in: cifar))
  }

  // MARK: Globs and regular expressions

  func testGlobs() throws {
    let nodes = try bertTiny(classes: 2)
    XCTAssertEqual(
      try names(["encoder.layer.*.intermediate.dense"], in: nodes),
      layerNames("", "intermediate.dense"))
    XCTAssertEqual(try names(["**.query"], in: nodes), layerNames("", "attention.self.query"))
    XCTAssertEqual(
      try names(["encoder.**.dense"], in: nodes),
      [
        "encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense",
        "encoder.layer.0.output.dense", "encoder.layer.1.attention.output.dense",
        "encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense",
      ])
    XCTAssertEqual(
      try names(["*.*"], in: nodes),
      [
        "embeddings.word_embeddings", "embeddings.position_embeddings",
        "embeddings.token_type_embeddings", "embeddings.LayerNorm", "pooler.dense",
      ])
    XCTAssertEqual(try names(["**"], in: nodes).count, 22)
    // `**` may stand for no segment at all.
    XCTAssertEqual(try names(["**.classifier"], in: nodes), ["classifier"])
    XCTAssertEqual(try names(["encoder.layer.1.**"], in: nodes).count, 8)
    XCTAssertEqual(try names(["**.attention.**"], in: nodes).count, 10)
    // `*` inside a segment matches within that segment only.
    XCTAssertEqual(
      try names(["embeddings.*_embeddings"], in: nodes),
      [
        "embeddings.word_embeddings", "embeddings.position_embeddings",
        "embeddings.token_type_embeddings",
      ])
    // `*` is exactly one segment, and globs match whole names.
    XCTAssertNotNil(unmatchedSelector("encoder.*.intermediate.dense", in: nodes))
    XCTAssertNotNil(unmatchedSelector("*.query", in: nodes))
  }

  func testGlobsOnVGG() throws {
    let cifar = try vgg("vgg16-cifar")
    XCTAssertEqual(try names(["features.*"], in: cifar), vgg16Convs)
    XCTAssertEqual(try names(["classifier.**"], in: cifar), ["classifier.0", "classifier.3"])
    let bn = try vgg("vgg11-bn")
    XCTAssertEqual(
      try names(["features.1*"], in: bn),
      [
        "features.1", "features.11", "features.12", "features.15", "features.16", "features.18",
        "features.19",
      ])
  }

  func testGlobOnPrefixedNamesSuggestsAnyPrefix() throws {
    let nodes = try bertTiny(prefix: "bert.")
    let error = try XCTUnwrap(unmatchedSelector("encoder.layer.*.intermediate.dense", in: nodes))
    XCTAssertEqual(
      error.fix,
      "globs match whole names: write '**.encoder.layer.*.intermediate.dense' to allow any prefix")
  }

  func testMalformedGlobs() {
    XCTAssertThrowsError(try NodeSelector("encoder..*")) { error in
      XCTAssertTrue(String(describing: error).contains("empty name segment"), "\(error)")
    }
    XCTAssertThrowsError(try NodeSelector("a**.b")) { error in
      XCTAssertTrue(String(describing: error).contains("whole segment"), "\(error)")
    }
  }

  func testRegexMatchesWholeNames() throws {
    let nodes = try bertTiny(classes: 2)
    XCTAssertEqual(try names(["/.*query/"], in: nodes), layerNames("", "attention.self.query"))
    XCTAssertEqual(
      try names(["/encoder\\.layer\\.[01]\\.attention\\.self\\.(query|value)/"], in: nodes),
      [
        "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.value",
        "encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value",
      ])
    // A part of a name is not a whole-name match.
    XCTAssertNotNil(unmatchedSelector("/query/", in: nodes))
    XCTAssertNotNil(unmatchedSelector("/encoder/", in: nodes))
    let bn = try vgg("vgg11-bn")
    XCTAssertEqual(try names(["/features\\.1/"], in: bn), ["features.1"])
    // The anchors bind the whole alternation: `classifier` alone matches no VGG name.
    XCTAssertEqual(try names(["/classifier|features\\.0/"], in: bn), ["features.0"])
  }

  func testBadRegexIsAnError() {
    XCTAssertThrowsError(try NodeSelector("/(/")) { error in
      let message = (error as? SelectorError)?.message ?? ""
      XCTAssertTrue(message.hasPrefix("invalid regular expression /(/: "), message)
      XCTAssertGreaterThan(message.count, "invalid regular expression /(/: ".count, message)
    }
    // Unbalanced: it must not become valid inside the anchoring group.
    XCTAssertThrowsError(try NodeSelector("/a)(b/"))
    XCTAssertThrowsError(try NodeSelector("/[a/"))
    XCTAssertThrowsError(try NodeSelector("/abc"))
    XCTAssertThrowsError(try NodeSelector("//"))
    XCTAssertThrowsError(try NodeSelector("/"))
  }

  func testEmptySelectorIsAnError() {
    XCTAssertThrowsError(try NodeSelector(""))
    XCTAssertThrowsError(try NodeSelector("  "))
    XCTAssertThrowsError(try selectNodes([""], in: []))
  }

  // MARK: Keras names

  func testKerasNames() throws {
    let nodes = try bertTiny(prefix: "bert.", classes: 2)
    let p = "bert."
    let expected: [String: [String]] = [
      "token_embedding": [p + "embeddings.word_embeddings"],
      "position_embedding": [p + "embeddings.position_embeddings"],
      "segment_embedding": [p + "embeddings.token_type_embeddings"],
      "embeddings_layer_norm": [p + "embeddings.LayerNorm"],
      "_query_dense": layerNames(p, "attention.self.query"),
      "_key_dense": layerNames(p, "attention.self.key"),
      "_value_dense": layerNames(p, "attention.self.value"),
      "_attention_output_dense": layerNames(p, "attention.output.dense"),
      "_self_attention_layer_norm": layerNames(p, "attention.output.LayerNorm"),
      "_feedforward_intermediate_dense": layerNames(p, "intermediate.dense"),
      "_feedforward_output_dense": layerNames(p, "output.dense"),
      "_feedforward_layer_norm": layerNames(p, "output.LayerNorm"),
      "pooled_dense": [p + "pooler.dense"],
      "logits": ["classifier"],
      "transformer_layer_1": [
        p + "encoder.layer.1.attention.self.query", p + "encoder.layer.1.attention.self.key",
        p + "encoder.layer.1.attention.self.value", p + "encoder.layer.1.attention.output.dense",
        p + "encoder.layer.1.attention.output.LayerNorm", p + "encoder.layer.1.intermediate.dense",
        p + "encoder.layer.1.output.dense", p + "encoder.layer.1.output.LayerNorm",
      ],
    ]
    for (keras, names) in expected {
      XCTAssertEqual(try self.names([keras], in: nodes), names, keras)
    }
    // bert-tiny has layers 0 and 1 only.
    XCTAssertNotNil(unmatchedSelector("transformer_layer_2", in: nodes))
    XCTAssertNotNil(unmatchedSelector("transformer_layer_", in: nodes))
    // VGG blocks count convolutions; a transformer layer name picks none of them.
    XCTAssertNotNil(unmatchedSelector("transformer_layer_0", in: try vgg("vgg11-bn")))
  }

  // MARK: Blocks, exclude, order

  func testBlocksFilter() throws {
    let nodes = try bertTiny(classes: 2)
    XCTAssertEqual(
      try names(["dense"], blocks: [1], in: nodes),
      [
        "encoder.layer.1.attention.output.dense", "encoder.layer.1.intermediate.dense",
        "encoder.layer.1.output.dense",
      ])
    // The selector matches nodes (before blocks), so an empty result is no error.
    XCTAssertEqual(try names(["pooler"], blocks: [0, 1], in: nodes), [])
    XCTAssertEqual(try names(["query"], blocks: [], in: nodes), [])
    let bn = try vgg("vgg11-bn")
    XCTAssertEqual(
      try names(["conv", "batch_norm"], blocks: [0, 1], in: bn),
      ["features.0", "features.1", "features.4", "features.5"])
    XCTAssertEqual(try names(["conv"], blocks: [7, 8], in: bn), ["features.25"])
  }

  func testExclude() throws {
    let nodes = try bertTiny(classes: 2)
    let perLayer = [
      "attention.self.query", "attention.self.key", "attention.self.value",
      "attention.output.dense", "intermediate.dense", "output.dense",
    ]
    XCTAssertEqual(
      try names(["query", "key", "value", "dense"], exclude: ["pooler"], in: nodes),
      perLayer.map { "encoder.layer.0." + $0 } + perLayer.map { "encoder.layer.1." + $0 })
    XCTAssertEqual(
      try names(["dense"], exclude: ["intermediate.dense", "/.*1\\.output\\.dense/"], in: nodes),
      [
        "encoder.layer.0.attention.output.dense", "encoder.layer.0.output.dense",
        "encoder.layer.1.attention.output.dense", "pooler.dense",
      ])
    // Excluding something the rule did not select is fine…
    XCTAssertEqual(
      try names(["query"], exclude: ["pooler"], in: nodes), layerNames("", "attention.self.query"))
    // …but an exclude that matches no node of the model is a typo.
    XCTAssertThrowsError(try selectNodes(["query"], exclude: ["poolr"], in: nodes)) { error in
      XCTAssertTrue(
        (error as? SelectorError)?.message.hasPrefix("selector 'poolr' matches no node") ?? false,
        "\(error)")
    }
  }

  func testResultIsInNodeOrderWithoutDuplicates() throws {
    let nodes = try bertTiny(classes: 2)
    XCTAssertEqual(
      try selectNodes(["value", "query", "attention.self.query", "**.query"], in: nodes),
      [4, 6, 12, 14])
    XCTAssertEqual(try selectNodes([], in: nodes), [])
  }

  // MARK: Errors

  func testNoMatchNamesThreeClosestNodes() throws {
    let nodes = try bertTiny(classes: 2)
    // Edit distances to the nearest dotted suffix: query 2 (both layers), key 3.
    let expected =
      "selector 'qurey' matches no node; closest: encoder.layer.0.attention.self.query, "
      + "encoder.layer.1.attention.self.query, encoder.layer.0.attention.self.key"
    XCTAssertThrowsError(try selectNodes(["query", "qurey"], in: nodes)) { error in
      XCTAssertEqual((error as? SelectorError)?.message, expected)
      XCTAssertNotNil((error as? SelectorError)?.fix)
    }
    let single = try XCTUnwrap(unmatchedSelector("qurey", in: nodes))
    XCTAssertEqual(single.message, expected)
    XCTAssertTrue(single.fix?.contains("role") ?? false)
    XCTAssertEqual(single.description, expected + "; " + (single.fix ?? ""))
    // A regular expression is compared without its slashes.
    XCTAssertEqual(
      unmatchedSelector("/qurey/", in: nodes)?.message,
      expected.replacingOccurrences(of: "'qurey'", with: "'/qurey/'"))
    let vggError = try XCTUnwrap(unmatchedSelector("feature.3", in: try vgg("vgg16-cifar")))
    // 2 edits (add the s, change the digit) from every one-digit feature index, 3 from the
    // two-digit ones: the first three in node order.
    XCTAssertEqual(
      vggError.message,
      "selector 'feature.3' matches no node; closest: features.0, features.2, features.5")
  }

  func testUnmatchedSelectorReportsEachSelector() throws {
    let nodes = try bertTiny(classes: 2)
    XCTAssertNil(unmatchedSelector("query", in: nodes))
    XCTAssertNil(unmatchedSelector("/.*/", in: nodes))
    XCTAssertEqual(unmatchedSelector("/(/", in: nodes)?.message.hasPrefix("invalid regular"), true)
    XCTAssertEqual(unmatchedSelector("", in: nodes)?.message, "empty selector")
    XCTAssertNotNil(unmatchedSelector("query", in: []))
  }

  func testSelectorsCompareByText() throws {
    XCTAssertEqual(try NodeSelector("query"), try NodeSelector("query"))
    XCTAssertNotEqual(try NodeSelector("query"), try NodeSelector("key"))
    XCTAssertEqual(try NodeSelector("**.query").text, "**.query")
  }
}

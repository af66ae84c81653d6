import Manifest
import Models
import Surgery
import XCTest

/// Exact parameter counts after surgery, each derived by hand in the test.
final class CountTests: XCTestCase {
  /// A Linear in → out with a rank-r adapter and C: A r·in, B out·r, C out.
  private func adapter(_ inFeatures: Int, _ out: Int, rank: Int, c: Bool = true) -> Int {
    rank * inFeatures + out * rank + (c ? out : 0)
  }

  func testNotesBERTTinyWithAdaptersOnQKVFFNAndPooler() throws {
    let result = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora:
              layers: [query, key, value, ffn_intermediate, ffn_output, pooler]
              rank: 32
              alpha: 32
              bias_c: zeros
          - freeze: [embeddings, classifier]
        """)
    let perBlock =
      3 * adapter(128, 128, rank: 32) + adapter(128, 512, rank: 32) + adapter(512, 128, rank: 32)
    let trainable = 2 * perBlock + adapter(128, 128, rank: 32)
    XCTAssertEqual(trainable, 141_440)
    let summary = result.plan.summary(title: "t")
    XCTAssertEqual(summary.trainable, 141_440)
    XCTAssertEqual(summary.total, 4_386_178 + 141_440)
    XCTAssertEqual(summary.total, 4_527_618)
    XCTAssertEqual(summary.nonTrainable, 4_386_178)
  }

  func testNotesVGG16CIFARWithLoralibAdapters() throws {
    let result = try rewrite(
      header("vgg16-cifar", family: "vgg") + """
          - lora:
              layers: [conv]
              rank: 32
              bias_c: zeros
              conv_form: loralib
        """)
    // loralib: A r·k × in·k, B out·k × r·k, C out, with k = 3 on VGG16's 13 convolutions.
    let channels =
      [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
      + [(256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    let expected = channels.reduce(0) { total, pair in
      total + 96 * (pair.0 * 3) + (pair.1 * 3) * 96 + pair.1
    }
    XCTAssertEqual(expected, 2_290_656)
    let summary = result.plan.summary(title: "t")
    XCTAssertEqual(summary.trainable, expected)
    XCTAssertEqual(summary.total, 17_273_130)
    XCTAssertEqual(summary.nonTrainable, 14_982_474)
    XCTAssertEqual(summary.compressedTotal, 14_982_474, "loralib compresses nothing")
  }

  func testLowrankConvCompressesAndCountsMultiplyAdds() throws {
    let result = try rewrite(
      header("vgg16-cifar", family: "vgg") + """
          - lora:
              layers: [conv]
              exclude: [features.0]
              rank: 16
        """)
    let row = try XCTUnwrap(result.plan.summary(title: "t").rows.first { $0.name == "features.2" })
    // features.2: 64 → 64, 3×3: A 16·64·9, B 64·16, no C (no decay).
    XCTAssertEqual(row.trainable, 16 * 64 * 9 + 64 * 16)
    XCTAssertEqual(row.adapter?.multiplyAddsBefore, 64 * 64 * 9)
    XCTAssertEqual(row.adapter?.multiplyAddsAfter, 16 * 64 * 9 + 64 * 16)
    XCTAssertEqual(row.adapter?.compressedParameters, 16 * 64 * 9 + 64 * 16)
    let first = try XCTUnwrap(
      result.plan.summary(title: "t").rows.first { $0.name == "features.0" })
    XCTAssertNil(first.adapter, "excluded")
    XCTAssertEqual(first.trainable, 0, "frozen by default beside a lora rule")
  }

  func testRegexBlocksKerasNamesAndTrainOnLayerNorms() throws {
    let result = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora:
              layers: ["/.*attention\\\\.self\\\\.(query|value)/"]
              blocks: 1
              rank: 4
          - lora:
              layers: [_feedforward_intermediate_dense]
              blocks: [0]
              rank: 8
              alpha: 16
          - train: [attention_norm, ffn_norm]
        """)
    let summary = result.plan.summary(title: "t")
    let byName = Dictionary(uniqueKeysWithValues: summary.rows.map { ($0.name, $0) })
    XCTAssertEqual(byName["encoder.layer.1.attention.self.query"]?.trainable, 4 * 128 + 128 * 4)
    XCTAssertEqual(byName["encoder.layer.1.attention.self.value"]?.trainable, 4 * 128 + 128 * 4)
    XCTAssertNil(byName["encoder.layer.0.attention.self.query"]?.adapter, "block 0 not selected")
    XCTAssertNil(byName["encoder.layer.1.attention.self.key"]?.adapter)
    XCTAssertEqual(byName["encoder.layer.0.intermediate.dense"]?.trainable, 8 * 128 + 512 * 8)
    XCTAssertNil(byName["encoder.layer.1.intermediate.dense"]?.adapter)
    // The four norms train in full; the new head trains by default; everything else is frozen.
    let expected = 2 * (4 * 128 + 128 * 4) + (8 * 128 + 512 * 8) + 4 * 256 + 258
    XCTAssertEqual(summary.trainable, expected)
    XCTAssertEqual(Set(result.plan.trainable).count, result.plan.trainable.count)
    // The scale is alpha / rank.
    guard case .bert(let model) = result.plan.model else { return XCTFail("not BERT") }
    XCTAssertEqual(model.layers[0].intermediate.adapter?.scale, 2)
    XCTAssertEqual(model.layers[1].query.adapter?.scale, 1)
  }

  func testLaterRuleWinsAndNoLoRAMeansFullFineTuning() throws {
    let full = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + "  - freeze: [embeddings]\n")
    XCTAssertEqual(
      full.plan.summary(title: "t").trainable, 4_386_178 - 3_906_816 - 65_536 - 256 - 256)
    let overlap = try rewrite(
      header("bert-tiny", family: "bert", head: 2) + """
          - lora: {layers: [query], rank: 2}
          - freeze: [encoder.layer.0.attention.self.query]
          - train: [encoder.layer.1.attention.self.query]
        """)
    let rows = Dictionary(
      uniqueKeysWithValues: overlap.plan.summary(title: "t").rows.map { ($0.name, $0) })
    XCTAssertEqual(rows["encoder.layer.0.attention.self.query"]?.trainable, 0, "freeze after lora")
    let trained = try XCTUnwrap(rows["encoder.layer.1.attention.self.query"])
    XCTAssertEqual(
      trained.trainable, trained.parameters, "train after lora trains base and adapter")
  }

  func testSurgeryErrorsAtTheirPositions() {
    let errors = surgeryErrors(
      header("bert-tiny", family: "bert") + """
          - lora:
              layers: [qurey]
              rank: 4
          - lora:
              layers: [embeddings.LayerNorm]
              rank: 4
          - lora:
              layers: [dense]
              rank: 300
        """)
    XCTAssertEqual(errors.count, 3, errors.joined(separator: "\n"))
    XCTAssertTrue(
      errors[0].hasPrefix(
        "test.yaml:10:16: error: selector 'qurey' matches no node; closest: encoder.layer.0.attention.self.query"
      ), errors[0])
    XCTAssertTrue(
      errors[1].hasPrefix(
        "test.yaml:12:5: error: lora cannot wrap embeddings.LayerNorm (LayerNorm)"), errors[1])
    XCTAssertTrue(errors[2].contains("rank 300 is not below min(in, out) = 128"), errors[2])
    XCTAssertTrue(errors[2].hasPrefix("test.yaml:17:13:"), errors[2])
  }
}

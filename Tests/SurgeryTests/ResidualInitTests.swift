import Models
import Surgery
import Tensor
import XCTest

/// `init: svd_residual`: the frozen part holds W − s·B·A and b − C, so the wrapped model computes
/// the loaded model's function at d = 1 and the SVD start's at d = 0.
final class ResidualInitTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func textBatch() -> Batch {
    var random = RandomStream(seed: 5)
    let ids = (0..<(3 * 10)).map { _ in Int32(5 + random.nextInt(below: 1000)) }
    let mask = (0..<(3 * 10)).map { Int32($0 % 10 < 10 - $0 / 10 ? 1 : 0) }
    return .text(
      TextBatch(batchSize: 3, length: 10, inputIDs: ids, attentionMask: mask, labels: [0, 1, 1]))
  }

  private func bert(_ initialization: String) -> String {
    header("bert-tiny", family: "bert", head: 2) + """
        - lora:
            layers: [query, value, ffn_output, pooler]
            rank: 8
            alpha: 16
            init: \(initialization)
            bias_c: copy
            decay: {start: 0.5, end: 0.9}
      """
  }

  private func vgg(_ initialization: String) -> String {
    let text =
      header("vgg11", family: "vgg") + """
          - lora: {layers: [conv, fc], exclude: [features.0], rank: 3, init: \(initialization), bias_c: zeros, decay: {start: 0.5, end: 0.9}}
          - train: [head]
        """
    return text.replacingOccurrences(
      of: "preset: vgg11\n",
      with:
        "preset: vgg11\n  config: {cfg: [4, M, 8, M, 8, 8, M, 8, 8, M, 8, 8], image_size: 16, num_classes: 3, classifier_hidden: [8], avgpool: null, dropout: 0.0}\n"
    )
  }

  private func relativeDifference(_ a: Tensor, _ b: Tensor) -> Float {
    var difference = a
    difference.add(b, scaledBy: -1)
    return Float((difference.dot(difference) / b.dot(b)).squareRoot())
  }

  func testBERTStartsAsLoadedAndEndsAsTheSVDStart() throws {
    let residual = try rewrite(bert("svd_residual"), initializes: true)
    var plan = residual.plan
    plan.setProgress(0)
    let loaded = try residual.original.logits(textBatch())
    XCTAssertLessThan(relativeDifference(try plan.model.logits(textBatch()), loaded), 1e-5)

    // W-free, the residual start is the plain SVD start: the same factors and C.
    var svd = try rewrite(bert("svd"), initializes: true).plan
    svd.setProgress(1)
    plan.setProgress(1)
    let svdLogits = try svd.exportedView.logits(textBatch())
    XCTAssertTrue(try plan.exportedView.logits(textBatch()).isBitwiseEqual(to: svdLogits))
    XCTAssertGreaterThan(relativeDifference(svdLogits, loaded), 1e-3, "rank 8 is not exact")

    // The frozen tensors hold only the residual: b − C = 0 with bias_c copy.
    guard case .bert(let model) = plan.model else { return XCTFail("not BERT") }
    let query = model.layers[0].query
    let bias = try XCTUnwrap(query.bias)
    XCTAssertEqual(bias.dot(bias), 0)
    let adapter = try XCTUnwrap(query.adapter)
    var product = adapter.up.matmul(adapter.down)
    product.scale(by: adapter.scale)
    XCTAssertLessThan(abs(query.weight.dot(product)) / product.dot(product), 1e-3)
  }

  func testVGGConvolutionsStartAsLoaded() throws {
    let residual = try rewrite(vgg("svd_residual"), initializes: true)
    var plan = residual.plan
    plan.setProgress(0.25)
    var random = RandomStream(seed: 8)
    let images = Batch.images(
      pixels: Tensor.uniform(shape: [2, 3, 16, 16], low: 0, high: 1, random: &random),
      labels: [0, 2])
    let loaded = try residual.original.logits(images)
    XCTAssertLessThan(relativeDifference(try plan.model.logits(images), loaded), 1e-5)
    var svd = try rewrite(vgg("svd"), initializes: true).plan
    svd.setProgress(0.25)
    XCTAssertGreaterThan(
      relativeDifference(try svd.model.logits(images), loaded), 1e-3,
      "init svd adds s·B·A to the whole W; only the residual start is exact")
  }

  func testResidualInitIsRefusedWhereSVDIs() {
    let errors = surgeryErrors(
      vgg("svd_residual").replacingOccurrences(of: "rank: 3,", with: "rank: 3, conv_form: loralib,")
    )
    XCTAssertTrue(
      errors.contains { $0.contains("init svd_residual is not defined for conv_form loralib") },
      "\(errors)")
  }
}

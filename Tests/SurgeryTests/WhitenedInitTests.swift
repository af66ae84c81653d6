import Foundation
import Manifest
import Models
import Surgery
import Tensor
import XCTest

/// `init: svd_whitened`: factors from the calibration inputs' covariance, the mean in C, the
/// residual frozen — the model starts as loaded and its W-free view is closer to the loaded
/// model than the plain SVD start's on the inputs it was calibrated on.
final class WhitenedInitTests: XCTestCase {
  override func setUp() { BLAS.setThreadCount(1) }

  private func textBatch(seed: UInt64, rows: Int = 4) -> Batch {
    var random = RandomStream(seed: seed)
    let ids = (0..<(rows * 12)).map { _ in Int32(5 + random.nextInt(below: 2000)) }
    // Rows padded from the end by 0, 3, 6 and 9 tokens, in turn.
    let mask = (0..<(rows * 12)).map { Int32($0 % 12 < 12 - 3 * ($0 / 12 % 4) ? 1 : 0) }
    return .text(
      TextBatch(
        batchSize: rows, length: 12, inputIDs: ids, attentionMask: mask,
        labels: (0..<rows).map { Int32($0 % 2) }))
  }

  private func bert(
    _ initialization: String, layers: String = "[query, value, ffn_intermediate, ffn_output]",
    refit: String? = nil, calibrationBatches: Int = 3
  ) -> String {
    header("bert-tiny", family: "bert", head: 2) + """
        - lora:
            layers: \(layers)
            rank: 12
            init: \(initialization)
            bias_c: copy\(refit.map { "\n      refit: \($0)\n      calibration: {batches: \(calibrationBatches)}" } ?? "")
            decay: {start: 0.5, end: 0.9}
      """ + Self.textTrain
  }

  /// init svd_whitened needs a train section (its calibration reads training batches); these
  /// tests hand the batches over themselves, so the data files are never opened.
  private static let textTrain = """

    train:
      task: text-classification
      data:
        train: {format: csv, path: unused.csv, text: text, label: label}
      steps: 1

    """
  private static let imageTrain = """

    train:
      task: image-classification
      data:
        train: {format: idx, images: unused-images.gz, labels: unused-labels.gz}
      steps: 1

    """

  /// Decodes and resolves `text`, collects the wrapped nodes' input moments over `batches`
  /// (on the loaded model), and rewrites with them.
  private func calibratedRewrite(_ text: String, batches: [Batch]) throws -> Rewrite {
    let (manifest, decodeDiagnostics) = ManifestDecoder.decode(text: text, file: "test.yaml")
    let decoded = try XCTUnwrap(manifest, render(decodeDiagnostics, as: .text))
    let (resolved, _) = ModelResolver.resolve(
      decoded.model, needsWeights: true,
      workingDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
    let model = try XCTUnwrap(resolved)
    let dry = try rewrite(text)
    let wrapped = dry.actions.filter { $0.kind == .wrapped }.map(\.node)
    let moments = try Calibration.inputMoments(
      of: model.model, nodes: Dictionary(uniqueKeysWithValues: wrapped.map { ($0, batches.count) })
    ) { batches[$0] }
    let (result, diagnostics) = Rewriter.apply(
      decoded, to: model, initializes: true, calibration: moments)
    let start = try XCTUnwrap(result, render(diagnostics, as: .text))
    let (refitted, refitDiagnostics) = SequentialRefit.apply(
      decoded, to: model, start: start, calibration: moments
    ) { batches[$0] }
    return try XCTUnwrap(refitted, render(refitDiagnostics, as: .text))
  }

  private func relativeDifference(_ a: Tensor, _ b: Tensor) -> Double {
    var difference = a
    difference.add(b, scaledBy: -1)
    return (difference.dot(difference) / b.dot(b)).squareRoot()
  }

  private func hiddenStates(_ model: Model, _ batch: Batch) throws -> Tensor {
    guard case .bert(let bert) = model, case .text(let text) = batch else {
      throw XCTSkip("not BERT")
    }
    var random = RandomStream(seed: 0)
    return try bert.forward(text, mode: .evaluation, random: &random).outputs.lastHiddenState
  }

  func testBERTStartsAsLoadedAndItsWFreeViewBeatsThePlainSVDOnCalibrationInputs() throws {
    let batches = (0..<3).map { textBatch(seed: 20 + UInt64($0)) }
    let whitened = try calibratedRewrite(bert("svd_whitened"), batches: batches)
    var plan = whitened.plan
    plan.setProgress(0)
    for batch in batches {
      XCTAssertLessThan(
        relativeDifference(try plan.model.logits(batch), try whitened.original.logits(batch)),
        1e-5)
    }
    plan.setProgress(1)
    var svd = try rewrite(bert("svd_residual"), initializes: true).plan
    svd.setProgress(1)
    for batch in batches {
      let loaded = try hiddenStates(whitened.original, batch)
      let whitenedError = relativeDifference(try hiddenStates(plan.exportedView, batch), loaded)
      let svdError = relativeDifference(try hiddenStates(svd.exportedView, batch), loaded)
      XCTAssertLessThan(whitenedError, 0.8 * svdError, "whitened \(whitenedError), svd \(svdError)")
    }
  }

  func testCIsTheBiasPlusTheResidualAppliedToTheMean() throws {
    let batches = [textBatch(seed: 30)]
    let whitened = try calibratedRewrite(
      bert("svd_whitened", layers: "[ffn_output]"), batches: batches)
    guard case .bert(let wrapped) = whitened.plan.model, case .bert(let loaded) = whitened.original
    else { return XCTFail("not BERT") }
    let layer = wrapped.layers[1].output
    let original = loaded.layers[1].output
    let adapter = try XCTUnwrap(layer.adapter)
    var moments: [String: InputMoments] = [:]
    try whitened.original.accumulateInputMoments(
      of: batches[0], nodes: [layer.name], into: &moments)
    let mean = try XCTUnwrap(moments[layer.name]).mean
    XCTAssertEqual(try XCTUnwrap(moments[layer.name]).count, 12 + 9 + 6 + 3, "non-padding tokens")
    // The frozen part is the residual: W' = W − s·B·A and b' = b − C, with C = b + W'·μ.
    var product = adapter.up.matmul(adapter.down)
    product.scale(by: adapter.scale)
    var sum = layer.weight
    sum.add(product)
    XCTAssertLessThan(relativeDifference(sum, original.weight), 1e-6)
    let c = try XCTUnwrap(adapter.bias).scalars
    let b = try XCTUnwrap(original.bias).scalars
    let frozenBias = try XCTUnwrap(layer.bias).scalars
    let n = layer.inFeatures
    let residual = layer.weight.scalars
    for row in 0..<layer.outFeatures {
      let projected = (0..<n).reduce(0.0) { $0 + Double(residual[row * n + $1]) * mean[$1] }
      XCTAssertEqual(Double(c[row]), Double(b[row]) + projected, accuracy: 1e-4)
      XCTAssertEqual(frozenBias[row] + c[row], b[row], accuracy: 1e-5)
    }
  }

  func testVGGConvolutionsStartAsLoaded() throws {
    let text =
      header("vgg11", family: "vgg")
        + """
          - lora: {layers: [conv, fc], exclude: [features.0], rank: 3, init: svd_whitened, decay: {start: 0.5, end: 0.9}}
          - train: [head]
        """ + Self.imageTrain
    let manifest = text.replacingOccurrences(
      of: "preset: vgg11\n",
      with:
        "preset: vgg11\n  config: {cfg: [4, M, 8, M, 8, 8, M, 8, 8, M, 8, 8], image_size: 16, num_classes: 3, classifier_hidden: [8], avgpool: null, dropout: 0.0}\n"
    )
    var random = RandomStream(seed: 8)
    let batches = (0..<2).map { _ in
      Batch.images(
        pixels: Tensor.uniform(shape: [3, 3, 16, 16], low: 0, high: 1, random: &random),
        labels: [0, 2, 1])
    }
    let whitened = try calibratedRewrite(manifest, batches: batches)
    var plan = whitened.plan
    plan.setProgress(0.25)
    for batch in batches {
      XCTAssertLessThan(
        relativeDifference(try plan.model.logits(batch), try whitened.original.logits(batch)),
        1e-5)
    }
  }

  /// `refit: sequential`: each node's factors refitted, in forward order, to the loaded layer's
  /// output from the W-free model's own inputs. The model still starts as loaded, the ranks
  /// stay, and the W-free view ends closer to the loaded model than without the refit.
  func testSequentialRefitBringsTheWFreeViewCloserToTheLoadedModel() throws {
    // Enough calibration rows (6 of 8 batches fit, 2 held out) for a regression over 128
    // inputs to beat the whitened factors on held-out rows.
    let batches = (0..<8).map { textBatch(seed: 40 + UInt64($0), rows: 16) }
    let layers = "[query, key, value, dense]"
    let whitened = try calibratedRewrite(
      bert("svd_whitened", layers: layers, refit: "none", calibrationBatches: 8), batches: batches)
    let refitted = try calibratedRewrite(
      bert("svd_whitened", layers: layers, refit: "sequential", calibrationBatches: 8),
      batches: batches)
    XCTAssertEqual(refitted.whitened.count, 4 * 2 + 2 * 2 + 1, "q, k, v, dense ×2 layers, pooler")
    // Every node's choice is recorded; a refitted node reads the student's inputs and
    // reproduces the teacher's mean, a kept one keeps its whitened factors, and the choice is
    // never worse on the held-out batch than the whitened factors.
    XCTAssertEqual(Set(refitted.refitChoices.keys), Set(refitted.whitened.keys))
    XCTAssertTrue(refitted.refitChoices.values.contains { $0.ridgeScale != nil })
    for (name, node) in refitted.whitened {
      XCTAssertEqual(node.refit, .sequential)
      XCTAssertEqual(node.rank, whitened.whitened[name]?.rank, name)
      let choice = try XCTUnwrap(refitted.refitChoices[name], name)
      XCTAssertEqual(node.whitening.targetMean != nil, choice.ridgeScale != nil, name)
      XCTAssertLessThanOrEqual(choice.heldOutError, choice.heldOutErrorWhitened, name)
      XCTAssertGreaterThan(choice.heldOutRows, 0, name)
    }
    var plan = refitted.plan
    plan.setProgress(0)
    for batch in batches {
      XCTAssertLessThan(
        relativeDifference(try plan.model.logits(batch), try refitted.original.logits(batch)),
        1e-5)
    }
    // Compared on tokens of batches the calibration never saw (padding rows are never
    // calibrated on): the held-out choice keeps what generalises.
    var (before, after) = (0.0, 0.0)
    for batch in (0..<2).map({ textBatch(seed: 60 + UInt64($0), rows: 16) }) {
      guard case .text(let text) = batch else { return XCTFail("not text") }
      func tokens(_ states: Tensor) -> Tensor {
        let width = states.shape[states.shape.count - 1]
        let kept = text.attentionMask.enumerated().filter { $0.element != 0 }.map(\.offset)
        let values = states.scalars
        return Tensor(
          shape: [kept.count, width],
          scalars: kept.flatMap { values[($0 * width)..<(($0 + 1) * width)] })
      }
      let loaded = tokens(try hiddenStates(whitened.original, batch))
      before += relativeDifference(
        tokens(try hiddenStates(whitened.plan.exportedView, batch)), loaded)
      after += relativeDifference(
        tokens(try hiddenStates(refitted.plan.exportedView, batch)), loaded)
    }
    XCTAssertLessThan(after, 0.995 * before, "refit \(after), whitened \(before)")
  }

  func testSequentialRefitOfVGGConvolutionsStartsAsLoadedAndFitsCloser() throws {
    var random = RandomStream(seed: 9)
    let batches = (0..<3).map { _ in
      Batch.images(
        pixels: Tensor.uniform(shape: [4, 3, 16, 16], low: 0, high: 1, random: &random),
        labels: [0, 2, 1, 0])
    }
    func manifest(_ refit: String) -> String {
      (header("vgg11", family: "vgg")
        + """
          - lora: {layers: [conv, fc], exclude: [features.0], rank: 3, init: svd_whitened, refit: \(refit), calibration: {batches: 3}, decay: {start: 0.5, end: 0.9}}
          - train: [head]
        """ + Self.imageTrain).replacingOccurrences(
          of: "preset: vgg11\n",
          with:
            "preset: vgg11\n  config: {cfg: [4, M, 8, M, 8, 8, M, 8, 8, M, 8, 8], image_size: 16, num_classes: 3, classifier_hidden: [8], avgpool: null, dropout: 0.0}\n"
        )
    }
    let whitened = try calibratedRewrite(manifest("none"), batches: batches)
    let refitted = try calibratedRewrite(manifest("sequential"), batches: batches)
    var plan = refitted.plan
    plan.setProgress(0)
    var (before, after) = (0.0, 0.0)
    for batch in batches {
      let loaded = try refitted.original.logits(batch)
      XCTAssertLessThan(relativeDifference(try plan.model.logits(batch), loaded), 1e-5)
      before += relativeDifference(try whitened.plan.exportedView.logits(batch), loaded)
      after += relativeDifference(try refitted.plan.exportedView.logits(batch), loaded)
    }
    XCTAssertLessThan(after, 0.9 * before, "refit \(after), whitened \(before)")
  }

  func testMissingCalibrationInputsAndLoralibAreErrors() throws {
    let text = bert("svd_whitened")
    let (manifest, _) = ManifestDecoder.decode(text: text, file: "test.yaml")
    let (resolved, _) = ModelResolver.resolve(
      try XCTUnwrap(manifest).model, needsWeights: true,
      workingDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
    let (result, diagnostics) = Rewriter.apply(
      try XCTUnwrap(manifest), to: try XCTUnwrap(resolved), initializes: true)
    XCTAssertNil(result)
    XCTAssertTrue(
      diagnostics.contains {
        $0.text.contains("init svd_whitened has no calibration inputs for")
      }, "\(diagnostics.map(\.text))")
    let vgg =
      header("vgg11", family: "vgg")
      + "  - lora: {layers: [conv], rank: 3, init: svd_whitened, conv_form: loralib, decay: {}}\n"
      + Self.imageTrain
    XCTAssertTrue(
      surgeryErrors(vgg).contains {
        $0.contains("init svd_whitened is not defined for conv_form loralib")
      }, "\(surgeryErrors(vgg))")
  }

  /// Without weights (validate, summary, the dry rewrite before a calibration) a budgeted rank
  /// is only a cap: layers narrower than it are no error, as the allocation would never exceed
  /// them; without a budget the same rank is refused.
  func testABudgetedRankIsOnlyACapBeforeTheWeightsAreRead() {
    let narrow =
      header("vgg11", family: "vgg").replacingOccurrences(
        of: "preset: vgg11\n",
        with:
          "preset: vgg11\n  config: {cfg: [4, M, 8, M, 8, 8], image_size: 16, num_classes: 3, classifier_hidden: [8], avgpool: null, dropout: 0.0}\n"
      )
    let budgeted =
      narrow
      + "  - lora: {layers: [conv], exclude: [features.0], rank: 64, init: svd_whitened, budget: {share: 0.5}, decay: {}}\n"
      + Self.imageTrain
    XCTAssertEqual(surgeryErrors(budgeted), [])
    let fixed = budgeted.replacingOccurrences(of: ", budget: {share: 0.5}", with: "")
    XCTAssertTrue(
      surgeryErrors(fixed).contains { $0.contains("rank 64 is not below min(in, out)") },
      "\(surgeryErrors(fixed))")
  }
}

import Manifest
import XCTest

/// surgeon's additions to format 1: `lora.budget` and `train.distill`.
final class AdditionKeyTests: XCTestCase {
  func testBudgetIsDecodedWithItsDefaults() throws {
    let rule = try firstLoRA(
      try valid(loraManifest("layers: query\nrank: 32\nbudget: {share: 0.125, floor: 4}")))
    XCTAssertEqual(rule.budget?.share, 0.125)
    XCTAssertEqual(rule.budget?.floor, 4)
    XCTAssertEqual(rule.budget?.location.lineColumn, "11:7")
    let defaulted = try firstLoRA(
      try valid(loraManifest("layers: query\nrank: 8\nbudget: {share: 0.5}")))
    XCTAssertEqual(defaulted.budget?.floor, 1)
    XCTAssertNil(try firstLoRA(try valid(loraManifest("layers: query\nrank: 8"))).budget)
  }

  func testBudgetRejections() {
    XCTAssertEqual(
      problems(loraManifest("layers: query\nrank: 8\nbudget: {share: 1.5, floor: 0, flor: 2}")),
      [
        "11:23: error: budget.share must be in (0, 1), not 1.5; use a number in (0, 1)",
        "11:35: error: budget.floor must be at least 1, not 0; use 1 or more",
        "11:38: error: unknown key 'flor' in lora.budget (did you mean 'floor'?)",
      ])
    XCTAssertEqual(
      problems(loraManifest("layers: query\nrank: 8\nbudget: {floor: 2}")),
      ["11:7: error: missing required key 'share' in lora.budget; add 'share: 0.12'"])
  }

  func testDistillIsDecodedWithItsDefaults() throws {
    let train = try XCTUnwrap(
      try valid(trainManifest("  distill: {teacher: checkpoints/full, features: 1.5}")).train)
    let distill = try XCTUnwrap(train.distill)
    XCTAssertEqual(distill.teacher.value, "checkpoints/full")
    XCTAssertEqual(distill.temperature, 2)
    XCTAssertEqual(distill.logits, 0.5)
    XCTAssertEqual(distill.features, 1.5)
    XCTAssertNil(try valid(trainManifest()).train?.distill)
  }

  func testDistillRejections() {
    XCTAssertEqual(
      problems(trainManifest("  distill: {temperature: 0, logits: 2, feature: 1}")),
      [
        "12:3: error: missing required key 'teacher' in train.distill; add 'teacher: checkpoints/my-full-fine-tune'",
        "12:26: error: train.distill.temperature must be > 0, not 0; use a number > 0",
        "12:37: error: train.distill.logits must be in [0, 1], not 2; use a number in [0, 1]",
        "12:40: error: unknown key 'feature' in train.distill (did you mean 'features'?)",
      ])
    XCTAssertEqual(
      problems(trainManifest("  distill: {teacher: t, logits: 0}")),
      [
        "12:3: warning: train.distill has logits: 0 and features: 0: the teacher is loaded but not used; set logits (e.g. 0.5) or features, or remove distill"
      ])
  }
}

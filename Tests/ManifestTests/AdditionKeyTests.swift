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
    XCTAssertEqual(distill.hiddenStates, 0)
    XCTAssertEqual(distill.attention, 0)
    XCTAssertNil(try valid(trainManifest()).train?.distill)
  }

  func testDeepDistillationKeysAreDecoded() throws {
    func distill(_ body: String) throws -> DistillSettings {
      try XCTUnwrap(try valid(trainManifest("  distill: {teacher: t, \(body)}")).train?.distill)
    }
    // The shorthand: every layer at weight 1.
    let shorthand = try distill("hidden_states: all, attention: 0.25")
    XCTAssertEqual(shorthand.hiddenStates, 1)
    XCTAssertEqual(shorthand.attention, 0.25)
    XCTAssertEqual(try distill("hidden_states: {layers: all, weight: 0.5}").hiddenStates, 0.5)
    XCTAssertEqual(try distill("hidden_states: {weight: 2}").hiddenStates, 2)
    XCTAssertEqual(try distill("hidden_states: {}").hiddenStates, 1)
    // Deep terms alone are a use of the teacher: no unused-teacher warning.
    XCTAssertEqual(problems(trainManifest("  distill: {teacher: t, logits: 0, attention: 1}")), [])
  }

  func testDeepDistillationRejections() {
    XCTAssertEqual(
      problems(
        trainManifest("  distill: {teacher: t, hidden_states: every, attention: -0.5, atention: 1}")
      ),
      [
        "12:40: error: train.distill.hidden_states must be all or {layers: all, weight: W}, not 'every'; write hidden_states: all (every layer, weight 1); for the last layer alone use features",
        "12:58: error: train.distill.attention must be >= 0, not -0.5; use a number >= 0",
        "12:64: error: unknown key 'atention' in train.distill (did you mean 'attention'?)",
      ])
    XCTAssertEqual(
      problems(trainManifest("  distill: {teacher: t, hidden_states: {layers: last, weight: -1}}")),
      [
        "12:49: error: train.distill.hidden_states.layers must be all, not 'last'; use layers: all (every layer); for the last layer alone use features",
        "12:63: error: train.distill.hidden_states.weight must be >= 0, not -1; use a number >= 0",
      ])
    XCTAssertEqual(
      problems(trainManifest("  distill: {teacher: t, hidden_states: [all]}")),
      [
        "12:40: error: train.distill.hidden_states must be all or {layers: all, weight: W}, not a list; write hidden_states: all (every layer, weight 1); for the last layer alone use features"
      ])
    XCTAssertEqual(
      problems(trainManifest("  distill: {teacher: t, logits: 0, hidden_states: {weight: 0}}")),
      [
        "12:3: warning: train.distill gives every term weight 0 (logits, features, hidden_states, attention): the teacher is loaded but not used; set logits (e.g. 0.5), features, hidden_states or attention, or remove distill"
      ])
    let vgg = """
      surgeon: 1
      name: t
      model: {family: vgg, preset: vgg11, weights: random}
      train:
        task: image-classification
        data: {train: {format: idx, images: a.gz, labels: b.gz}}
        steps: 10
        distill: {teacher: t, hidden_states: all, attention: 0}
      """
    XCTAssertEqual(
      problems(vgg),
      [
        "8:45: error: train.distill.attention distils attention scores, and a vgg model has none; remove attention, or distil the stages with hidden_states: all"
      ])
    XCTAssertEqual(problems(vgg.replacingOccurrences(of: ", attention: 0", with: "")), [])
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
        "12:3: warning: train.distill gives every term weight 0 (logits, features, hidden_states, attention): the teacher is loaded but not used; set logits (e.g. 0.5), features, hidden_states or attention, or remove distill"
      ])
  }
}

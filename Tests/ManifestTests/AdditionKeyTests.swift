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

  func testAugmentAndUnlabeledAreDecodedWithTheirDefaults() throws {
    let manifest = try valid(
      trainManifest(
        """
          distill:
            teacher: checkpoints/full
            augment: {edits: [delete, swap, mask, synonym], thesaurus: data/roget.csv}
            unlabeled: {format: csv, path: data/plots.csv, text: text, group_by: movie_name,
                        batch_size: 8, weight: 0.5}
        """, data: "    split: {group_by: movie_name}\n"))
    let distill = try XCTUnwrap(manifest.train?.distill)
    let augment = try XCTUnwrap(distill.augment)
    XCTAssertEqual(augment.edits.map(\.value), [.delete, .swap, .mask, .synonym])
    XCTAssertEqual(augment.edits.map(\.location.lineColumn), ["15:23", "15:31", "15:37", "15:43"])
    XCTAssertEqual(augment.rate, 0.1)
    XCTAssertEqual(augment.copies, 1)
    XCTAssertEqual(augment.seed, 0)
    XCTAssertEqual(augment.thesaurus?.value, "data/roget.csv")
    XCTAssertEqual(augment.batch, ExtraBatch(batchSize: nil, weight: 1))
    let unlabeled = try XCTUnwrap(distill.unlabeled)
    XCTAssertEqual(unlabeled.format, .csv)
    XCTAssertEqual(unlabeled.path.value, "data/plots.csv")
    XCTAssertEqual(unlabeled.textColumn, "text")
    XCTAssertEqual(unlabeled.groupBy?.value, "movie_name")
    XCTAssertEqual(unlabeled.batch, ExtraBatch(batchSize: 8, weight: 0.5))
    // Images take their own edits and settings.
    let images = try valid(
      modelHead.replacingOccurrences(of: "bert-tiny", with: "vgg11").replacingOccurrences(
        of: "family: bert", with: "family: vgg")
          + """
          train:
            task: image-classification
            data:
              train: {format: idx, images: i.gz, labels: l.gz}
            steps: 10
            distill:
              teacher: t
              augment: {edits: [flip, crop, noise], copies: 3, seed: 7, pad: 4, noise: 0.1}

          """)
    let imageAugment = try XCTUnwrap(images.train?.distill?.augment)
    XCTAssertEqual(imageAugment.edits.map(\.value), [.flip, .crop, .noise])
    XCTAssertEqual(imageAugment.copies, 3)
    XCTAssertEqual(imageAugment.seed, 7)
    XCTAssertEqual(imageAugment.pad, 4)
    XCTAssertEqual(imageAugment.noise, 0.1)
  }

  func testAugmentAndUnlabeledRejections() {
    XCTAssertEqual(
      problems(
        trainManifest(
          "  distill: {teacher: t, augment: {edits: [delete, flip, delete, synonym], rate: 0,"
            + " pad: 2, weight: 0}}")),
      [
        "12:51: error: the flip edit applies to images, and train.task is text-classification; use delete, swap, mask, synonym",
        "12:57: error: train.distill.augment.edits lists delete twice; list it once",
        "12:81: error: train.distill.augment.rate must be in (0, 1], not 0; use a number in (0, 1]",
        "12:84: error: train.distill.augment.pad applies to images, and train.task is text-classification; remove pad",
        "12:100: error: train.distill.augment.weight must be > 0, not 0; use a number > 0",
      ])
    XCTAssertEqual(
      problems(trainManifest("  distill: {teacher: t, augment: {edits: [swap, synonym]}}")),
      [
        "12:49: error: the synonym edit needs train.distill.augment.thesaurus, the file its synonyms come from; add thesaurus: data/roget.csv (Scripts/fetch-rotten-tomatoes.sh writes it)"
      ])
    XCTAssertEqual(
      problems(trainManifest("  distill: {augment: {edits: [mask]}}")),
      [
        "12:13: error: train.distill.augment needs train.distill.teacher: the student learns the teacher's soft labels on these examples; add teacher: checkpoints/my-full-fine-tune (a full fine-tuning run's output.dir)"
      ])
    XCTAssertEqual(
      problems(
        trainManifest("  distill: {teacher: t, unlabeled: {format: idx, path: p, group_by: g}}")),
      [
        "12:25: error: missing required key 'text' in train.distill.unlabeled; add 'text: text'",
        "12:45: error: train.distill.unlabeled.format must be csv, tsv or jsonl: unlabeled examples are texts",
      ])
    XCTAssertEqual(
      problems(
        trainManifest(
          "  distill: {teacher: t, unlabeled: {format: csv, path: p, text: t, group_by: g}}")),
      [
        "12:78: error: train.distill.unlabeled.group_by drops the rows of validation and test groups, but train.data.split has no group_by; add group_by to train.data.split, or remove it here"
      ])
    XCTAssertEqual(
      problems(
        trainManifest(
          "  distill: {teacher: t, unlabeled: {format: csv, path: p, text: t}}",
          data: "    split: {group_by: movie}\n")),
      [
        "13:25: warning: train.data.split keeps movie groups apart, but train.distill.unlabeled has no group_by: its rows cannot be checked against the validation and test groups; add group_by: COLUMN naming the unlabeled file's movie column"
      ])
  }
}

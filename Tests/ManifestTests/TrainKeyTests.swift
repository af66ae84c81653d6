import Manifest
import XCTest

/// `train` and `output`. In `trainManifest`, `train:` is line 7, `data.train` line 10, extra
/// data lines start on line 11, then `steps` and the extra train lines.
final class TrainKeyTests: XCTestCase {
  func train(
    _ extra: String = "", data: String = "", file: StaticString = #filePath, line: UInt = #line
  )
    throws -> TrainSection
  {
    try XCTUnwrap(try valid(trainManifest(extra, data: data), file: file, line: line).train)
  }

  func testTrainKeys() throws {
    let section = try train(
      "  batch_size: 65536\n  eval_every: 25\n  seed: 7\n"
        + "  optimizer: {name: adamw, lr: 5e-5, weight_decay: 0.01, warmup: 0.1}\n")
    XCTAssertEqual(section.location.lineColumn, "7:1")
    XCTAssertEqual(section.task.location.lineColumn, "8:9")
    XCTAssertEqual(
      section.steps, Located(100, at: SourceLocation(file: "m.yaml", line: 11, column: 10)))
    XCTAssertEqual(section.batchSize.value, 65_536)
    XCTAssertEqual(section.batchSize.location.lineColumn, "12:15")
    XCTAssertEqual(section.evalEvery.value, 25)
    XCTAssertEqual(section.seed, 7)
    XCTAssertEqual(
      section.optimizer,
      OptimizerSettings(name: "adamw", learningRate: 5e-5, weightDecay: 0.01, warmup: 0.1))
  }

  func testTrainRejections() {
    XCTAssertEqual(
      problems(trainManifest("  batch_size: 0\n  eval_every: 0\n  seed: x\n  epochs: 3\n")),
      [
        "12:15: error: train.batch_size must be from 1 to 65536, not 0; use a value from 1 to 65536",
        "13:15: error: train.eval_every must be at least 1, not 0; use 1 or more",
        "14:9: error: train.seed must be an integer, not 'x'",
        "15:3: error: unknown key 'epochs' in train; train takes task, data, steps, batch_size, "
          + "optimizer, eval_every, seed, distill",
      ])
    XCTAssertEqual(
      problems(trainManifest().replacingOccurrences(of: "steps: 100", with: "steps: many")),
      ["11:10: error: train.steps must be an integer, not 'many'"])
    XCTAssertEqual(
      problems(modelHead + "train:\n  task: classification\n  steps: 1\n"),
      [
        "7:1: error: missing required key 'data' in train; add 'data: {train: {...}}'",
        "8:9: error: train.task must be text-classification or image-classification, not "
          + "'classification'",
      ])
    XCTAssertEqual(
      problems(modelHead + "train: [steps]\n"),
      ["7:8: error: train must be a mapping of keys, not a list"])
  }

  func testOptimizerRejections() {
    XCTAssertEqual(
      problems(
        trainManifest(
          "  optimizer: {name: sgd, learning_rate: 0.1, weight_decay: -0.1, warmup: 1}\n")),
      [
        "12:21: error: train.optimizer.name must be adamw, not 'sgd'; this surgeon trains with "
          + "adamw only",
        "12:26: error: unknown key 'learning_rate' in train.optimizer (did you mean 'lr'?)",
        "12:60: error: train.optimizer.weight_decay must be >= 0, not -0.1; use a number >= 0",
        "12:74: error: train.optimizer.warmup must be in [0, 1), not 1; use a number in [0, 1)",
      ])
  }

  func testImageData() throws {
    let text = """
      surgeon: 1
      name: fashion
      model: {family: vgg, preset: vgg11-bn, weights: random}
      train:
        task: image-classification
        data:
          train: {format: idx, images: data/train-images-idx3-ubyte.gz, labels: data/train-labels-idx1-ubyte.gz}
          test:
            format: idx
            images: data/t10k-images-idx3-ubyte
            labels: data/t10k-labels-idx1-ubyte
        steps: 10

      """
    let data = try XCTUnwrap(try valid(text).train?.data)
    XCTAssertEqual(
      data.train.value,
      .images(
        imagesPath: "data/train-images-idx3-ubyte.gz", labelsPath: "data/train-labels-idx1-ubyte.gz"
      ))
    XCTAssertEqual(data.train.location.lineColumn, "7:12")
    XCTAssertEqual(
      data.test?.value,
      .images(imagesPath: "data/t10k-images-idx3-ubyte", labelsPath: "data/t10k-labels-idx1-ubyte"))
    XCTAssertEqual(data.test?.location.lineColumn, "9:7")
    XCTAssertEqual(data.split.test, 0)
  }

  func testTableFormats() throws {
    for format in ["csv", "tsv", "jsonl"] {
      let data = "    test: {format: \(format), path: t.\(format), text: review, label: stars}\n"
      let section = try train(data: data)
      XCTAssertEqual(
        section.data.test?.value,
        .table(
          format: DataFormat(rawValue: format) ?? .csv, path: "t.\(format)", textColumn: "review",
          labelColumn: "stars"))
    }
  }

  func testDataSourceRejections() {
    XCTAssertEqual(
      problems(trainManifest(data: "    test: {format: parquet, path: t}\n")),
      [
        "11:20: error: train.data.test.format must be csv, tsv, jsonl or idx, not 'parquet'"
      ])
    XCTAssertEqual(
      problems(trainManifest(data: "    test: {path: t, text: a, label: b}\n")),
      ["11:5: error: missing required key 'format' in train.data.test; add 'format: csv'"])
    XCTAssertEqual(
      problems(
        trainManifest(data: "    test: {format: csv, path: t, text: a, label: b, images: i}\n")),
      [
        "11:53: error: unknown key 'images' in train.data.test for format csv; format csv takes "
          + "format, path, text, label"
      ])
    XCTAssertEqual(
      problems(trainManifest(data: "    test: {format: idx, images: i, labels: l}\n")),
      [
        "11:20: error: format idx holds images; train.task text-classification reads csv, tsv "
          + "or jsonl; use format: csv, tsv or jsonl with text and label columns"
      ])
    XCTAssertEqual(
      problems(
        trainManifest(data: "    test: {format: csv, path: '', text: \"a\\tb\", label: b}\n")),
      [
        "11:31: error: train.data.test.path must not be empty",
        "11:41: error: train.data.test.text contains a control character; remove it",
      ])
    XCTAssertEqual(
      problems(modelHead + "train:\n  task: text-classification\n  data: {}\n  steps: 1\n"),
      [
        "9:3: error: missing required key 'train' in train.data; add 'train: {format: csv, path: PATH, ...}'"
      ])
  }

  func testLabels() throws {
    let labels = try train(data: "    labels: [0, 1, 'two', true]\n").data.labels
    XCTAssertEqual(labels?.map(\.value), ["0", "1", "two", "true"], "labels are strings")
    XCTAssertEqual(labels?.map(\.location.lineColumn), ["11:14", "11:17", "11:20", "11:27"])
    XCTAssertEqual(
      problems(trainManifest(data: "    labels: [only]\n")),
      [
        "11:13: error: train.data.labels needs at least 2 labels, not 1; list every label of the "
          + "task, or omit labels (sorted unique values)"
      ])
    XCTAssertEqual(
      problems(trainManifest(data: "    labels: fresh\n")),
      [
        "11:13: error: train.data.labels must be a list of labels, not 'fresh'; for example: "
          + "labels: [negative, positive]"
      ])
    XCTAssertEqual(
      problems(trainManifest(data: "    labels: [a, b, a, a]\n")),
      [
        "11:20: error: label 'a' is listed twice (first at 11:14); list each label once",
        "11:23: error: label 'a' is listed twice (first at 11:14); list each label once",
      ])
  }

  func testSplit() throws {
    let split = try train(
      data: "    split: {validation: 0, test: 0.5, group_by: movie_name, seed: 3}\n"
    ).data.split
    XCTAssertEqual(split, SplitSettings(validation: 0, test: 0.5, groupBy: "movie_name", seed: 3))
    XCTAssertEqual(
      problems(trainManifest(data: "    split: {validation: 1, group: x}\n")),
      [
        "11:25: error: train.data.split.validation must be in [0, 1), not 1; use a number in [0, 1)",
        "11:28: error: unknown key 'group' in train.data.split (did you mean 'group_by'?)",
      ])
  }

  func testMaxLength() throws {
    XCTAssertEqual(try train(data: "    max_length: 4096\n").data.maxLength.value, 4096)
    XCTAssertEqual(
      try train(data: "    max_length: 2\n").data.maxLength.location.lineColumn, "11:17")
    XCTAssertEqual(
      problems(trainManifest(data: "    max_length: 5000\n")),
      [
        "11:17: error: train.data.max_length must be from 2 to 4096, not 5000; use a value from 2 "
          + "to 4096"
      ])
  }
}

/// `output`: lines 7 on in a manifest of `modelHead` + output.
final class OutputKeyTests: XCTestCase {
  func output(_ body: String, file: StaticString = #filePath, line: UInt = #line) throws
    -> OutputSection
  {
    try valid(modelHead + "output:\n" + body, file: file, line: line).output
  }

  func testAcceptedDirectories() throws {
    // "." is refused (Fixtures/bad/output-dir-dot.yaml): --overwrite would delete the working
    // directory itself.
    // Absolute directories are scratch disks; only '..' and the root stay refused.
    for directory in ["runs/a", "./runs", "checkpoints/t/", "a..b/c", "./runs/.", "/scratch/run"] {
      XCTAssertEqual(try output("  dir: \(directory)\n").directory.value, directory)
    }
    XCTAssertEqual(try output("  dir: runs\n").directory.location.lineColumn, "8:8")
  }

  func testTheDefaultDirectoryIsPlacedAtTheOutputKey() throws {
    let section = try output("  compress: false\n")
    XCTAssertEqual(section.directory.value, "checkpoints/t")
    XCTAssertEqual(section.directory.location.lineColumn, "7:1")
  }

  func testDirectoriesThatLeaveTheWorkingDirectory() {
    let outside = "output.dir must stay inside the working directory"
    XCTAssertEqual(
      problems(modelHead + "output:\n  dir: ..\n"),
      ["8:8: error: \(outside); remove the '..' (for example: checkpoints/NAME)"])
    XCTAssertEqual(
      problems(modelHead + "output:\n  dir: a/b/../../..\n"),
      ["8:8: error: \(outside); remove the '..' (for example: checkpoints/NAME)"])
    XCTAssertEqual(
      problems(modelHead + "output:\n  dir: ~/runs\n"),
      [
        "8:8: error: output.dir is not expanded by a shell, so '~' would be a directory named '~'; write the absolute path (/home/NAME/...) or a relative one"
      ])
    XCTAssertEqual(
      problems(modelHead + "output:\n  dir: /scratch/a/../b\n"),
      ["8:8: error: output.dir may not contain '..'; write the directory without '..'"])
    XCTAssertEqual(
      problems(modelHead + "output:\n  dir: //\n"),
      ["8:8: error: output.dir cannot be the root directory; for example: checkpoints/NAME"])
    XCTAssertEqual(
      problems(modelHead + "output:\n  dir: \"runs\\x01\"\n"),
      ["8:8: error: output.dir contains a control character; remove it"])
  }

  func testCompressAndCheckpointEvery() throws {
    let manifest = try valid(
      modelHead + "surgery:\n  - lora: {layers: q, rank: 2, decay: {}}\n" + """
        train:
          task: text-classification
          data: {train: {format: jsonl, path: d.jsonl, text: text, label: label}}
          steps: 100
        output: {compress: True, checkpoint_every: 10}

        """)
    XCTAssertTrue(manifest.output.compress)
    XCTAssertEqual(manifest.output.checkpointEvery?.value, 10)
    XCTAssertNil(try output("  checkpoint_every: null\n").checkpointEvery)
    XCTAssertEqual(
      problems(modelHead + "output:\n  compress: 'true'\n  checkpoint_every: 0\n"),
      [
        "8:13: error: output.compress must be true or false, not the string 'true'",
        "9:21: error: output.checkpoint_every must be at least 1, not 0; use 1 or more",
      ])
  }

  func testCompressWithoutALoRARuleIsAWarning() throws {
    let result = decode(modelHead + "output:\n  compress: true\n")
    XCTAssertNotNil(result.manifest)
    XCTAssertEqual(
      result.diagnostics.map(\.text),
      [
        "m.yaml:8:13: warning: output.compress has nothing to compress: no lora rule; add a lora "
          + "rule with decay, or remove compress"
      ])
  }

  func testCompressIsNotBlamedForABrokenTrainOrSurgerySection() {
    let brokenSurgery = trainManifest().replacingOccurrences(
      of: "train:\n", with: "surgery:\n  - lora: {layers: q, rank: 0, decay: {}}\ntrain:\n")
    XCTAssertEqual(
      problems(brokenSurgery + "output: {compress: true}\n"),
      ["8:29: error: rank must be at least 1, not 0; use 1 or more"])
    let brokenTrain =
      modelHead + """
        surgery:
          - lora: {layers: q, rank: 2, decay: {}}
        train: {task: text-classification, steps: 0, data: {train: {format: csv, path: a, text: t, label: l}}}
        output: {compress: true}

        """
    XCTAssertEqual(
      problems(brokenTrain), ["9:43: error: train.steps must be at least 1, not 0; use 1 or more"])
  }

  func testCheckpointEveryBeyondTheStepsIsAWarning() {
    XCTAssertEqual(
      problems(trainManifest() + "output: {checkpoint_every: 1000}\n"),
      [
        "12:28: warning: output.checkpoint_every 1000 is more than train.steps 100: no training "
          + "state is saved before the end"
      ])
  }
}

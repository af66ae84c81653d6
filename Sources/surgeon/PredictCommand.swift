import Datasets
import Foundation
import Models
import Plumbing
import Prediction

enum PredictCommand: Command {
  static let usage = """
    Usage: surgeon predict CHECKPOINT --input FILE [--format csv|tsv|jsonl|idx] [--text COLUMN]
                           [--label COLUMN] [--labels FILE] [--out FILE] [--batch-size N]
                           [--max-length N] [--progress auto|bar|lines|none]

    Classifies every example of FILE with CHECKPOINT (dense, rewritten with adapters at its saved
    d, or W-free compressed): texts through the checkpoint's vocab.txt, IDX images as the
    checkpoint's config.json sizes them. Writes one JSON line per example,
    {"row": n, "label": name, "probabilities": {name: p, ...}} (n counts examples from 1, in
    the input's order), or CSV rows (row,label,<one column per class>) when --out ends in .csv.
    Label names are config.json's. When the input has the label column (--labels for IDX),
    prints the accuracy. Nothing is written when the input does not fit the checkpoint.

    Options:
      --input FILE      the examples; - reads standard input
      --format F        csv, tsv, jsonl or idx (default: from the file name; csv for -)
      --text COLUMN     the text column or JSON field (default text)
      --label COLUMN    the label column; used when present (default label)
      --labels FILE     IDX labels of the images (optional)
      --out FILE        write here (atomically) instead of standard output
      --batch-size N    examples per forward pass (default 32)
      --max-length N    tokens per text, [CLS] and [SEP] included (default: the manifest's
                        max_length recorded in the checkpoint, else the model's positions)
      --progress P      bar, lines, none; auto (default): a bar on a terminal, else lines
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(
      arguments,
      options: [
        "input", "format", "text", "label", "labels", "out", "batch-size", "max-length",
        "progress",
      ], flags: [])
    guard parsed.positionals.count == 1 else {
      throw UsageError(message: "give exactly one CHECKPOINT directory")
    }
    guard let input = parsed.value("input") else {
      throw UsageError(message: "--input FILE is required (- reads standard input)")
    }
    let batchSize = try parsed.integer("batch-size", in: 1...65_536) ?? 32
    let maxLength = try parsed.integer("max-length", in: 2...1_000_000)
    let progressMode = parsed.value("progress") ?? "auto"
    guard ["auto", "bar", "lines", "none"].contains(progressMode) else {
      throw UsageError(message: "--progress must be auto, bar, lines or none")
    }
    let format: PredictionFormat
    if let name = parsed.value("format") {
      guard let given = PredictionFormat(rawValue: name) else {
        throw UsageError(message: "--format must be csv, tsv, jsonl or idx, not '\(name)'")
      }
      format = given
    } else if input == "-" {
      format = .csv
    } else if let implied = PredictionFormat.implied(byName: input) {
      format = implied
    } else {
      throw UsageError(
        message:
          "cannot tell the format of '\(input)' from its name; pass --format csv|tsv|jsonl|idx")
    }
    if parsed.value("labels") != nil && format != .idx {
      throw UsageError(message: "--labels FILE is for IDX images; tables name a --label column")
    }
    let path = input == "-" ? "/dev/stdin" : input
    let shown = input == "-" ? "<stdin>" : input

    let checkpoint = try loadCheckpoint(URL(fileURLWithPath: parsed.positionals[0]))
    let predictor: Predictor
    let examples: PredictionInput
    do {
      predictor = try Predictor(checkpoint: checkpoint, maxLength: maxLength)
      let directory = checkpoint.directory.path
      switch (format, predictor.imageShape) {
      case (.idx, let shape?):
        examples = try PredictionReader.readImages(
          path: path, name: shown, labelsPath: parsed.value("labels"), imageShape: shape,
          classCount: predictor.labelNames.count, checkpoint: directory)
      case (.idx, nil):
        throw CommandError(
          message:
            "\(shown): error: IDX images are for VGG checkpoints, and \(directory) is a BERT; pass a CSV, TSV or JSON Lines table of texts"
        )
      case (_, _?):
        throw CommandError(
          message:
            "\(shown): error: \(directory) is a VGG checkpoint, which classifies images; pass an IDX images file (--format idx)"
        )
      case (let table, nil):
        examples = try PredictionReader.readTexts(
          path: path, name: shown, format: TableFormat(rawValue: table.rawValue)!,
          textColumn: parsed.value("text") ?? "text", labelColumn: parsed.value("label") ?? "label",
          labelNames: predictor.labelNames, checkpoint: directory)
      }
    } catch let error as PredictionError {
      throw CommandError(message: error.description)
    } catch let error as DatasetError {
      throw CommandError(message: error.description)
    }

    let outPath = parsed.value("out")
    var writer = PredictionWriter(
      format: PredictionOutputFormat(fileName: outPath), labelNames: predictor.labelNames)
    var sink = try OutputSink(path: outPath)
    let progress = Progress(total: examples.count, mode: progressMode)
    let started = Date()
    do {
      try sink.write(writer.header)
      var start = 0
      while start < examples.count {
        let rows = start..<min(examples.count, start + batchSize)
        let probabilities = try predictor.probabilities(of: examples, rows: rows)
        try sink.write(
          writer.lines(probabilities, firstRow: start + 1, labels: examples.labels?[rows]))
        start = rows.upperBound
        progress.update(
          done: start, unit: "examples", detail: "batch \((start + batchSize - 1) / batchSize)",
          label: "examples")
      }
      try sink.commit()
    } catch let error as PredictionError {
      sink.discard()
      throw CommandError(message: "\(shown): \(error.description)")
    } catch {
      sink.discard()
      throw error
    }
    progress.finish()
    let seconds = Date().timeIntervalSince(started)
    var summary = String(
      format: "predicted %d examples in %.2f s (%.1f examples/s)", examples.count, seconds,
      Double(examples.count) / max(seconds, 1e-9))
    if let accuracy = writer.accuracy {
      summary += String(
        format: "; accuracy %.4f (%d of %d)", accuracy, writer.correct, writer.labelled)
    }
    if let outPath { summary += "; wrote \(outPath)" }
    // Standard output carries the predictions unless --out took them.
    if outPath == nil { printError(summary) } else { print(summary) }
  }
}

/// Standard output, or a file written beside its final name and renamed in at the end, so that
/// a failed run leaves no partial file.
struct OutputSink {
  private var file: DurableFile?
  private var buffered = ""

  init(path: String?) throws {
    guard let path else { return }
    let target = URL(fileURLWithPath: path)
    let directory = target.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory),
      isDirectory.boolValue
    else {
      throw CommandError(
        message:
          "\(path): error: the directory \(directory.path) does not exist; create it or choose another --out"
      )
    }
    do {
      file = try DurableFile(replacing: target)
    } catch {
      throw CommandError(
        message: "\(path): error: cannot write in \(directory.path); check its permissions")
    }
  }

  mutating func write(_ text: String) throws {
    guard !text.isEmpty else { return }
    guard let file else {
      print(text, terminator: "")
      return
    }
    buffered += text
    if buffered.utf8.count >= 1 << 16 { try flush(file) }
  }

  private mutating func flush(_ file: DurableFile) throws {
    do {
      try file.write(Data(buffered.utf8))
    } catch {
      throw CommandError(message: "\(file.url.path): error: cannot write: \(error.reason)")
    }
    buffered = ""
  }

  mutating func commit() throws {
    guard let file else { return }
    try flush(file)
    do {
      try file.commit()
    } catch {
      throw CommandError(
        message: "\(file.url.path): error: cannot move the predictions into place: \(error.reason)")
    }
    self.file = nil
  }

  mutating func discard() {
    file?.discard()
    file = nil
  }
}

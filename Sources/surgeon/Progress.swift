import Foundation
import Training

/// A progress bar with a count, details, a rate and ETA on a terminal; plain lines otherwise
/// (every 10 s and at the end). Training shows step, loss and d; prediction examples.
final class Progress {
  let total: Int
  let bar: Bool
  let quiet: Bool
  let start = Date()
  let startStep: Int
  var lastLine = Date.distantPast
  var drawn = false

  init(total: Int, mode: String, startStep: Int = 0) {
    self.total = total
    self.startStep = startStep
    quiet = mode == "none"
    bar = mode == "bar" || (mode == "auto" && isatty(2) == 1)
  }

  /// A training step.
  func update(_ record: StepRecord) {
    update(
      done: record.step, unit: "it",
      detail: String(
        format: "loss %.4f  d %.2f%@", record.loss, record.decay, record.noise ? "  noise" : ""),
      label: "step")
  }

  /// `done` of `total` (`label` names the count in plain lines, `unit` the rate).
  func update(done: Int, unit: String, detail: String, label: String) {
    guard !quiet else { return }
    let elapsed = Date().timeIntervalSince(start)
    let rate = elapsed > 0 ? Double(done - startStep) / elapsed : 0
    let remaining = rate > 0 ? Double(total - done) / rate : 0
    let eta = String(format: "%d:%02d", Int(remaining) / 60, Int(remaining) % 60)
    let rateText = String(format: "%.2f \(unit)/s", rate)
    if bar {
      let width = 30
      let filled = width * done / max(1, total)
      let line =
        "[" + String(repeating: "█", count: filled)
        + String(repeating: "·", count: width - filled) + "] "
        + "\(done)/\(total) \(detail.replacingOccurrences(of: "  ", with: " ")) \(rateText) ETA \(eta)"
      writeStandardError("\r\u{1B}[K" + line)
      drawn = true
    } else if Date().timeIntervalSince(lastLine) >= 10 || done == total {
      lastLine = Date()
      printError("\(label) \(done)/\(total)  \(detail)  \(rateText)  ETA \(eta)")
    }
  }

  /// A validation evaluation after a training step.
  func note(_ evaluation: EvaluationRecord, after record: StepRecord) {
    note(
      String(
        format: "step %d: validation accuracy %.3f with W (d %.2f), %.3f W-free; loss %.4f",
        record.step, evaluation.accuracy, record.decay, evaluation.exportedAccuracy, record.loss))
  }

  func note(_ message: String) {
    guard !quiet else { return }
    if bar && drawn { writeStandardError("\r\u{1B}[K") }
    printError(message)
  }

  func finish() {
    if bar && drawn { writeStandardError("\n") }
  }
}

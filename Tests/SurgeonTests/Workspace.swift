import Foundation
import Tensor

/// A fresh temporary directory holding `checkpoints/tiny-bert` (the fixture) and `tiny.csv`:
/// `count` seeded snippets of random letters, labelled "yes" exactly when the word "a" is in the
/// text (every second row), with a `group` column (`g0` … `g11`) when `groups`, the text quoted
/// when `quotesText`. The caller removes it.
func makeTinyBertWorkspace(
  prefix: String, seed: UInt64, rows count: Int, extraWords: Int, groups: Bool,
  quotesText: Bool = true
) throws -> URL {
  let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  let workspace = FileManager.default.temporaryDirectory.appendingPathComponent(
    "\(prefix)-\(UUID().uuidString)")
  try FileManager.default.createDirectory(
    at: workspace.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
  try FileManager.default.copyItem(
    at: fixtures.appendingPathComponent("tiny-bert"),
    to: workspace.appendingPathComponent("checkpoints/tiny-bert"))
  var random = RandomStream(seed: seed)
  var rows = [groups ? "text,label,group" : "text,label"]
  let letters = "bcdefghijklmnopqrstuvwxyz".map(String.init)
  for index in 0..<count {
    var words = (0..<(3 + random.nextInt(below: extraWords))).map { _ in
      letters[random.nextInt(below: 25)]
    }
    let positive = index % 2 == 0
    if positive { words.insert("a", at: random.nextInt(below: words.count)) }
    let text = words.joined(separator: " ")
    var row = (quotesText ? "\"\(text)\"" : text) + "," + (positive ? "yes" : "no")
    if groups { row += ",g\(index % 12)" }
    rows.append(row)
  }
  try (rows.joined(separator: "\n") + "\n").write(
    to: workspace.appendingPathComponent("tiny.csv"), atomically: true, encoding: .utf8)
  return workspace
}

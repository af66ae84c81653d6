import Datasets
import Foundation
import Models

enum TokenizeCommand: Command {
  static let usage = """
    Usage: surgeon tokenize CHECKPOINT < texts.jsonl

    Reads one JSON string per line from standard input and writes one JSON array of token ids
    per line: [CLS] … [SEP], no truncation, with CHECKPOINT/vocab.txt (uncased WordPiece).
    """

  static func run(_ arguments: [String]) throws {
    let parsed = try Arguments(arguments, options: [], flags: [])
    guard parsed.positionals.count == 1 else {
      throw UsageError(message: "give exactly one CHECKPOINT directory")
    }
    let vocabulary = URL(fileURLWithPath: parsed.positionals[0]).appendingPathComponent(
      "vocab.txt")
    let tokenizer: WordPieceTokenizer
    do {
      tokenizer = try WordPieceTokenizer(vocabularyFile: vocabulary)
    } catch {
      throw CommandError(message: error.description)
    }
    var lineNumber = 0
    var output = ""
    while let line = readLine(strippingNewline: true) {
      lineNumber += 1
      if line.allSatisfy(\.isWhitespace) { continue }
      guard
        let text = try? JSONSerialization.jsonObject(
          with: Data(line.utf8), options: [.fragmentsAllowed]) as? String
      else {
        throw CommandError(
          message:
            "<stdin>:\(lineNumber): error: the line is not a JSON string; write each text as \"...\" on its own line"
        )
      }
      output += "[" + tokenizer.encode(text).map(String.init).joined(separator: ",") + "]\n"
      if output.utf8.count > 1 << 16 {
        print(output, terminator: "")
        output = ""
      }
    }
    print(output, terminator: "")
  }
}

import Datasets
import Foundation

/// A small BERT vocabulary: the special tokens, some words and continuations, accents and CJK.
let fixedVocabulary = [
  "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "film", "is", "un", "##want",
  "##ed", "want", ",", ".", "!", "'", "s", "##s", "cafe", "caf", "##e", "naive", "中", "国",
  "##ing", "runn", "run", "ü", "##ü", "x", "##x", "123", "##4",
]
let uncased = try! WordPieceTokenizer(vocabulary: fixedVocabulary, lowercase: true)
let cased = try! WordPieceTokenizer(vocabulary: fixedVocabulary, lowercase: false)

/// The WordPiece tokenizer. First byte bit 0: cased or uncased; bit 1: the vocabulary is the
/// input's lines before the first NUL byte (plus the special tokens), the text what follows.
/// Encoding must never trap and must keep its contract: [CLS] first, [SEP] last, ids in range.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = Array(bytes(data, size))
  let mode = input.first ?? 0
  var body = input.dropFirst()
  var tokenizer = mode & 1 == 0 ? uncased : cased
  if mode & 2 != 0, let split = body.firstIndex(of: 0) {
    let lines = String(decoding: body[..<split], as: UTF8.self).split(
      separator: "\n", omittingEmptySubsequences: false
    ).map(String.init)
    do {
      tokenizer = try WordPieceTokenizer(
        vocabulary: ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + lines, lowercase: mode & 1 == 0)
    } catch {
      abort()
    }
    body = body[(split + 1)...]
  }
  let text = String(decoding: body, as: UTF8.self)
  let ids = tokenizer.encode(text)
  guard ids.first == tokenizer.classifierTokenID, ids.last == tokenizer.separatorTokenID,
    ids.allSatisfy({ $0 >= 0 && Int($0) < tokenizer.vocabularySize })
  else { abort() }
  _ = tokenizer.tokens(text)
  let batch = tokenizer.encodeBatch([text, ""], maxLength: 2 + Int(mode >> 2))
  guard batch.inputIDs.count == 2 * (2 + Int(mode >> 2)) else { abort() }
  return 0
}

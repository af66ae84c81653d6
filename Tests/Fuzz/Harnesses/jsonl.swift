import Datasets
import Foundation

/// The JSON Lines reader (first byte: whether a group column is asked for and whether `labels`
/// is given); any input is a table or a DatasetError naming the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONLines(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = bytes(data, size)
  let mode = input.first ?? 0
  let path = scratchFile("fuzz.jsonl", UnsafeRawBufferPointer(rebasing: input.dropFirst()))
  do {
    _ = try TableReader.read(
      path: path, format: .jsonl, textColumn: "text", labelColumn: "label",
      groupColumn: mode & 1 == 0 ? nil : "group", labels: mode & 2 == 0 ? nil : ["0", "1"])
  } catch {
    if error.description.isEmpty { abort() }
  }
  return 0
}

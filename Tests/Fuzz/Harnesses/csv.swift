import Datasets
import Foundation

/// The CSV and TSV reader (first byte: the format, then whether a group column is asked for and
/// whether `labels` is given); any input is a table or a DatasetError naming the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = bytes(data, size)
  let mode = input.first ?? 0
  let rest = UnsafeRawBufferPointer(rebasing: input.dropFirst())
  let path = scratchFile(mode & 1 == 0 ? "fuzz.csv" : "fuzz.tsv", rest)
  do {
    _ = try TableReader.read(
      path: path, format: mode & 1 == 0 ? .csv : .tsv, textColumn: "text",
      labelColumn: "label", groupColumn: mode & 2 == 0 ? nil : "group",
      labels: mode & 4 == 0 ? nil : ["neg", "pos"])
  } catch {
    if error.description.isEmpty { abort() }
  }
  return 0
}

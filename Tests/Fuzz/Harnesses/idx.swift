import Datasets
import Foundation

/// The IDX reader, plain and gzip (a .gz name or the gzip magic): the input is read as an images
/// file and as a labels file (first byte: plain or .gz name).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = bytes(data, size)
  let mode = input.first ?? 0
  let name = mode & 1 == 0 ? "fuzz-idx" : "fuzz-idx.gz"
  let path = scratchFile(name, UnsafeRawBufferPointer(rebasing: input.dropFirst()))
  do {
    let images = try IDXReader.readImages(path: path)
    if images.shape.count != 4 { abort() }
  } catch {
    if error.description.isEmpty { abort() }
  }
  do {
    _ = try IDXReader.readLabels(path: path)
  } catch {
    if error.description.isEmpty { abort() }
  }
  return 0
}

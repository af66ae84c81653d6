import Compare
import Foundation

/// The files `surgeon compare` reads that a user or a merge writes: the sweep file (first byte
/// even) and a cell record (odd). Any input is a sweep, diagnostics, a record or a ReadError
/// naming the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCompareInputs(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let input = bytes(data, size)
  let mode = input.first ?? 0
  let body = UnsafeRawBufferPointer(rebasing: input.dropFirst())
  if mode & 1 == 0 {
    let (sweep, diagnostics) = SweepDecoder.decode(
      String(decoding: body, as: UTF8.self), file: "fuzz.yaml")
    if sweep == nil && diagnostics.isEmpty { abort() }
    return 0
  }
  let path = scratchFile("record.json", body)
  let cell = Cell(method: "full", rank: nil, learningRate: "5.0e-5", seed: 0)
  do {
    if let record = try CellRecord.read(URL(fileURLWithPath: path), cell: cell) {
      // What was read writes back to a record that reads the same.
      let again = scratchDirectory + "/again.json"
      try record.encoded().write(to: URL(fileURLWithPath: again))
      guard let back = try CellRecord.read(URL(fileURLWithPath: again), cell: cell),
        back.manifest == record.manifest,
        back.result.testAccuracy == record.result.testAccuracy
          || (back.result.testAccuracy.isNaN && record.result.testAccuracy.isNaN),
        back.result.predictions == record.result.predictions
      else { abort() }
    }
  } catch let error as CellReader.ReadError {
    // A record read once reads again: only the first read may fail.
    if error.description.isEmpty || error.description.contains("again.json") { abort() }
  } catch {
    abort()
  }
  return 0
}

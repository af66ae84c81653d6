import Foundation
import SafeTensors

/// The safetensors reader on bytes in memory: any input is a file or a SafeTensorsError.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  do {
    let file = try SafeTensorsFile.read(bytes: bytes(data, size), name: "fuzz.safetensors")
    // Touch every tensor's values, as the loader would.
    var sum: Float = 0
    for name in file.tensors.keys.sorted() {
      if let tensor = file.float(name) { sum += tensor.scalars.reduce(0, +) }
    }
    _ = sum
  } catch {
    if error.description.isEmpty { abort() }
  }
  return 0
}

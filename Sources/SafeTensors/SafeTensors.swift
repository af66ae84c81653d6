import Foundation
import Plumbing
import Tensor

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// The safetensors format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping
// tensor names to {dtype, shape, data_offsets} (plus an optional string→string "__metadata__"),
// then the data buffer the offsets point into. The reader is as strict as the reference Rust
// reader (a little stricter: duplicate tensor names and a header not starting with '{' are
// errors), so a damaged or hostile file fails with a message instead of loading wrong weights.

/// The element types a safetensors file may hold that this package reads.
///
/// Floating-point types load as float32 `Tensor`s; integer types load as `Int64` values so that
/// index buffers (`input_ids`, `position_ids`) survive a round trip in their own dtype.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
  case float32 = "F32"
  case float16 = "F16"
  case bfloat16 = "BF16"
  case int64 = "I64"
  case int32 = "I32"

  /// The size of one element in bytes, which fixes each tensor's byte count.
  public var bytesPerElement: Int {
    switch self {
    case .float16, .bfloat16: 2
    case .float32, .int32: 4
    case .int64: 8
    }
  }

  /// The position in the reference writer's layout: widest alignment first (I64 before F32
  /// before I32), so every tensor starts aligned to its element size.
  fileprivate var layoutRank: Int {
    switch self {
    case .int64: 0
    case .float32: 1
    case .int32: 2
    case .bfloat16: 3
    case .float16: 4
    }
  }
}

/// One tensor of a safetensors file, in the form the rest of the package computes with.
public enum StoredTensor: Sendable {
  /// Float32 values: F32 as stored, F16 and BF16 widened exactly to float32 on load.
  case float(Tensor)
  /// Integer values of an I64 or I32 tensor, kept with their dtype so they are written back in it.
  case integer(shape: [Int], values: [Int64], dtype: SafeTensorsDType)

  /// The dimensions, whichever kind of tensor this is.
  public var shape: [Int] {
    switch self {
    case .float(let tensor): tensor.shape
    case .integer(let shape, _, _): shape
    }
  }
}

/// Why a safetensors file could not be read or written, phrased for the person running the tool:
/// the file (path, or the name given to `read(bytes:name:)`), the problem naming the tensor at
/// fault, and a fix when there is something better than "fix the file".
public typealias SafeTensorsError = UserError

/// The contents of a safetensors file: named tensors and string metadata.
/// A safetensors file's header: what each tensor is, without its values.
public struct SafeTensorsHeader: Sendable {
  /// The tensors by name: dtype and shape.
  public var tensors: [String: (dtype: SafeTensorsDType, shape: [Int])]
  /// The `__metadata__` table (empty when the file has none).
  public var metadata: [String: String]
}

public struct SafeTensorsFile: Sendable {
  /// The tensors by name.
  public var tensors: [String: StoredTensor]
  /// The `__metadata__` table (empty when the file has none).
  public var metadata: [String: String]

  public init(tensors: [String: StoredTensor] = [:], metadata: [String: String] = [:]) {
    self.tensors = tensors
    self.metadata = metadata
  }

  /// The largest header the reference reader accepts; anything bigger is corruption, and the cap
  /// bounds the memory a hostile file can make the parser use.
  public static let maximumHeaderLength = 100_000_000

  /// Reads a file by mapping it read-only, so each tensor's bytes are copied exactly once, from
  /// the page cache into the tensor's storage. Another process must not truncate the file while
  /// it is read: touching unmapped pages would fault rather than throw.
  public static func read(contentsOf url: URL) throws(SafeTensorsError) -> SafeTensorsFile {
    let path = url.path
    func failure(_ problem: String, fix: String? = nil) -> SafeTensorsError {
      SafeTensorsError(file: path, problem: problem, fix: fix)
    }
    let descriptor = try openForReading(url)
    defer { close(descriptor) }
    var status = stat()
    guard fstat(descriptor, &status) == 0 else {
      throw failure("cannot read the file's size: \(systemErrorDescription())")
    }
    guard status.st_mode & S_IFMT == S_IFREG else {
      throw failure("not a regular file")
    }
    let size = Int(status.st_size)
    guard size > 0 else {
      return try decode(UnsafeRawBufferPointer(start: nil, count: 0), file: path)
    }
    guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0),
      mapping != UnsafeMutableRawPointer(bitPattern: -1)
    else {
      throw failure("cannot map the file into memory: \(systemErrorDescription())")
    }
    defer { munmap(mapping, size) }
    return try decode(UnsafeRawBufferPointer(start: mapping, count: size), file: path)
  }

  /// A read-only descriptor for `url`; the error names the file.
  private static func openForReading(_ url: URL) throws(SafeTensorsError) -> Int32 {
    guard url.isFileURL else {
      throw SafeTensorsError(file: url.path, problem: "not a file URL: \(url)")
    }
    let descriptor = open(url.path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
      throw SafeTensorsError(
        file: url.path, problem: "cannot open the file: \(systemErrorDescription())")
    }
    return descriptor
  }

  /// Reads a file's bytes already in memory; `name` stands for the file in error messages.
  ///
  /// Every check runs before any byte of tensor data is touched, so arbitrary input (fuzzing)
  /// yields either a file or an error, never a crash.
  public static func read(
    bytes: UnsafeRawBufferPointer, name: String
  ) throws(SafeTensorsError) -> SafeTensorsFile {
    try decode(bytes, file: name)
  }

  /// The names, dtypes and shapes of a file's tensors and its metadata, from the header alone:
  /// no byte of tensor data is read, so a file whose data is damaged or truncated still gives
  /// its header (planning and validation need shapes, never values).
  public static func readHeader(contentsOf url: URL) throws(SafeTensorsError) -> SafeTensorsHeader {
    let path = url.path
    func failure(_ problem: String, fix: String? = nil) -> SafeTensorsError {
      SafeTensorsError(file: path, problem: problem, fix: fix)
    }
    let descriptor = try openForReading(url)
    defer { close(descriptor) }
    func readPrefix(_ count: Int) throws(SafeTensorsError) -> [UInt8] {
      var bytes = [UInt8](repeating: 0, count: count)
      var filled = 0
      while filled < count {
        let got = bytes.withUnsafeMutableBytes {
          pread(descriptor, $0.baseAddress! + filled, count - filled, off_t(filled))
        }
        if got < 0 && errno == EINTR { continue }
        guard got >= 0 else { throw failure("cannot read the file: \(systemErrorDescription())") }
        if got == 0 { break }
        filled += got
      }
      return Array(bytes[..<filled])
    }
    let prefix = try readPrefix(8)
    var length = 0
    if prefix.count == 8 {
      let declared = prefix.withUnsafeBytes {
        UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))
      }
      length = Int(min(declared, UInt64(maximumHeaderLength) + 1))
    }
    // Past the limit, the decoder reports the declared length without the header being read.
    let bytes = length > maximumHeaderLength ? prefix : try readPrefix(8 + length)
    let decoded = bytes.withUnsafeBytes { raw in
      Result { () throws(SafeTensorsError) in try decodeHeader(raw, file: path) }
    }
    let (entries, metadata, _) = try decoded.get()
    return SafeTensorsHeader(
      tensors: Dictionary(
        uniqueKeysWithValues: entries.map { ($0.name, (dtype: $0.dtype, shape: $0.shape)) }),
      metadata: metadata)
  }

  /// The tensor `name` when it holds floats; nil when it is missing or integer.
  public func float(_ name: String) -> Tensor? {
    if case .float(let tensor)? = tensors[name] { return tensor }
    return nil
  }

  /// The file's bytes, laid out as the reference writer lays them out, so identical contents
  /// give identical files.
  ///
  /// Tensors go in the reference order — widest dtype first (I64, F32, I32), then by name — with
  /// contiguous offsets; header keys are sorted; the header is padded with spaces to a multiple
  /// of 8 bytes so the data buffer starts aligned. Float tensors are written as F32, integer
  /// tensors in their own dtype.
  ///
  /// - Precondition: no tensor is named `__metadata__`; integer tensors have dtype I64 or I32,
  ///   values that fit it, and as many values as their shape has elements.
  public func serialized() -> [UInt8] {
    let layout = Layout(self)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(8 + layout.header.count + layout.dataByteCount)
    appendLittleEndian(UInt64(layout.header.count), to: &bytes)
    bytes.append(contentsOf: layout.header)
    for name in layout.names {
      switch tensors[name]! {
      case .float(let tensor):
        tensor.withUnsafeBufferPointer { appendFloats($0, to: &bytes) }
      case .integer(_, let values, let dtype):
        appendIntegers(values, as: dtype, to: &bytes)
      }
    }
    return bytes
  }

  /// Writes the file durably (`DurableFile`), so a crash or full disk never leaves a
  /// half-written checkpoint behind.
  public func write(to url: URL) throws(SafeTensorsError) {
    let path = url.path
    func failure(_ problem: String, fix: String? = nil) -> SafeTensorsError {
      SafeTensorsError(file: path, problem: problem, fix: fix)
    }
    guard url.isFileURL else { throw failure("not a file URL: \(url)") }
    let bytes = serialized()
    do {
      try DurableFile.write(bytes, to: url)
    } catch {
      switch error.step {
      case .create:
        throw failure(
          "cannot create a temporary file in \(error.directory): \(error.reason)",
          fix: "check that the directory exists and is writable")
      case .write:
        throw failure(
          "cannot write \(bytes.count) bytes: \(error.reason)", fix: "check free disk space")
      case .flush: throw failure("cannot flush the file to disk: \(error.reason)")
      case .rename: throw failure("cannot replace the file: \(error.reason)")
      }
    }
  }
}

// MARK: - Reading

/// A header entry that passed every check on its own; contiguity is checked across entries.
private struct HeaderEntry {
  var name: String
  var dtype: SafeTensorsDType
  var shape: [Int]
  var begin: Int
  var end: Int
}

/// Dtypes the reference format defines that this package does not read; named as "unsupported"
/// rather than "unknown" so the message does not suggest the file is damaged.
private let referenceOnlyDTypes: Set<String> = [
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "I16", "U16",
  "U32", "F64", "U64", "C64",
]

private let supportedDTypesFix =
  "supported dtypes are "
  + SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")

extension SafeTensorsFile {
  fileprivate static func decode(
    _ bytes: UnsafeRawBufferPointer, file: String
  ) throws(SafeTensorsError) -> SafeTensorsFile {
    func failure(_ problem: String, fix: String? = nil) -> SafeTensorsError {
      SafeTensorsError(file: file, problem: problem, fix: fix)
    }
    let (entries, metadata, headerLength) = try decodeHeader(bytes, file: file)
    let buffer = UnsafeRawBufferPointer(rebasing: bytes[(8 + headerLength)...])
    let dataEnd = entries.last?.end ?? 0
    if buffer.count < dataEnd {
      throw failure(
        "the file is truncated: the tensors need a \(dataEnd)-byte data buffer, "
          + "but only \(buffer.count) bytes follow the header",
        fix: "download or export the file again")
    }
    if buffer.count > dataEnd {
      throw failure(
        "\(quantity(buffer.count - dataEnd, "trailing byte")) after the last tensor (the file is "
          + "\(bytes.count) bytes; 8 + header \(headerLength) + data \(dataEnd) = "
          + "\(8 + headerLength + dataEnd))",
        fix: "the file's size must be exactly 8 + header length + the end of the last tensor")
    }

    // Only now touch the data: one copy per tensor.
    var tensors: [String: StoredTensor] = [:]
    tensors.reserveCapacity(entries.count)
    for entry in entries {
      let source = UnsafeRawBufferPointer(rebasing: buffer[entry.begin..<entry.end])
      tensors[entry.name] = load(source, dtype: entry.dtype, shape: entry.shape)
    }
    return SafeTensorsFile(tensors: tensors, metadata: metadata)
  }

  /// The length prefix and header of `bytes` (which may end right after the header), every
  /// entry checked on its own and the entries checked to tile a data buffer; sorted by offset.
  fileprivate static func decodeHeader(
    _ bytes: UnsafeRawBufferPointer, file: String
  ) throws(SafeTensorsError) -> (entries: [HeaderEntry], metadata: [String: String], length: Int) {
    func failure(_ problem: String, fix: String? = nil) -> SafeTensorsError {
      SafeTensorsError(file: file, problem: problem, fix: fix)
    }
    let notSafeTensors = "the file is not a safetensors file, or is damaged"

    // The length prefix.
    guard bytes.count > 0 else {
      throw failure("the file is empty", fix: "a safetensors file starts with an 8-byte length")
    }
    guard bytes.count >= 8 else {
      throw failure(
        "the file is \(bytes.count) bytes, shorter than the 8-byte header length",
        fix: notSafeTensors)
    }
    let declaredLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
    guard declaredLength > 0 else {
      throw failure("header length is 0; the header must hold at least '{}'", fix: notSafeTensors)
    }
    guard declaredLength <= UInt64(maximumHeaderLength) else {
      throw failure(
        "header length \(declaredLength) exceeds the \(maximumHeaderLength)-byte limit",
        fix: notSafeTensors)
    }
    let headerLength = Int(declaredLength)
    guard headerLength <= bytes.count - 8 else {
      throw failure(
        "header length \(headerLength) runs past the end of the file "
          + "(\(bytes.count) bytes leave room for \(bytes.count - 8))",
        fix: "the file is truncated or damaged")
    }
    let header = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])

    // The header: UTF-8, JSON, an object, starting with '{'.
    if let offset = firstInvalidUTF8Offset(in: header) {
      throw failure("header is not valid UTF-8 (at header byte \(offset))", fix: notSafeTensors)
    }
    let root: ParsedJSON
    do {
      root = try JSONReader.parse(
        header, options: JSONReader.Options(maximumDepth: 128, inputName: "the header"))
    } catch {
      throw failure(
        "header is not valid JSON: \(error.problem) at header byte \(error.offset)",
        fix: notSafeTensors)
    }
    guard case .object(let members) = root else {
      throw failure("header is \(root.jsonKind), not an object", fix: notSafeTensors)
    }
    guard header[0] == UInt8(ascii: "{") else {
      throw failure(
        "header must start with '{', not \(JSONReader.describe(byte: header[0]))",
        fix: "remove what precedes the JSON object")
    }

    // Each entry on its own.
    var entries: [HeaderEntry] = []
    entries.reserveCapacity(members.count)
    var metadata: [String: String] = [:]
    for member in members {
      if member.key == "__metadata__" {
        metadata = try decodeMetadata(member.value, failure: failure)
      } else {
        entries.append(try decodeEntry(name: member.key, value: member.value, failure: failure))
      }
    }

    // Across entries: sorted by offset, they tile the data buffer exactly.
    entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
    var previous: HeaderEntry?
    for entry in entries {
      let expectedBegin = previous?.end ?? 0
      if entry.begin < expectedBegin, let previous {
        throw failure(
          "tensor '\(entry.name)' (data_offsets [\(entry.begin), \(entry.end)]) overlaps tensor "
            + "'\(previous.name)' (data_offsets [\(previous.begin), \(previous.end)])",
          fix: "each tensor must begin where the previous one ends")
      }
      if entry.begin > expectedBegin {
        guard let previous else {
          throw failure(
            "tensor '\(entry.name)' begins at byte \(entry.begin) of the data buffer, but the "
              + "first tensor must start at byte 0",
            fix: "offsets may not leave gaps")
        }
        throw failure(
          "gap of \(entry.begin - expectedBegin) bytes between tensor '\(previous.name)' "
            + "(ends at \(previous.end)) and tensor '\(entry.name)' (begins at \(entry.begin))",
          fix: "each tensor must begin where the previous one ends")
      }
      previous = entry
    }
    return (entries, metadata, headerLength)
  }

  private static func decodeMetadata(
    _ value: ParsedJSON, failure: (String, String?) -> SafeTensorsError
  ) throws(SafeTensorsError) -> [String: String] {
    let fix = "__metadata__ must map strings to strings"
    guard case .object(let members) = value else {
      throw failure("__metadata__ is \(value.jsonKind), not an object", fix)
    }
    var metadata: [String: String] = [:]
    for member in members {
      guard case .string(let text) = member.value else {
        throw failure(
          "__metadata__ value for key '\(member.key)' is \(member.value.jsonKind), not a string",
          fix)
      }
      metadata[member.key] = text
    }
    return metadata
  }

  private static func decodeEntry(
    name: String, value: ParsedJSON, failure: (String, String?) -> SafeTensorsError
  ) throws(SafeTensorsError) -> HeaderEntry {
    let fields = "an object with dtype, shape and data_offsets"
    guard case .object(let members) = value else {
      throw failure("tensor '\(name)' is \(value.jsonKind), not \(fields)", nil)
    }
    var dtypeValue: ParsedJSON?
    var shapeValue: ParsedJSON?
    var offsetsValue: ParsedJSON?
    for member in members {
      switch member.key {
      case "dtype": dtypeValue = member.value
      case "shape": shapeValue = member.value
      case "data_offsets": offsetsValue = member.value
      default: break  // Other keys are ignored, as the reference reader ignores them.
      }
    }
    guard let dtypeValue else { throw failure("tensor '\(name)' has no 'dtype'", nil) }
    guard let shapeValue else { throw failure("tensor '\(name)' has no 'shape'", nil) }
    guard let offsetsValue else { throw failure("tensor '\(name)' has no 'data_offsets'", nil) }

    guard case .string(let dtypeName) = dtypeValue else {
      throw failure("tensor '\(name)': dtype must be a string, not \(dtypeValue.jsonKind)", nil)
    }
    guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
      let kind = referenceOnlyDTypes.contains(dtypeName) ? "unsupported" : "unknown"
      throw failure("tensor '\(name)' has \(kind) dtype '\(dtypeName)'", supportedDTypesFix)
    }

    guard case .array(let dimensions) = shapeValue else {
      throw failure(
        "tensor '\(name)': shape must be an array of non-negative integers, not "
          + shapeValue.jsonKind, nil)
    }
    var shape: [Int] = []
    shape.reserveCapacity(dimensions.count)
    for dimension in dimensions {
      switch nonNegativeInteger(dimension) {
      case .value(let size): shape.append(size)
      case .invalid(let reason):
        throw failure(
          "tensor '\(name)': shape \(shapeValue.summary) is invalid: dimension \(reason)",
          "dimensions are non-negative integers")
      }
    }

    let offsetsFix = "data_offsets must be two non-negative integers [begin, end]"
    guard case .array(let offsets) = offsetsValue, offsets.count == 2 else {
      throw failure(
        "tensor '\(name)': data_offsets \(offsetsValue.summary) is not a pair", offsetsFix)
    }
    var bounds: [Int] = []
    for offset in offsets {
      switch nonNegativeInteger(offset) {
      case .value(let position): bounds.append(position)
      case .invalid(let reason):
        throw failure(
          "tensor '\(name)': data_offsets \(offsetsValue.summary) is invalid: \(reason)",
          offsetsFix)
      }
    }
    let (begin, end) = (bounds[0], bounds[1])
    guard begin <= end else {
      throw failure(
        "tensor '\(name)': data_offsets [\(begin), \(end)] ends before it begins", offsetsFix)
    }

    var elementCount = 1
    for size in shape {
      let (product, overflow) = elementCount.multipliedReportingOverflow(by: size)
      guard !overflow else {
        throw failure("tensor '\(name)': the element count of shape \(shape) overflows", nil)
      }
      elementCount = product
    }
    let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.bytesPerElement)
    guard !overflow else {
      throw failure("tensor '\(name)': the byte count of shape \(shape) overflows", nil)
    }
    guard end - begin == byteCount else {
      throw failure(
        "tensor '\(name)': data_offsets [\(begin), \(end)] span \(end - begin) bytes, but shape "
          + "\(shape) of \(dtype.rawValue) needs \(byteCount)",
        "the header and the data disagree; the file is damaged")
    }
    return HeaderEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
  }

  /// Converts one tensor's little-endian bytes (already checked to fit `shape`).
  private static func load(
    _ source: UnsafeRawBufferPointer, dtype: SafeTensorsDType, shape: [Int]
  ) -> StoredTensor {
    switch dtype {
    case .float32:
      var tensor = Tensor(zeros: shape)
      tensor.withUnsafeMutableBufferPointer { destination in
        #if _endian(little)
          UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
        #else
          for index in destination.indices {
            let bits = source.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)
            destination[index] = Float(bitPattern: UInt32(littleEndian: bits))
          }
        #endif
      }
      return .float(tensor)
    case .float16, .bfloat16:
      var tensor = Tensor(zeros: shape)
      tensor.withUnsafeMutableBufferPointer { destination in
        for index in destination.indices {
          let bits = UInt16(
            littleEndian: source.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self))
          destination[index] =
            dtype == .float16
            ? Float(Float16(bitPattern: bits))
            : Float(bitPattern: UInt32(bits) << 16)
        }
      }
      return .float(tensor)
    case .int64:
      let values = (0..<(source.count / 8)).map { index in
        Int64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * index, as: Int64.self))
      }
      return .integer(shape: shape, values: values, dtype: dtype)
    case .int32:
      let values = (0..<(source.count / 4)).map { index in
        Int64(Int32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * index, as: Int32.self)))
      }
      return .integer(shape: shape, values: values, dtype: dtype)
    }
  }
}

/// Why a JSON value is not a non-negative integer, or its value.
private enum IntegerReading {
  case value(Int)
  case invalid(String)
}

private func nonNegativeInteger(_ value: ParsedJSON) -> IntegerReading {
  guard case .number(let text, let isInteger) = value else {
    return .invalid("\(value.summary) is \(value.jsonKind), not an integer")
  }
  guard isInteger else { return .invalid("\(text) is not an integer") }
  // The reference reader rejects "-0" too (it parses as a float).
  guard !text.hasPrefix("-") else { return .invalid("\(text) is negative") }
  guard let integer = Int(text) else { return .invalid("\(text) is too large") }
  return .value(integer)
}

/// "1 trailing byte", "2 trailing bytes".
private func quantity(_ number: Int, _ noun: String) -> String {
  "\(number) \(noun)\(number == 1 ? "" : "s")"
}

/// The offset of the first byte that breaks UTF-8, or nil when the bytes are valid.
private func firstInvalidUTF8Offset(in bytes: UnsafeRawBufferPointer) -> Int? {
  var parser = Unicode.UTF8.ForwardParser()
  var iterator = bytes.makeIterator()
  var offset = 0
  while true {
    switch parser.parseScalar(from: &iterator) {
    case .valid(let encoded): offset += encoded.count
    case .emptyInput: return nil
    case .error: return offset
    }
  }
}

private func systemErrorDescription() -> String {
  String(cString: strerror(errno))
}

// MARK: - Writing

/// The header bytes and data order for a file, computed once for `serialized()`.
private struct Layout {
  var names: [String]
  var header: [UInt8]
  var dataByteCount: Int

  init(_ file: SafeTensorsFile) {
    func dtype(_ tensor: StoredTensor) -> SafeTensorsDType {
      switch tensor {
      case .float: return .float32
      case .integer(let shape, let values, let dtype):
        precondition(
          dtype == .int64 || dtype == .int32,
          "integer tensors are stored as I64 or I32, not \(dtype.rawValue)")
        precondition(
          shape.allSatisfy { $0 >= 0 } && Tensor.elementCount(of: shape) == values.count,
          "\(values.count) values do not fill shape \(shape)")
        return dtype
      }
    }
    let dtypes = file.tensors.mapValues(dtype)
    precondition(dtypes["__metadata__"] == nil, "a tensor cannot be named __metadata__")
    names = dtypes.keys.sorted { left, right in
      let (leftRank, rightRank) = (dtypes[left]!.layoutRank, dtypes[right]!.layoutRank)
      if leftRank != rightRank { return leftRank < rightRank }
      return left.utf8.lexicographicallyPrecedes(right.utf8)
    }

    var json: [UInt8] = [UInt8(ascii: "{")]
    var needsComma = false
    if !file.metadata.isEmpty {
      appendJSONString("__metadata__", to: &json)
      json.append(contentsOf: ":{".utf8)
      let keys = file.metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
      for (index, key) in keys.enumerated() {
        if index > 0 { json.append(UInt8(ascii: ",")) }
        appendJSONString(key, to: &json)
        json.append(UInt8(ascii: ":"))
        appendJSONString(file.metadata[key]!, to: &json)
      }
      json.append(UInt8(ascii: "}"))
      needsComma = true
    }
    var offset = 0
    for name in names {
      let tensor = file.tensors[name]!
      let dtype = dtypes[name]!
      let shape = tensor.shape
      let end = offset + Tensor.elementCount(of: shape) * dtype.bytesPerElement
      if needsComma { json.append(UInt8(ascii: ",")) }
      needsComma = true
      appendJSONString(name, to: &json)
      json.append(contentsOf: ":{\"dtype\":".utf8)
      appendJSONString(dtype.rawValue, to: &json)
      json.append(contentsOf: ",\"shape\":[".utf8)
      json.append(contentsOf: shape.map(String.init).joined(separator: ",").utf8)
      json.append(contentsOf: "],\"data_offsets\":[\(offset),\(end)]}".utf8)
      offset = end
    }
    json.append(UInt8(ascii: "}"))
    json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - json.count % 8) % 8))
    header = json
    dataByteCount = offset
  }
}

/// Appends `string` as a JSON string literal, escaping exactly what JSON requires (as the
/// reference writer does: quote, backslash and control characters; other text as raw UTF-8).
private func appendJSONString(_ string: String, to json: inout [UInt8]) {
  json.append(contentsOf: JSONValue.quotedBytes(string, escaping: .serde))
}

private func appendLittleEndian<Integer: FixedWidthInteger>(
  _ value: Integer, to bytes: inout [UInt8]
) {
  withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

private func appendFloats(_ values: UnsafeBufferPointer<Float>, to bytes: inout [UInt8]) {
  #if _endian(little)
    bytes.append(contentsOf: UnsafeRawBufferPointer(values))
  #else
    for value in values { appendLittleEndian(value.bitPattern, to: &bytes) }
  #endif
}

private func appendIntegers(
  _ values: [Int64], as dtype: SafeTensorsDType, to bytes: inout [UInt8]
) {
  if dtype == .int64 {
    for value in values { appendLittleEndian(value, to: &bytes) }
  } else {
    for value in values {
      guard let narrow = Int32(exactly: value) else {
        preconditionFailure("\(value) does not fit in I32")
      }
      appendLittleEndian(narrow, to: &bytes)
    }
  }
}

// MARK: - JSON in messages

extension ParsedJSON {
  /// "a JSON object", "a JSON string", …, for messages.
  fileprivate var jsonKind: String {
    switch self {
    case .null: "JSON null"
    default: "a JSON " + kind.split(separator: " ").last!
    }
  }

  /// A short rendering for messages (long strings and nested containers abbreviated).
  fileprivate var summary: String {
    switch self {
    case .object(let members): members.isEmpty ? "{}" : "{...}"
    case .array(let elements):
      "[" + elements.map { $0.isContainer ? "..." : $0.summary }.joined(separator: ", ") + "]"
    case .string(let text): text.count > 20 ? "\"\(text.prefix(20))...\"" : "\"\(text)\""
    case .number(let text, _): text
    case .bool(let value): String(value)
    case .null: "null"
    }
  }

  private var isContainer: Bool {
    switch self {
    case .object, .array: true
    default: false
    }
  }
}

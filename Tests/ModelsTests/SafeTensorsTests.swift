import Foundation
import Models
import SafeTensors
import Tensor
import XCTest

final class SafeTensorsTests: XCTestCase {
  // MARK: Fixtures and helpers

  private func fixture(_ path: String) throws -> URL {
    let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
    return root.appendingPathComponent(path)
  }

  private func fixtureBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: fixture(path)))
  }

  /// A scratch directory removed after the test.
  private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
      .appendingPathComponent("SafeTensorsTests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
  }

  /// A file made by hand: length prefix (the header's own length unless `declaredLength` is
  /// given), header text unpadded, then `data`.
  private func file(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    return littleEndianBytes(declaredLength ?? UInt64(headerBytes.count)) + headerBytes + data
  }

  private func littleEndianBytes<Integer: FixedWidthInteger>(_ value: Integer) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
  }

  private func floatBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { littleEndianBytes($0.bitPattern) }
  }

  private func read(_ bytes: [UInt8]) -> Result<SafeTensorsFile, SafeTensorsError> {
    bytes.withUnsafeBytes { buffer in
      Result { () throws(SafeTensorsError) in
        try SafeTensorsFile.read(bytes: buffer, name: "test.safetensors")
      }
    }
  }

  private func assertRejects(
    _ bytes: [UInt8], with fragment: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    switch read(bytes) {
    case .success:
      XCTFail("accepted a file that should fail with \"\(fragment)\"", file: file, line: line)
    case .failure(let error):
      XCTAssertEqual(error.file, "test.safetensors", file: file, line: line)
      XCTAssert(
        error.description.hasPrefix("test.safetensors: error: "), "\(error)", file: file,
        line: line)
      XCTAssert(
        error.problem.contains(fragment), "\"\(error)\" does not say \"\(fragment)\"", file: file,
        line: line)
    }
  }

  private func assertBitwiseEqual(
    _ actual: Tensor?, _ expected: Tensor, file: StaticString = #filePath, line: UInt = #line
  ) {
    guard let actual else { return XCTFail("missing tensor", file: file, line: line) }
    XCTAssert(
      actual.isBitwiseEqual(to: expected), "\(actual.scalars) != \(expected.scalars)", file: file,
      line: line)
  }

  private func assertIntegers(
    _ stored: StoredTensor?, shape: [Int], values: [Int64], dtype: SafeTensorsDType,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    guard case .integer(let actualShape, let actualValues, let actualDType)? = stored else {
      return XCTFail("not an integer tensor: \(String(describing: stored))", file: file, line: line)
    }
    XCTAssertEqual(actualShape, shape, file: file, line: line)
    XCTAssertEqual(actualValues, values, file: file, line: line)
    XCTAssertEqual(actualDType, dtype, file: file, line: line)
  }

  private func headerLength(of bytes: [UInt8]) -> Int {
    bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
  }

  private func bits(_ tensor: Tensor?) -> [UInt32] {
    tensor?.scalars.map(\.bitPattern) ?? []
  }

  // MARK: Reading real checkpoints

  func testReadsTinyBERTCheckpoint() throws {
    let file = try SafeTensorsFile.read(contentsOf: fixture("tiny-bert/model.safetensors"))
    XCTAssertEqual(file.tensors.count, 41)
    XCTAssertEqual(file.metadata, ["format": "pt"])

    let embeddings = try XCTUnwrap(file.float("bert.embeddings.word_embeddings.weight"))
    XCTAssertEqual(embeddings.shape, [64, 32])
    XCTAssertEqual(embeddings[flat: 3 * 32 + 5].bitPattern, 0xBCF5_CD09)  // read with Python
    XCTAssertEqual(file.tensors["bert.encoder.layer.1.output.dense.weight"]?.shape, [32, 64])
    // The last four bytes of the file: offsets are relative to the end of the header.
    let classifier = try XCTUnwrap(file.float("classifier.weight"))
    XCTAssertEqual(classifier.shape, [2, 32])
    XCTAssertEqual(classifier[flat: 63].bitPattern, 0xBC83_C96A)
    XCTAssertNil(file.float("no.such.tensor"))

    let reread = try read(file.serialized()).get()
    XCTAssertEqual(reread.tensors.count, 41)
    assertBitwiseEqual(reread.float("bert.embeddings.word_embeddings.weight"), embeddings)
    assertBitwiseEqual(reread.float("classifier.weight"), classifier)
  }

  /// The header alone gives every tensor's dtype and shape, the same as a full read, and reads
  /// no data: with the data cut off (or absent) it still succeeds; broken headers still fail.
  func testReadsTheHeaderWithoutTheData() throws {
    let full = try SafeTensorsFile.read(contentsOf: fixture("tiny-bert/model.safetensors"))
    let bytes = try fixtureBytes("tiny-bert/model.safetensors")
    let headerLength = Int(
      bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) })
    let directory = try temporaryDirectory()
    for kept in [bytes.count, 8 + headerLength + 100, 8 + headerLength] {
      let url = directory.appendingPathComponent("cut-\(kept).safetensors")
      try Data(bytes.prefix(kept)).write(to: url)
      let header = try SafeTensorsFile.readHeader(contentsOf: url)
      XCTAssertEqual(header.tensors.count, 41)
      XCTAssertEqual(header.metadata, ["format": "pt"])
      for (name, stored) in full.tensors {
        XCTAssertEqual(header.tensors[name]?.shape, stored.shape, name)
      }
      XCTAssertEqual(header.tensors["classifier.weight"]?.dtype, .float32)
    }
    let short = directory.appendingPathComponent("short.safetensors")
    try Data(bytes.prefix(8 + headerLength - 1)).write(to: short)
    XCTAssertThrowsError(try SafeTensorsFile.readHeader(contentsOf: short)) { error in
      XCTAssertTrue("\(error)".contains("runs past the end of the file"), "\(error)")
    }
    let gap = directory.appendingPathComponent("gap.safetensors")
    try Data(
      file(
        header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: floatBytes([1, 2]))
    ).write(to: gap)
    XCTAssertThrowsError(try SafeTensorsFile.readHeader(contentsOf: gap)) { error in
      XCTAssertTrue("\(error)".contains("the first tensor must start at byte 0"), "\(error)")
    }
  }

  /// The writer lays files out exactly as the reference writer does, so re-serializing what it
  /// wrote gives the same bytes — including F32-before-I32 order and escaped metadata.
  func testSerializationReproducesReferenceFilesByteForByte() throws {
    for path in [
      "tiny-bert/model.safetensors", "tiny-bert/golden.safetensors",
      "tiny-vgg/model.safetensors", "tiny-vgg/golden.safetensors", "minilm_forward.safetensors",
    ] {
      let original = try fixtureBytes(path)
      let file = try SafeTensorsFile.read(contentsOf: fixture(path))
      XCTAssertEqual(file.serialized(), original, path)
    }
  }

  func testReadsInt32TensorsOfGoldenFile() throws {
    let file = try SafeTensorsFile.read(contentsOf: fixture("tiny-bert/golden.safetensors"))
    XCTAssertEqual(file.tensors.count, 47)
    guard case .integer(let shape, let values, let dtype)? = file.tensors["input_ids"] else {
      return XCTFail("input_ids is not an integer tensor")
    }
    XCTAssertEqual(shape, [3, 9])
    XCTAssertEqual(dtype, .int32)
    XCTAssertEqual(Array(values.prefix(12)), [2, 32, 11, 33, 38, 40, 49, 50, 11, 2, 57, 50])
    assertIntegers(file.tensors["labels"], shape: [3], values: [0, 1, 1], dtype: .int32)
    XCTAssertNil(file.float("input_ids"))
  }

  func testReadsMetadataOfForwardFixture() throws {
    let file = try SafeTensorsFile.read(contentsOf: fixture("minilm_forward.safetensors"))
    XCTAssertEqual(
      file.metadata["sentences"],
      #"["a gripping, beautifully shot film.", "dull and far too long", "#
        + #""It's not bad... it's terrible!"]"#)
    XCTAssertEqual(file.tensors["last_hidden_state"]?.shape, [3, 15, 384])
  }

  // MARK: Round trips

  func testRoundTripWithMetadataIsExact() throws {
    let special: [Float] = [
      Float(bitPattern: 0x7FC0_0001), -0.0, .infinity, -.infinity, Float(bitPattern: 1),
      .greatestFiniteMagnitude,
    ]
    let original = SafeTensorsFile(
      tensors: [
        "layer.weight": .float(Tensor(shape: [2, 3], scalars: special)),
        "layer.bias": .float(Tensor(shape: [3], scalars: [0.1, -0.2, 0.3])),
        "scalar": .float(Tensor(shape: [], scalars: [42])),
        "empty": .float(Tensor(zeros: [0, 4])),
        "naïve \"quoted\"\\ name\n\u{1}😀": .float(Tensor(shape: [1], scalars: [7])),
        "position_ids": .integer(shape: [1, 4], values: [0, 1, 2, 3], dtype: .int64),
      ],
      metadata: [
        "format": "pt",
        "note": "tab\t quote\" backslash\\ slash/ newline\n bell\u{7} é 😀",
        "": "empty key",
      ])
    let directory = try temporaryDirectory()
    let first = directory.appendingPathComponent("first.safetensors")
    let second = directory.appendingPathComponent("second.safetensors")

    try original.write(to: first)
    let reread = try SafeTensorsFile.read(contentsOf: first)
    XCTAssertEqual(reread.metadata, original.metadata)
    XCTAssertEqual(Set(reread.tensors.keys), Set(original.tensors.keys))
    for (name, stored) in original.tensors {
      switch stored {
      case .float(let tensor): assertBitwiseEqual(reread.float(name), tensor)
      case .integer(let shape, let values, let dtype):
        assertIntegers(reread.tensors[name], shape: shape, values: values, dtype: dtype)
      }
    }

    try reread.write(to: second)
    let firstBytes = try Data(contentsOf: first)
    XCTAssertEqual(try Data(contentsOf: second), firstBytes)
    XCTAssertEqual(Array(firstBytes), original.serialized())
    XCTAssertEqual(headerLength(of: Array(firstBytes)) % 8, 0)  // padded like the reference

    // Writing over an existing file replaces it and leaves no temporary file behind.
    try SafeTensorsFile(metadata: ["k": "v"]).write(to: first)
    XCTAssertEqual(try SafeTensorsFile.read(contentsOf: first).metadata, ["k": "v"])
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted(),
      ["first.safetensors", "second.safetensors"])
  }

  func testIntegerTensorsRoundTripInTheirDType() throws {
    let int32Values: [Int64] = [Int64(Int32.min), -1, 0, 1, Int64(Int32.max)]
    let int64Values: [Int64] = [.min, -1, 0, 1 << 40, .max]
    let original = SafeTensorsFile(tensors: [
      "a_mask": .integer(shape: [5], values: int32Values, dtype: .int32),
      "b_weight": .float(Tensor(shape: [1], scalars: [0.5])),
      "c_ids": .integer(shape: [5], values: int64Values, dtype: .int64),
    ])
    let bytes = original.serialized()
    let header = String(decoding: bytes[8..<(8 + headerLength(of: bytes))], as: UTF8.self)
    // Widest dtype first, as the reference writer does, so each tensor stays aligned.
    XCTAssertTrue(
      header.hasPrefix(
        #"{"c_ids":{"dtype":"I64","shape":[5],"data_offsets":[0,40]},"#
          + #""b_weight":{"dtype":"F32","shape":[1],"data_offsets":[40,44]},"#
          + #""a_mask":{"dtype":"I32","shape":[5],"data_offsets":[44,64]}}"#), header)
    XCTAssertEqual(bytes.count, 8 + headerLength(of: bytes) + 64)
    XCTAssertEqual(Array(bytes.suffix(4)), [0xFF, 0xFF, 0xFF, 0x7F])  // Int32.max as I32

    let reread = try read(bytes).get()
    assertIntegers(reread.tensors["a_mask"], shape: [5], values: int32Values, dtype: .int32)
    assertIntegers(reread.tensors["c_ids"], shape: [5], values: int64Values, dtype: .int64)
    XCTAssertEqual(try read(reread.serialized()).get().serialized(), bytes)
  }

  /// The byte-exact outputs of the reference implementation's own tests for empty files.
  func testEmptyFilesMatchReferenceBytes() throws {
    let empty = SafeTensorsFile().serialized()
    XCTAssertEqual(empty, [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8))
    XCTAssertTrue(try read(empty).get().tensors.isEmpty)

    let withMetadata = SafeTensorsFile(metadata: ["framework": "pt"]).serialized()
    XCTAssertEqual(
      withMetadata,
      [40, 0, 0, 0, 0, 0, 0, 0] + Array(#"{"__metadata__":{"framework":"pt"}}     "#.utf8))
    XCTAssertEqual(try read(withMetadata).get().metadata, ["framework": "pt"])
  }

  // MARK: Conversions

  func testLoadsFloat16WithKnownValues() throws {
    let halves: [UInt16] = [0x3C00, 0xC000, 0x3555, 0x7C00, 0x0001, 0x8000]
    let bytes = file(
      header: #"{"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}}"#,
      data: halves.flatMap(littleEndianBytes))
    let tensor = try XCTUnwrap(try read(bytes).get().float("h"))
    XCTAssertEqual(tensor.shape, [2, 3])
    // 1, -2, 0.333251953125, +inf, 2^-24 (smallest subnormal), -0.
    XCTAssertEqual(
      bits(tensor),
      [0x3F80_0000, 0xC000_0000, 0x3EAA_A000, 0x7F80_0000, 0x3380_0000, 0x8000_0000])
    XCTAssertEqual(tensor[flat: 2], 0.333251953125)
  }

  func testLoadsBFloat16WithKnownValues() throws {
    let brains: [UInt16] = [0x3F80, 0xC040, 0x4049, 0xFF80, 0x7FC1, 0x0001]
    let bytes = file(
      header: #"{"b":{"dtype":"BF16","shape":[6],"data_offsets":[0,12]}}"#,
      data: brains.flatMap(littleEndianBytes))
    let loaded = try read(bytes).get()
    let tensor = try XCTUnwrap(loaded.float("b"))
    // 1, -3, 3.140625, -inf, a NaN with its payload, a subnormal: the high 16 bits of float32.
    XCTAssertEqual(
      bits(tensor),
      [0x3F80_0000, 0xC040_0000, 0x4049_0000, 0xFF80_0000, 0x7FC1_0000, 0x0001_0000])
    XCTAssertEqual(tensor[flat: 2], 3.140625)
    // Widened tensors are written back as F32.
    XCTAssertTrue(String(decoding: loaded.serialized(), as: UTF8.self).contains(#""F32""#))
  }

  func testReadsUnalignedF32Data() throws {
    // A 55-byte header: the data starts at an odd offset, which the copy must tolerate.
    let header = #"{"ab":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    XCTAssertEqual(header.utf8.count, 55)
    let loaded = try read(file(header: header, data: floatBytes([1.5, -2.25]))).get()
    XCTAssertEqual(loaded.float("ab")?.scalars, [1.5, -2.25])
  }

  // MARK: Malformed files

  private let validHeader = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

  func testRejectsEmptyFile() {
    assertRejects([], with: "the file is empty")
  }

  func testRejectsFileShorterThanLengthPrefix() {
    assertRejects([1, 0, 0], with: "3 bytes, shorter than the 8-byte header length")
  }

  func testRejectsTruncatedData() throws {
    assertRejects(
      Array(file(header: validHeader, data: floatBytes([1, 2])).dropLast(2)),
      with: "the file is truncated: the tensors need a 8-byte data buffer, but only 6 bytes")
    assertRejects(
      Array(try fixtureBytes("tiny-bert/model.safetensors").dropLast()),
      with: "the file is truncated")
  }

  func testRejectsHeaderLengthPastTheEnd() {
    assertRejects(
      file(header: "{}", declaredLength: 1000),
      with: "header length 1000 runs past the end of the file")
  }

  func testRejectsAbsurdHeaderLength() {
    assertRejects(
      file(header: "{}", declaredLength: .max),
      with: "header length 18446744073709551615 exceeds the 100000000-byte limit")
    assertRejects(
      file(header: "{}", declaredLength: 100_000_001), with: "exceeds the 100000000-byte limit")
  }

  func testRejectsZeroHeaderLength() {
    assertRejects(file(header: "{}", declaredLength: 0), with: "header length is 0")
  }

  func testRejectsHeaderThatIsNotUTF8() {
    let bytes = littleEndianBytes(UInt64(6)) + [0x7B, 0x22, 0xFF, 0x22, 0x7D, 0x20]
    assertRejects(bytes, with: "header is not valid UTF-8 (at header byte 2)")
  }

  func testRejectsHeaderThatIsNotJSON() {
    assertRejects(file(header: "{not json}"), with: "header is not valid JSON")
    assertRejects(file(header: #"{"a":1,}"#), with: "header is not valid JSON")
    assertRejects(file(header: "{} x"), with: "'x' after the JSON value")
    assertRejects(file(header: #"{"a":"\q"}"#), with: "invalid escape")
    assertRejects(file(header: #"{"a":"\ud800"}"#), with: "unpaired surrogate")
    assertRejects(file(header: #"{"a":01}"#), with: "leading zero")
    assertRejects(file(header: "{\"a\":\"\n\"}"), with: "unescaped control character")
    assertRejects(
      file(header: String(repeating: "[", count: 1000)), with: "nesting deeper than 128 levels")
  }

  func testRejectsHeaderJSONArray() {
    assertRejects(file(header: "[1, 2]"), with: "header is a JSON array, not an object")
  }

  func testRejectsHeaderNotStartingWithBrace() {
    assertRejects(file(header: "  {}    "), with: "header must start with '{'")
  }

  func testRejectsDuplicateKeys() {
    let entry = #"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#
    assertRejects(
      file(header: #"{"w":\#(entry),"w":\#(entry)}"#, data: floatBytes([1])),
      with: #"duplicate key "w""#)
  }

  func testRejectsMissingOrMistypedFields() {
    assertRejects(
      file(header: #"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, data: floatBytes([1])),
      with: "tensor 'w' has no 'dtype'")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, data: floatBytes([1])),
      with: "tensor 'w' has no 'shape'")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[1]}}"#, data: floatBytes([1])),
      with: "tensor 'w' has no 'data_offsets'")
    assertRejects(file(header: #"{"w":3}"#), with: "tensor 'w' is a JSON number, not an object")
    assertRejects(
      file(header: #"{"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}"#, data: floatBytes([1])),
      with: "tensor 'w': dtype must be a string, not a JSON number")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}}"#),
      with: "tensor 'w': shape must be an array of non-negative integers, not a JSON string")
  }

  /// Like the reference reader, unknown keys in an entry are ignored rather than rejected.
  func testIgnoresUnknownEntryKeys() throws {
    let header = #"{"w":{"dtype":"F32","extra":[1],"shape":[],"data_offsets":[0,4]}}"#
    XCTAssertEqual(
      try read(file(header: header, data: floatBytes([2]))).get().float("w")?.shape, [])
  }

  func testRejectsUnknownDType() {
    assertRejects(
      file(header: #"{"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#),
      with: "tensor 'w' has unknown dtype 'Q7'")
    assertRejects(
      file(header: #"{"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#),
      with: "tensor 'w' has unsupported dtype 'F64'")
  }

  func testRejectsNegativeShape() {
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}}"#),
      with: "tensor 'w': shape [2, -1] is invalid: dimension -1 is negative")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}"#),
      with: "dimension -0 is negative")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#),
      with: "dimension 1.5 is not an integer")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}"#),
      with: "dimension 1e0 is not an integer")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#),
      with: #"dimension "2" is a JSON string"#)
  }

  func testRejectsInvalidDataOffsets() {
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#),
      with: "tensor 'w': data_offsets [8, 4] ends before it begins")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[0]}}"#),
      with: "tensor 'w': data_offsets [0] is not a pair")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[-4,0]}}"#),
      with: "-4 is negative")
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[0,99999999999999999999]}}"#),
      with: "99999999999999999999 is too large")
  }

  func testRejectsOverflowingShape() {
    assertRejects(
      file(header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#),
      with: "element count of shape [4294967296, 4294967296] overflows")
    assertRejects(
      file(header: #"{"w":{"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,0]}}"#),
      with: "byte count of shape [2305843009213693952] overflows")
  }

  func testRejectsByteCountMismatch() {
    assertRejects(
      file(
        header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#,
        data: floatBytes([1, 2, 3])),
      with: "tensor 'w': data_offsets [0, 12] span 12 bytes, but shape [2, 2] of F32 needs 16")
  }

  func testRejectsOverlappingOffsets() {
    let header =
      #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
      + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    assertRejects(
      file(header: header, data: floatBytes([1, 2, 3])),
      with: "tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a' (data_offsets [0, 8])")
  }

  func testRejectsGapBetweenTensors() {
    let header =
      #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"#
      + #""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
    assertRejects(
      file(header: header, data: floatBytes([1, 2, 3])),
      with: "gap of 4 bytes between tensor 'a' (ends at 4) and tensor 'b' (begins at 8)")
  }

  func testRejectsFirstTensorNotAtZero() {
    assertRejects(
      file(
        header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: floatBytes([1, 2])),
      with: "tensor 'w' begins at byte 4 of the data buffer, but the first tensor must start at")
  }

  func testRejectsTrailingBytes() throws {
    assertRejects(
      file(header: validHeader, data: floatBytes([1, 2]) + [0]),
      with: "1 trailing byte after the last tensor")
    assertRejects(file(header: "{}", data: [0, 0]), with: "2 trailing bytes after the last tensor")
    assertRejects(
      try fixtureBytes("tiny-vgg/model.safetensors") + [0, 0, 0, 0],
      with: "4 trailing bytes after the last tensor")
  }

  func testRejectsMetadataWithNonStringValue() {
    assertRejects(
      file(header: #"{"__metadata__":{"format":"pt","epoch":3}}"#),
      with: "__metadata__ value for key 'epoch' is a JSON number, not a string")
    assertRejects(
      file(header: #"{"__metadata__":["pt"]}"#), with: "__metadata__ is a JSON array, not an object"
    )
  }

  // MARK: Errors and robustness

  func testErrorsNameTheFileAndSayWhatToDo() throws {
    let missing = try temporaryDirectory().appendingPathComponent("missing.safetensors")
    do {
      _ = try SafeTensorsFile.read(contentsOf: missing)
      XCTFail("read a missing file")
    } catch {
      XCTAssertEqual(error.file, missing.path)
      XCTAssertTrue(error.description.hasPrefix("\(missing.path): error: cannot open the file"))
    }
    let directory = missing.appendingPathComponent("no-such-directory/out.safetensors")
    XCTAssertThrowsError(try SafeTensorsFile().write(to: directory)) { error in
      XCTAssertTrue("\(error)".contains("cannot create a temporary file"), "\(error)")
    }
    XCTAssertEqual(
      SafeTensorsError(file: "m.safetensors", problem: "bad", fix: "redo").description,
      "m.safetensors: error: bad; redo")
    XCTAssertEqual(
      SafeTensorsError(file: "m.safetensors", problem: "bad").description,
      "m.safetensors: error: bad")
  }

  /// Random damage to a small valid file must give a file or an error, never a crash.
  func testRandomCorruptionNeverCrashes() throws {
    let valid = SafeTensorsFile(
      tensors: [
        "a": .float(Tensor(shape: [2, 2], scalars: [1, 2, 3, 4])),
        "b": .integer(shape: [3], values: [1, 2, 3], dtype: .int32),
        "c": .float(Tensor(shape: [], scalars: [5])),
      ],
      metadata: ["k": "v"]
    ).serialized()
    XCTAssertNoThrow(try read(valid).get())

    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next(_ bound: Int) -> Int {  // SplitMix64, so failures reproduce
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return Int((z ^ (z >> 31)) % UInt64(bound))
    }
    var accepted = 0
    var rejected = 0
    for length in 0..<valid.count {
      if case .success = read(Array(valid.prefix(length))) { accepted += 1 } else { rejected += 1 }
    }
    XCTAssertEqual(accepted, 0, "a truncated file was accepted")
    for _ in 0..<3000 {
      var bytes = valid
      for _ in 0...next(3) {
        let index = next(bytes.count)
        switch next(3) {
        case 0: bytes[index] = UInt8(next(256))
        case 1: bytes.remove(at: index)
        default: bytes.insert(UInt8(next(256)), at: index)
        }
      }
      if case .success = read(bytes) { accepted += 1 } else { rejected += 1 }
    }
    XCTAssertGreaterThan(accepted, 0)  // damage inside the data buffer is undetectable
    XCTAssertGreaterThan(rejected, 2000)
  }
}

// swift-tools-version:6.0
import PackageDescription

// The one module built for Haswell-level x86-64 (AVX2, FMA, BMI): its code runs only where the
// processor has those features (Tensor's VectorKernelChoice checks). Elsewhere it is built like
// the rest.
#if arch(x86_64)
  let avx2Settings: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
  let avx2Settings: [SwiftSetting] = []
#endif

// Data flows one way: (Plumbing, VectorKernels) → Tensor → SafeTensors → Models → (Manifest,
// Surgery, Training) → surgeon. docs/architecture.md says what each target may import.
let package = Package(
  name: "surgeon",
  products: [
    .executable(name: "surgeon", targets: ["surgeon"]),
    .executable(name: "surgeon-bench", targets: ["SurgeonBench"]),
    .library(name: "Models", targets: ["Models"]),
  ],
  targets: [
    .systemLibrary(
      name: "CBLAS",
      pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]
    ),
    .systemLibrary(
      name: "CYAML",
      pkgConfig: "yaml-0.1",
      providers: [.apt(["libyaml-dev"])]
    ),
    .systemLibrary(
      name: "CZlib",
      pkgConfig: "zlib",
      providers: [.apt(["zlib1g-dev"])]
    ),
    // oneDNN's convolutions (Debian installs no pkg-config file for it).
    .systemLibrary(
      name: "CDNNL",
      providers: [.apt(["libdnnl-dev"])]
    ),
    // What every module needs: the JSON reader and writer, the user-facing file error, "did you
    // mean" hints, durable file writes, which build is running (zlib's CRC-32 of the
    // executable). Depends on nothing else of the package.
    .target(name: "Plumbing", dependencies: ["CZlib"]),
    // The elementwise loops outside the GEMMs (noise, dropout, GELU, softmax), written once and
    // compiled twice: here for baseline x86-64, and in VectorKernelsAVX2 for Haswell (AVX2 +
    // FMA). Tensor picks one set per process by what the processor can do.
    .target(name: "VectorKernels"),
    .target(
      name: "VectorKernelsAVX2", dependencies: ["VectorKernels"],
      swiftSettings: avx2Settings),
    .target(
      name: "Tensor", dependencies: ["CBLAS", "CDNNL", "VectorKernels", "VectorKernelsAVX2"]),
    // The safetensors file format, reading and writing; every reader of weights goes through it.
    .target(name: "SafeTensors", dependencies: ["Tensor", "Plumbing"]),
    .target(name: "Models", dependencies: ["Tensor", "SafeTensors", "Plumbing"]),
    .target(name: "Manifest", dependencies: ["CYAML", "Plumbing"]),
    .target(name: "Surgery", dependencies: ["Models", "Manifest", "Tensor", "Plumbing"]),
    // ONNX files written by hand (protobuf wire format): the model as surgeon holds it.
    .target(name: "ONNXExport", dependencies: ["Models", "Tensor"]),
    // Data files, the WordPiece tokenizer and batches: the text and image pipelines.
    .target(name: "Datasets", dependencies: ["Models", "Tensor", "Plumbing", "CZlib"]),
    // SVG line charts for the report; depends on nothing so any target can draw.
    .target(name: "Plots"),
    // Data-parallel runs: Open MPI loaded at run time (dlopen), so nothing MPI is needed to build.
    .target(name: "Distributed"),
    .target(
      name: "Training",
      dependencies: [
        "Surgery", "Models", "SafeTensors", "Tensor", "Datasets", "Plots", "Distributed",
        "Plumbing", "ONNXExport",
      ]),
    // `surgeon predict`: prediction inputs checked against a checkpoint, batched inference,
    // JSON Lines / CSV output.
    .target(
      name: "Prediction", dependencies: ["Models", "Datasets", "Manifest", "Tensor", "Plumbing"]),
    // `surgeon compare`: sweep files, derived manifests, learning-rate selection, tables, figures.
    .target(name: "Compare", dependencies: ["Manifest", "Plots", "SafeTensors", "Plumbing"]),
    .executableTarget(
      name: "surgeon",
      dependencies: [
        "Models", "SafeTensors", "Manifest", "Surgery", "Training", "Tensor", "Datasets",
        "Distributed", "Compare", "Prediction", "ONNXExport", "Plumbing",
      ]),
    // Benchmarks (not tests): ratios measured side by side in one run.
    .executableTarget(
      name: "SurgeonBench", dependencies: ["Models", "Tensor", "Manifest", "Surgery", "Training"]),
    .testTarget(name: "PlumbingTests", dependencies: ["Plumbing"]),
    .testTarget(
      name: "TensorTests", dependencies: ["Tensor", "VectorKernels", "VectorKernelsAVX2"]),
    .testTarget(name: "PlotTests", dependencies: ["Plots"]),
    .testTarget(
      name: "PredictionTests", dependencies: ["Prediction", "Datasets", "Models", "Tensor"]),
    .testTarget(
      name: "ONNXExportTests",
      dependencies: ["ONNXExport", "Models", "Tensor"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(name: "CompareTests", dependencies: ["Compare", "Manifest", "Plumbing"]),
    .testTarget(
      name: "ModelsTests",
      dependencies: ["Models", "SafeTensors", "Tensor"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "ManifestTests",
      dependencies: ["Manifest"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "DatasetsTests",
      dependencies: ["Datasets", "Models", "Tensor", "Plumbing"],
      resources: [.copy("Fixtures")]
    ),
    .testTarget(
      name: "TrainingTests",
      dependencies: [
        "Training", "Surgery", "Datasets", "Models", "Manifest", "Tensor", "Distributed",
        "Plumbing",
      ]
    ),
    .testTarget(
      name: "SurgeryTests",
      dependencies: ["Surgery", "Training", "Models", "SafeTensors", "Manifest", "Tensor"]
    ),
    // Runs the built `surgeon` binary as a user would (exit codes, output, files).
    .testTarget(
      name: "SurgeonTests",
      dependencies: ["surgeon", "Models", "SafeTensors", "Datasets", "Tensor", "Plumbing"],
      resources: [.copy("Fixtures")]
    ),
  ],
  swiftLanguageModes: [.v6]
)

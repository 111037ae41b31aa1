// swift-tools-version:6.0
import PackageDescription

// Architecture, dependencies pointing one way:
//   AudioCapture ─────────────┐
//   CHTSATKernels ← FrontEnd ← HTSAT ← Detection ← Daemon ← htsatd (executable)
//   Sinks ─────────────────────────────────────────┘
let package = Package(
    name: "htsatd",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "htsatd", targets: ["htsatd"]),
        .library(name: "HTSAT", targets: ["HTSAT"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // Thin C bridges, found through pkg-config.
        .systemLibrary(name: "CALSA", pkgConfig: "alsa", providers: [.apt(["libasound2-dev"])]),
        .systemLibrary(name: "CFFTW", pkgConfig: "fftw3f", providers: [.apt(["libfftw3-dev"])]),
        .systemLibrary(name: "CSndfile", pkgConfig: "sndfile", providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CSoxr", pkgConfig: "soxr", providers: [.apt(["libsoxr-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),

        // Audio in: ALSA capture, file decoding, resampling, the capture→inference ring buffer.
        .target(name: "AudioCapture", dependencies: [
            "CALSA", "CSndfile", "CSoxr", .product(name: "Logging", package: "swift-log"),
        ]),
        // SIMD kernels of the network (linear layers, attention, LayerNorm, gathers, log-mel) and their thread pool.
        .target(name: "CHTSATKernels"),
        // DSP front end: STFT (FFTW), mel projection, log.
        .target(name: "FrontEnd", dependencies: ["CFFTW", "CHTSATKernels"]),
        // The HTS-AT model: checkpoint loading and the network.
        .target(name: "HTSAT", dependencies: [
            "FrontEnd", "CHTSATKernels", .product(name: "Logging", package: "swift-log"),
        ]),
        // Windows, score fusion, event tracking, event catalogue.
        .target(name: "Detection", dependencies: [
            "HTSAT", "AudioCapture", .product(name: "Logging", package: "swift-log"),
        ]),
        // Event outputs: stdout, Unix socket, log file.
        .target(name: "Sinks", dependencies: [.product(name: "Logging", package: "swift-log")]),
        // The daemon and its commands: configuration, pipeline wiring, signals, systemd.
        .target(name: "Daemon", dependencies: [
            "Detection", "Sinks", "AudioCapture", "HTSAT", "CSystemd",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "htsatd", dependencies: ["Daemon"]),

        // Fixture lookup shared by the test targets.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "HTSATTests", dependencies: ["HTSAT", "FrontEnd", "TestSupport"]),
        .testTarget(name: "AudioCaptureTests", dependencies: ["AudioCapture", "TestSupport"]),
        .testTarget(name: "DetectionTests", dependencies: ["Detection", "HTSAT", "AudioCapture", "TestSupport",
                                                      .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SinksTests", dependencies: ["Sinks", "TestSupport"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "htsatd", "HTSAT", "AudioCapture", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)

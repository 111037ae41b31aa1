// swift-tools-version:6.0
import PackageDescription

// Architecture, dependencies pointing one way (each arrow: "is used by"):
//   SystemSupport → AudioCapture (capture), HTSAT ─────┐
//   CHTSATKernels → FrontEnd (DSP) → HTSAT (model) ──→ Engine (ring + model + scheduler) ─┐
//   Detection (pure logic: fusion, tracker, catalogue) ┴→ Sinks (outputs) ────────────────┴→ Daemon → htsatd
//   Detection, SystemSupport → Clips (event clips, retention, PNG) ──────────────────────────┘
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
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Thin C bridges, found through pkg-config.
        .systemLibrary(name: "CALSA", pkgConfig: "alsa", providers: [.apt(["libasound2-dev"])]),
        .systemLibrary(name: "CFFTW", pkgConfig: "fftw3f", providers: [.apt(["libfftw3-dev"])]),
        .systemLibrary(name: "CSndfile", pkgConfig: "sndfile", providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CSoxr", pkgConfig: "soxr", providers: [.apt(["libsoxr-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),

        // One home for system-call plumbing: typed errno, the EINTR retry, the wake-up pipe, SIGPIPE.
        .target(name: "SystemSupport"),
        // Audio in: ALSA capture, file decoding, resampling, the capture→inference ring buffer.
        .target(name: "AudioCapture", dependencies: [
            "CALSA", "CSndfile", "CSoxr", "SystemSupport", .product(name: "Logging", package: "swift-log"),
        ]),
        // SIMD kernels of the network (linear layers, attention, LayerNorm, gathers, log-mel) and their thread pool.
        .target(name: "CHTSATKernels"),
        // DSP front end: STFT (FFTW), mel projection, log.
        .target(name: "FrontEnd", dependencies: ["CFFTW", "CHTSATKernels"]),
        // The HTS-AT model: checkpoint loading and the network.
        .target(name: "HTSAT", dependencies: [
            "FrontEnd", "CHTSATKernels", "SystemSupport", .product(name: "Logging", package: "swift-log"),
        ]),
        // Pure detection logic: score fusion, event tracker, event catalogue and labels. Imports no model, no capture.
        .target(name: "Detection"),
        // Where the ring and the model meet: the window scheduler and the inference adapter.
        .target(name: "Engine", dependencies: [
            "AudioCapture", "HTSAT", "Detection", .product(name: "Logging", package: "swift-log"),
        ]),
        // Outputs: typed messages, their one JSON encoding, and the sinks (stdout, Unix socket, log file, MQTT).
        .target(name: "Sinks", dependencies: [
            "Detection", "SystemSupport", "CMosquitto", .product(name: "Logging", package: "swift-log"),
        ]),
        // Event clips: the writer thread (pre-roll, atomic files, libsndfile), retention, spectrogram PNGs (libpng).
        .target(name: "Clips", dependencies: [
            "CSndfile", "CPNG", "Detection", "SystemSupport", .product(name: "Logging", package: "swift-log"),
        ]),
        // The daemon and its commands: configuration, lifecycle, signals, systemd, benchmark.
        .target(name: "Daemon", dependencies: [
            "Engine", "Detection", "Sinks", "AudioCapture", "HTSAT", "SystemSupport", "CSystemd", "Clips", "FrontEnd",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "htsatd", dependencies: ["Daemon"]),

        // Fuzz targets (scripts/fuzz.sh), one per input kind. Built with -sanitize=fuzzer -DFUZZING, libFuzzer drives
        // each; in the normal build each one's main runs its corpus (Fuzz/corpus) once, as a regression test.
        .target(name: "FuzzSupport", dependencies: ["SystemSupport"], path: "Fuzz/Support"),
        .target(name: "FuzzWeights", dependencies: ["FuzzSupport", "HTSAT", "FrontEnd"], path: "Fuzz/Weights"),
        .executableTarget(name: "FuzzCheckpoint", dependencies: ["FuzzSupport", "FuzzWeights", "HTSAT"], path: "Fuzz/FuzzCheckpoint"),
        .executableTarget(name: "FuzzPickle", dependencies: ["FuzzSupport", "FuzzWeights", "HTSAT"], path: "Fuzz/FuzzPickle"),
        .executableTarget(name: "FuzzAudioFile", dependencies: ["FuzzSupport", "AudioCapture", "SystemSupport"], path: "Fuzz/FuzzAudioFile"),
        .executableTarget(name: "FuzzConfig", dependencies: ["FuzzSupport", "Daemon"], path: "Fuzz/FuzzConfig"),

        // Fixture lookup and the event-line contract checker, shared by the test targets.
        .target(name: "TestSupport", dependencies: ["Detection"], path: "Tests/TestSupport"),
        .testTarget(name: "HTSATTests", dependencies: ["HTSAT", "FrontEnd", "AudioCapture", "TestSupport", "FuzzSupport"]),
        .testTarget(name: "AudioCaptureTests", dependencies: ["AudioCapture", "SystemSupport", "TestSupport"]),
        // The pure-logic tests, plus the event-line contract on the fixture streams through the real model.
        .testTarget(name: "DetectionTests", dependencies: ["Detection", "Engine", "HTSAT", "AudioCapture", "TestSupport",
                                                      .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Detection", "HTSAT", "AudioCapture", "Sinks", "TestSupport",
                                                   .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SinksTests", dependencies: ["Sinks", "Detection", "SystemSupport", "TestSupport"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "htsatd", "HTSAT", "AudioCapture", "SystemSupport", "TestSupport", "Clips", "CSndfile"]),
    ],
    swiftLanguageModes: [.v5]
)

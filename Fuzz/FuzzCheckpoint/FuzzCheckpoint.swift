import FuzzSupport
import FuzzWeights

/// A whole weights file (format detection, ZIP, pickle, safetensors), then what the daemon does with it: every
/// tensor read, the profile and architecture inferred, the model built.
enum FuzzCheckpoint: FuzzTarget {
    static let corpus = "checkpoint"
    static let file = ScratchFile()

    static func test(_ bytes: UnsafeRawBufferPointer) { loadAndExercise(bytes, in: file) }
}

#if !FUZZING
@main extension FuzzCheckpoint {}
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { FuzzCheckpoint.run(data, size) }

import FuzzSupport
import FuzzWeights

/// The input as the data.pkl of a torch.save archive that also holds storages "0" to "7" (64 bytes each: 16 floats
/// -4, -3, ... 11; "7" all zero), so the unpickler's output reaches tensor location, views and conversion without the
/// fuzzer having to keep a ZIP intact.
enum FuzzPickle: FuzzTarget {
    static let corpus = "pickle"
    static let file = ScratchFile()
    static let storages = (0..<8).map { key in
        ("archive/data/\(key)", TorchZip.le((0..<16).map { key == 7 ? 0 : Float($0 - 4).bitPattern }))
    }

    static func test(_ bytes: UnsafeRawBufferPointer) {
        let zip = TorchZip.archive([("archive/data.pkl", Array(bytes)), ("archive/byteorder", Array("little".utf8))] + storages)
        zip.withUnsafeBytes { loadAndExercise($0, in: file) }
    }
}

#if !FUZZING
@main extension FuzzPickle {}
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPickle(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { FuzzPickle.run(data, size) }

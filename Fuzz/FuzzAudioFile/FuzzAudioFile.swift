import AudioCapture
import FuzzSupport
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// An audio file, decoded the two ways the daemon reads one: by path at 32 kHz (`readAll`, as `htsatd tag` does),
/// and from a pipe at 16 kHz (`--input -`: the replay-buffer virtual IO), each to the end, resampling included.
enum FuzzAudioFile: FuzzTarget {
    static let corpus = "audio"
    static let file = ScratchFile()

    static func test(_ bytes: UnsafeRawBufferPointer) {
        file.write(bytes)
        expectClearErrors({ $0 is AudioFileError }) { _ = try AudioFileReader.readAll(path: file.path, targetRate: 32000) }
        // The pipe holds the whole input (64 KiB by default), so one thread writes it all before reading.
        var fds: [Int32] = [0, 0]
        guard bytes.count <= 65536, pipe(&fds) == 0 else { return }
        defer { close(fds[0]) }
        let written = writeAll(fds[1], bytes)
        close(fds[1])
        guard written == nil else { fatalError("pipe: \(written!)") }
        expectClearErrors({ $0 is AudioFileError }) {
            let reader = try AudioFileReader(fileDescriptor: fds[0], name: "-", targetRate: 16000)
            while try reader.nextChunk() != nil {}
        }
    }
}

#if !FUZZING
@main extension FuzzAudioFile {}
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAudioFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { FuzzAudioFile.run(data, size) }

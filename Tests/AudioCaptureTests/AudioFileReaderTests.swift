import AudioCapture
import CSndfile
import Foundation
import TestSupport
import XCTest

final class AudioFileReaderTests: XCTestCase {
    private var dir: URL!

    override func setUpWithError() throws {
        dir = try Fixtures.temporaryDirectory("audio-files")
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    /// 1 kHz in both channels (0.6 left, 0.2 right: mean 0.4) for `seconds` at `rate`.
    private func stereoTone(rate: Int, seconds: Double) -> [Float] {
        let n = Int(Double(rate) * seconds)
        return Signals.interleave([
            Signals.sine(frequency: 1000, amplitude: 0.6, rate: Double(rate), count: n),
            Signals.sine(frequency: 1000, amplitude: 0.2, rate: Double(rate), count: n),
        ])
    }

    private func assertTone(_ samples: [Float], seconds: Double, amplitude: Double, accuracy: Double = 0.002,
                            maxResidual: Double = 2e-3, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(samples.count - Int(32000 * seconds)), 1, "length", file: file, line: line)
        let fit = Signals.fitSine(samples[1000..<samples.count - 1000], frequency: 1000, rate: 32000)
        XCTAssertEqual(fit.amplitude, amplitude, accuracy: accuracy, "amplitude", file: file, line: line)
        XCTAssertLessThan(fit.residual, maxResidual, "a pure 1 kHz tone", file: file, line: line)
    }

    func testDecodesFormatsRatesAndChannelsToMono32k() throws {
        let cases: [(String, Int32, Int, Int, Double)] = [
            ("float48k-stereo.wav", Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT), 48000, 2, 2e-4),
            ("pcm16-48k-stereo.wav", Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16), 48000, 2, 5e-4),
            ("pcm16-32k-mono.wav", Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16), 32000, 1, 5e-4),
            ("pcm16-8k-mono.wav", Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16), 8000, 1, 5e-4),
            ("pcm24-44k-stereo.flac", Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_24), 44100, 2, 2e-4),
            ("vorbis-48k-stereo.ogg", Int32(SF_FORMAT_OGG | SF_FORMAT_VORBIS), 48000, 2, 2e-2),
        ]
        for (name, format, rate, channels, maxResidual) in cases {
            let url = dir.appendingPathComponent(name)
            let samples = channels == 2 ? stereoTone(rate: rate, seconds: 1.5)
                : Signals.sine(frequency: 1000, amplitude: 0.4, rate: Double(rate), count: rate * 3 / 2)
            try Signals.writeFile(url, samples: samples, rate: rate, channels: channels, format: format)

            let reader = try AudioFileReader(path: url.path, targetRate: 32000)
            XCTAssertEqual(reader.sourceRate, rate, name)
            XCTAssertEqual(reader.channels, channels, name)
            XCTAssertEqual(reader.sourceFrames, Int64(rate * 3 / 2), name)
            XCTAssertFalse(reader.formatDescription.isEmpty, name)
            print("\(name): \(reader.formatDescription)")

            let all = try AudioFileReader.readAll(path: url.path, targetRate: 32000)
            assertTone(all, seconds: 1.5, amplitude: 0.4, accuracy: name.hasSuffix(".ogg") ? 0.02 : 0.002, maxResidual: maxResidual)
        }
    }

    func testSameRateMonoFloatIsBitExact() throws {
        let url = dir.appendingPathComponent("exact.wav")
        let samples = Signals.sine(frequency: 123, amplitude: 0.9, rate: 32000, count: 50000)
        try Signals.writeFile(url, samples: samples, rate: 32000, channels: 1, format: Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT))
        XCTAssertEqual(try AudioFileReader.readAll(path: url.path, targetRate: 32000), samples)
    }

    func testChunkedReadingMatchesReadAllAndBoundsChunks() throws {
        let url = dir.appendingPathComponent("long.flac")
        try Signals.writeFile(url, samples: stereoTone(rate: 48000, seconds: 3), rate: 48000, channels: 2,
                              format: Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16))
        let all = try AudioFileReader.readAll(path: url.path, targetRate: 32000)

        let reader = try AudioFileReader(path: url.path, targetRate: 32000, chunkFrames: 4096)
        var pieces: [Float] = []
        var buffer = [Float](repeating: 0, count: 999)
        while true {
            let n = try buffer.withUnsafeMutableBufferPointer { try reader.read(into: $0) }
            if n == 0 { break }
            pieces += buffer[0..<n]
        }
        XCTAssertEqual(pieces.count, all.count)
        XCTAssertLessThan(zip(pieces, all).map { abs($0 - $1) }.max() ?? 1, 1e-5)
        XCTAssertEqual(try buffer.withUnsafeMutableBufferPointer { try reader.read(into: $0) }, 0, "stays at end")

        let chunked = try AudioFileReader(path: url.path, targetRate: 32000, chunkFrames: 4096)
        var total = 0
        while let chunk = try chunked.nextChunk() {
            XCTAssertLessThanOrEqual(chunk.count, 4096, "chunks stay bounded")
            total += chunk.count
        }
        XCTAssertEqual(total, all.count)
    }

    /// Feeds `data` through a real pipe from another thread; reads it via the descriptor.
    private func readThroughPipe(_ data: Data, name: String) throws -> [Float] {
        signal(SIGPIPE, SIG_IGN)  // a reader that refuses the header closes the pipe while the writer still writes
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        let writeEnd = fds[1]
        let writer = Thread {
            data.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let n = write(writeEnd, bytes.baseAddress! + offset, min(8192, bytes.count - offset))
                    if n <= 0 { break }
                    offset += n
                }
            }
            close(writeEnd)
        }
        writer.start()
        defer { close(fds[0]) }
        let reader = try AudioFileReader(fileDescriptor: fds[0], name: name, targetRate: 32000)
        var all: [Float] = []
        while let chunk = try reader.nextChunk() { all += chunk }
        return all
    }

    func testNonSeekablePipeWorksForWavFlacAndOgg() throws {
        // The float WAV is larger than the reader's 1 MiB replay prefix.
        let cases: [(String, Int32)] = [
            ("p.wav", Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)),
            ("p.flac", Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16)),
            ("p.ogg", Int32(SF_FORMAT_OGG | SF_FORMAT_VORBIS)),
        ]
        for (name, format) in cases {
            let url = dir.appendingPathComponent(name)
            try Signals.writeFile(url, samples: stereoTone(rate: 48000, seconds: 4), rate: 48000, channels: 2, format: format)
            let fromFile = try AudioFileReader.readAll(path: url.path, targetRate: 32000)
            let fromPipe = try readThroughPipe(try Data(contentsOf: url), name: name)
            XCTAssertEqual(fromPipe.count, fromFile.count, name)
            XCTAssertLessThan(zip(fromPipe, fromFile).map { abs($0 - $1) }.max() ?? 1, 1e-5, name)
        }
    }

    func testHeaderLengthIsNotTrustedForMemory() throws {
        // A FLAC STREAMINFO claiming 2^36 - 1 samples made readAll reserve 1 TB up front (a fuzz find).
        let url = dir.appendingPathComponent("claims.flac")
        let tone = Signals.sine(frequency: 1000, amplitude: 0.5, rate: 32000, count: 16000)
        try Signals.writeFile(url, samples: tone, rate: 32000, channels: 1, format: Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16))
        var data = try Data(contentsOf: url)
        data[21] |= 0x0f  // the total-samples field: the low 4 bits of byte 21, then bytes 22-25
        data.replaceSubrange(22..<26, with: [0xff, 0xff, 0xff, 0xff])
        try data.write(to: url)
        XCTAssertEqual(try AudioFileReader(path: url.path, targetRate: 32000).sourceFrames, (1 << 36) - 1)
        XCTAssertEqual(try AudioFileReader.readAll(path: url.path, targetRate: 32000).count, tone.count)
    }

    func testPipedBlockCodecsStopAtTheEndOfTheInput() throws {
        // libsndfile's GSM 6.10 and MS ADPCM decoders go on after a short read: with a header that declares more data
        // than the pipe brings (a fuzz find), they delivered silence for ever.
        for (name, format) in [("gsm.wav", SF_FORMAT_WAV | SF_FORMAT_GSM610), ("adpcm.wav", SF_FORMAT_WAV | SF_FORMAT_MS_ADPCM)] {
            let url = dir.appendingPathComponent(name)
            try Signals.writeFile(url, samples: Signals.sine(frequency: 1000, amplitude: 0.5, rate: 8000, count: 4000), rate: 8000,
                                  channels: 1, format: Int32(format))
            var data = try Data(contentsOf: url)
            let size = try XCTUnwrap(data.range(of: Data("data".utf8))).upperBound
            data.replaceSubrange(size..<(size + 4), with: [0xff, 0xff, 0xff, 0x7f])
            XCTAssertThrowsError(try readThroughPipe(data, name: name)) { error in
                XCTAssertEqual((error as? AudioFileError)?.kind, .invalidContents, "\(error)")
                XCTAssertTrue("\(error)".contains("past the end of the input"), "\(error)")
            }
        }
    }

    func testBrokenChunksOnAPipeFailInsteadOfLooping() throws {
        // On a pipe, where the length is unknown, libsndfile's header parser looped for ever (fuzz finds) on 19 bytes
        // ending inside a LIST chunk, and on 72 bytes whose GSM 'fact' chunk says 4 GB (growing its chunk list to
        // gigabytes). As from a file, both are now "no 'data' chunk".
        let cut = Data("RIFFv\0\0\0WAVELIST\u{14}\0\0".utf8)
        XCTAssertEqual(cut.count, 19)
        let huge = Data(base64Encoded: "UklGRnYAQABXQVZFZm10IBQAAAAxAAEAHAEAAFkGAABBAAAAAgBAAWZhY3T4////QAEAAGRhdGFBAABAHwAAWQAAHoRubgBA")!
        for (name, data) in [("cut.wav", cut), ("huge-chunk.wav", huge)] {
            try expectRefusedPromptly(name, containing: "No 'data' chunk") { _ = try self.readThroughPipe(data, name: name) }
        }
        // 118 bytes (a fuzz find) whose 4-GB LIST has a 1.8-GB entry: libsndfile's skip failed on the pipe, it parsed on
        // from where it was, and a later entry's size wrapped its count and looped it for ever inside its header cache.
        // Now the skip ends the stream, and what the LIST leaves to skip, 2.5 GB, would be a jump back.
        let wraps = Data(base64Encoded: "UklGRnYAAABXQVZFTElTVAD///////////9GbG9hdP///////////+////////////////9XQVZFTElTVAD//////////////////////////////2RzNjT//////////////////8uJAAAAAAAAAP///////w==")!
        XCTAssertEqual(wraps.count, 118)
        try expectRefusedPromptly("list-wraps.wav", containing: "leaves 2478374648 bytes to skip after its entries") {
            _ = try self.readThroughPipe(wraps, name: "list-wraps.wav")
        }
    }

    /// Runs `body` on another thread and expects an `.invalidContents` error mentioning `text` within 20 s (a header
    /// that loops libsndfile never returns).
    private func expectRefusedPromptly(_ name: String, containing text: String, line: UInt = #line,
                                       _ body: @escaping () throws -> Void) throws {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var outcome: Error?  // written before the signal, read after it
        DispatchQueue.global().async {
            do { try body() } catch { outcome = error }
            done.signal()
        }
        guard done.wait(timeout: .now() + 20) == .success else { return XCTFail("\(name): still parsing after 20 s", line: line) }
        XCTAssertEqual((outcome as? AudioFileError)?.kind, .invalidContents, "\(name): \(String(describing: outcome))", line: line)
        XCTAssertTrue("\(String(describing: outcome))".contains(text), "\(name): \(String(describing: outcome))", line: line)
    }

    /// An integer's bytes in the header's byte order.
    private func ordered<T: FixedWidthInteger>(_ value: T, bigEndian: Bool) -> Data {
        withUnsafeBytes(of: bigEndian ? value.bigEndian : value.littleEndian) { Data($0) }
    }

    /// A 32-bit size in the header's byte order.
    private func size(_ value: Int, bigEndian: Bool) -> Data {
        ordered(UInt32(truncatingIfNeeded: value), bigEndian: bigEndian)
    }

    /// A 16-bit 32-kHz mono WAV (RIFX when `bigEndian`) of 1 s of a 0.5 1-kHz tone, with `chunks` before its 'fmt '.
    private func wav(before chunks: Data, bigEndian: Bool = false) -> Data {
        let tone = Signals.sine(frequency: 1000, amplitude: 0.5, rate: 32000, count: 32000)
        var samples = Data()
        for x in tone {
            samples += ordered(Int16((x * 32767).rounded()), bigEndian: bigEndian)
        }
        func half(_ v: UInt16) -> Data { ordered(v, bigEndian: bigEndian) }
        let fmt = Data("fmt ".utf8) + size(16, bigEndian: bigEndian) + half(1) + half(1) + size(32000, bigEndian: bigEndian)
            + size(64000, bigEndian: bigEndian) + half(2) + half(16)
        let body = Data("WAVE".utf8) + chunks + fmt + Data("data".utf8) + size(samples.count, bigEndian: bigEndian) + samples
        return Data((bigEndian ? "RIFX" : "RIFF").utf8) + size(body.count, bigEndian: bigEndian) + body
    }

    private func list(_ entries: Data, bigEndian: Bool = false) -> Data {
        Data("LIST".utf8) + size(entries.count, bigEndian: bigEndian) + entries
    }

    /// LIST entries that loop libsndfile: 16 bytes of INFO and a tag, then an entry of 0xfffffff8 bytes.
    private func loopingEntries(bigEndian: Bool = false) -> Data {
        Data("INFO".utf8) + Data("ISFT".utf8) + size(4, bigEndian: bigEndian) + Data("abcd".utf8)
            + Data("XXXX".utf8) + size(0xffff_fff8, bigEndian: bigEndian) + Data(count: 80)
    }

    func testListChunksThatLoopLibsndfileAreRefusedByPathByDescriptorAndFromAPipe() throws {
        // libsndfile 1.2 counts a LIST's bytes in 32 bits: an entry of 0xfffffff8 bytes after 16 bytes of others wraps
        // the count past its bounds check, and its skip, an int, is 8 bytes back onto the entry itself. Stock sf_open
        // never returns on either of these 64-KB files.
        for bigEndian in [false, true] {
            let data = wav(before: list(loopingEntries(bigEndian: bigEndian), bigEndian: bigEndian), bigEndian: bigEndian)
            let url = dir.appendingPathComponent(bigEndian ? "loop-rifx.wav" : "loop.wav")
            try data.write(to: url)
            let text = "its LIST chunk at byte 12 has a sub-chunk 'XXXX' of 4294967288 bytes: corrupt, and libsndfile can loop"
            try expectRefusedPromptly("\(url.lastPathComponent) by path", containing: text) {
                _ = try AudioFileReader.readAll(path: url.path, targetRate: 32000)
            }
            try expectRefusedPromptly("\(url.lastPathComponent) by descriptor", containing: text) {
                let fd = open(url.path, O_RDONLY)
                defer { close(fd) }
                _ = try AudioFileReader(fileDescriptor: fd, name: url.path, targetRate: 32000)
            }
            try expectRefusedPromptly("\(url.lastPathComponent) from a pipe", containing: text) {
                _ = try self.readThroughPipe(data, name: url.lastPathComponent)
            }
        }
        // The same LIST after the samples: libsndfile seeks past them and parses on, from a pipe too (a fuzz find).
        let trailing = wav(before: Data()) + list(loopingEntries())
        let url = dir.appendingPathComponent("loop-after-data.wav")
        try trailing.write(to: url)
        let text = "its LIST chunk at byte 64044 has a sub-chunk 'XXXX' of 4294967288 bytes"
        try expectRefusedPromptly("loop-after-data.wav by path", containing: text) {
            _ = try AudioFileReader.readAll(path: url.path, targetRate: 32000)
        }
        try expectRefusedPromptly("loop-after-data.wav from a pipe", containing: text) {
            _ = try self.readThroughPipe(trailing, name: "loop-after-data.wav")
        }
    }

    func testListMetadataAndLargeChunksStillDecode() throws {
        // Tags, an adtl label and odd lengths (padded), little- and big-endian: the check must pass what is well formed.
        for bigEndian in [false, true] {
            let info = Data("INFO".utf8) + Data("INAM".utf8) + size(5, bigEndian: bigEndian) + Data("title\0".utf8)
                + Data("IART".utf8) + size(6, bigEndian: bigEndian) + Data("artist".utf8)
            let adtl = Data("adtl".utf8) + Data("labl".utf8) + size(10, bigEndian: bigEndian) + size(1, bigEndian: bigEndian)
                + Data("label\0".utf8)
            let data = wav(before: list(info, bigEndian: bigEndian) + list(adtl, bigEndian: bigEndian), bigEndian: bigEndian)
            let url = dir.appendingPathComponent(bigEndian ? "tags-rifx.wav" : "tags.wav")
            try data.write(to: url)
            assertTone(try AudioFileReader.readAll(path: url.path, targetRate: 32000), seconds: 1, amplitude: 0.5)
            assertTone(try readThroughPipe(data, name: url.lastPathComponent), seconds: 1, amplitude: 0.5)
        }
        // A 2-MB JUNK chunk before 'fmt ': fine by path. From a pipe the header is parsed within the 1-MB replay buffer,
        // so there it fails, saying what to do instead.
        let junk = wav(before: Data("JUNK".utf8) + size(2 << 20, bigEndian: false) + Data(count: 2 << 20))
        let url = dir.appendingPathComponent("junk.wav")
        try junk.write(to: url)
        assertTone(try AudioFileReader.readAll(path: url.path, targetRate: 32000), seconds: 1, amplitude: 0.5)
        try expectRefusedPromptly("junk.wav from a pipe", containing: "No 'data' chunk marker. (from a pipe, a WAV header is read within its first 1 MB; give the file by its path)") {
            _ = try self.readThroughPipe(junk, name: "junk.wav")
        }
    }

    func testDashReadsStandardInputFromAPipeOrARedirectedFile() throws {
        let url = dir.appendingPathComponent("stdin.flac")
        try Signals.writeFile(url, samples: stereoTone(rate: 48000, seconds: 1), rate: 48000, channels: 2,
                              format: Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16))
        let data = try Data(contentsOf: url)
        let savedStdin = dup(0)
        defer {
            dup2(savedStdin, 0)
            close(savedStdin)
        }

        // `cat file | htsatd --file -`
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        dup2(fds[0], 0)
        close(fds[0])
        let writeEnd = fds[1]
        let writer = Thread {
            data.withUnsafeBytes { _ = write(writeEnd, $0.baseAddress!, $0.count) }
            close(writeEnd)
        }
        writer.start()
        let piped = try AudioFileReader.readAll(path: "-", targetRate: 32000)
        dup2(savedStdin, 0)
        assertTone(piped, seconds: 1, amplitude: 0.4)

        // `htsatd --file - < file`
        let fd = open(url.path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        dup2(fd, 0)
        close(fd)
        let redirected = try AudioFileReader.readAll(path: "-", targetRate: 32000)
        dup2(savedStdin, 0)
        XCTAssertEqual(redirected, piped)
    }

    func testBadInputGivesClearErrors() throws {
        func expect(_ path: String, _ kind: AudioFileError.Kind, containing text: String, line: UInt = #line) {
            XCTAssertThrowsError(try AudioFileReader.readAll(path: path, targetRate: 32000), line: line) { error in
                guard let error = error as? AudioFileError else { return XCTFail("\(error)", line: line) }
                XCTAssertEqual(error.kind, kind, "\(error)", line: line)
                XCTAssertTrue(error.description.contains(path), "names the file: \(error)", line: line)
                XCTAssertTrue(error.description.lowercased().contains(text.lowercased()), "\(error)", line: line)
            }
        }
        expect(dir.appendingPathComponent("missing.wav").path, .cannotOpen, containing: "No such file")

        let noise = dir.appendingPathComponent("noise.wav")
        try Data((0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }).write(to: noise)
        expect(noise.path, .unrecognisedFormat, containing: "WAV, FLAC, OGG")

        let empty = dir.appendingPathComponent("empty.flac")
        try Data().write(to: empty)
        XCTAssertThrowsError(try AudioFileReader.readAll(path: empty.path, targetRate: 32000)) { error in
            XCTAssertTrue("\(error)".contains(empty.path), "\(error)")
        }
        XCTAssertThrowsError(try AudioFileReader.readAll(path: dir.path, targetRate: 32000)) { error in
            XCTAssertTrue("\(error)".contains(self.dir.path), "a directory: \(error)")
        }

        let slow = dir.appendingPathComponent("1hz.wav")
        try Signals.writeFile(slow, samples: [0, 0.1, 0.2], rate: 1, channels: 1, format: Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16))
        expect(slow.path, .invalidContents, containing: "sample rate 1 Hz")

        let good = dir.appendingPathComponent("good.wav")
        try Signals.writeFile(good, samples: [0, 0.1, 0.2], rate: 8000, channels: 1, format: Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16))
        XCTAssertThrowsError(try AudioFileReader(path: good.path, targetRate: 0)) { error in
            XCTAssertEqual((error as? AudioFileError)?.kind, .resampleFailed, "\(error)")
        }
    }

    func testTruncatedFilesNeitherCrashNorHang() throws {
        for (name, format) in [("t.flac", Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16)), ("t.wav", Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)),
                               ("t.ogg", Int32(SF_FORMAT_OGG | SF_FORMAT_VORBIS))] {
            let url = dir.appendingPathComponent(name)
            try Signals.writeFile(url, samples: stereoTone(rate: 48000, seconds: 2), rate: 48000, channels: 2, format: format)
            let data = try Data(contentsOf: url)
            try data.prefix(data.count / 2).write(to: url)
            do {
                let samples = try AudioFileReader.readAll(path: url.path, targetRate: 32000)
                XCTAssertLessThan(samples.count, 64000, "\(name): at most what the file holds")
                print("truncated \(name): \(samples.count) samples decoded")
            } catch let error as AudioFileError {
                XCTAssertTrue(error.description.contains(url.path), "\(error)")
                print("truncated \(name): \(error)")
            }
        }
    }

    /// The fuzz corpus (Fuzz/corpus/audio: seeds and past finds) decodes, or fails clearly, through the fuzz target.
    func testFuzzCorpus() throws { try assertFuzzCorpusPasses("FuzzAudioFile") }
}

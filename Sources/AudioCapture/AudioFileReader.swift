import CSndfile
import SystemSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why an audio file could not be decoded; names the file and the problem.
public struct AudioFileError: Error, CustomStringConvertible {
    /// The class of problem.
    public enum Kind: Sendable, Equatable {
        case cannotOpen          // missing, unreadable, or not a file
        case unrecognisedFormat  // not a format libsndfile decodes
        case invalidContents     // malformed header or data, unusable rate/channels
        case readFailed          // decoding failed part-way
        case resampleFailed
    }
    /// The path as given ("-" for stdin).
    public var path: String
    /// The class of problem.
    public var kind: Kind
    /// libsndfile's (or our) explanation.
    public var detail: String

    public var description: String {
        let what: String
        switch kind {
        case .cannotOpen: what = "cannot open audio file"
        case .unrecognisedFormat: what = "unrecognised audio format in"
        case .invalidContents: what = "invalid audio file"
        case .readFailed: what = "error decoding audio file"
        case .resampleFailed: what = "cannot resample audio file"
        }
        return "\(what) '\(path)': \(detail)"
    }
}

/// Decodes an audio file (anything libsndfile reads: WAV, FLAC, OGG/Vorbis, ...) at any rate and
/// channel count into mono (mean of channels) Float samples at `targetRate`, chunk by chunk,
/// so memory stays bounded for long files. Path "-" reads standard input, including from a
/// non-seekable pipe.
public final class AudioFileReader {
    /// The path as given.
    public let path: String
    /// The file's own sample rate in Hz.
    public let sourceRate: Int
    /// The file's channel count (averaged to mono).
    public let channels: Int
    /// Frames in the file at `sourceRate`, or nil when unknown (e.g. OGG from a pipe).
    public let sourceFrames: Int64?
    /// Rate of the delivered samples.
    public let targetRate: Int
    /// Container and encoding, e.g. "WAV (Microsoft), Signed 16 bit PCM".
    public let formatDescription: String

    private let file: OpaquePointer
    private let pipe: PipeSource?  // keeps the virtual-IO state alive while `file` is open
    private let chunkFrames: Int
    private var interleaved: [Float]
    private var mono: [Float]
    private var resampled: [Float]
    private let resampler: Resampler?
    private var pendingInResampled = false
    private var pendingStart = 0
    private var pendingEnd = 0
    private var sourceDone = false
    private var decodedFrames = 0
    private var finished = false

    /// Opens `path` ("-" = stdin). `chunkFrames` bounds how many source frames are decoded at once.
    public convenience init(path: String, targetRate: Int, chunkFrames: Int = 32768) throws {
        if path == "-" {
            try self.init(fileDescriptor: 0, name: "-", targetRate: targetRate, chunkFrames: chunkFrames)
            return
        }
        // Regular files only: opening a FIFO here as well would take a reader away from its writer.
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG {
            let fd = retryingEINTR { negativeErrno(open(path, O_RDONLY | O_CLOEXEC)) }
            if fd >= 0 {
                defer { close(Int32(fd)) }
                try Self.refuseLoopingHeader(fd: Int32(fd), name: path)
            }  // else sf_open says why
        }
        var info = SF_INFO()
        guard let handle = sf_open(path, Int32(SFM_READ), &info) else {
            throw Self.openError(path: path)
        }
        try self.init(handle: handle, info: info, pipe: nil, name: path, targetRate: targetRate, chunkFrames: chunkFrames)
    }

    /// Reads from an open file descriptor (left open; the caller owns it). Works for pipes:
    /// a non-seekable descriptor is read through a replay buffer that lets libsndfile re-read
    /// the start of the stream, which FLAC needs.
    public convenience init(fileDescriptor fd: Int32, name: String, targetRate: Int, chunkFrames: Int = 32768) throws {
        var info = SF_INFO()
        if lseek(fd, 0, SEEK_CUR) >= 0 {
            try Self.refuseLoopingHeader(fd: fd, name: name)
            guard let handle = sf_open_fd(fd, Int32(SFM_READ), &info, 0) else { throw Self.openError(path: name) }
            try self.init(handle: handle, info: info, pipe: nil, name: name, targetRate: targetRate, chunkFrames: chunkFrames)
        } else {
            let source = PipeSource(fd: fd)
            if let problem = WavListGuard.problem(length: nil, read: source.peek) {
                throw AudioFileError(path: name, kind: .invalidContents, detail: problem)
            }
            guard let handle = source.open(info: &info) else {
                if let readError = source.readError {
                    throw AudioFileError(path: name, kind: .cannotOpen, detail: readError)
                }
                var error = Self.openError(path: name)
                if source.headerPassedPrefix {
                    error.detail += " (from a pipe, a WAV header is read within its first \(source.prefixCapacity >> 20) MB; "
                        + "give the file by its path)"
                }
                throw error
            }
            try self.init(handle: handle, info: info, pipe: source, name: name, targetRate: targetRate, chunkFrames: chunkFrames)
        }
    }

    private init(handle: OpaquePointer, info: SF_INFO, pipe: PipeSource?, name: String, targetRate: Int, chunkFrames: Int) throws {
        guard info.channels >= 1, info.samplerate >= 1 else {
            sf_close(handle)
            throw AudioFileError(path: name, kind: .invalidContents,
                                 detail: "header declares \(info.channels) channels at \(info.samplerate) Hz")
        }
        guard (100...2_000_000).contains(info.samplerate) else {
            sf_close(handle)
            throw AudioFileError(path: name, kind: .invalidContents,
                                 detail: "sample rate \(info.samplerate) Hz is outside the supported 100...2000000 Hz")
        }
        guard targetRate > 0 else {
            sf_close(handle)
            throw AudioFileError(path: name, kind: .resampleFailed, detail: "target rate \(targetRate) Hz is not positive")
        }
        file = handle
        self.pipe = pipe
        path = name
        sourceRate = Int(info.samplerate)
        channels = Int(info.channels)
        // libsndfile reports an unknown length as a huge count.
        sourceFrames = info.frames >= 0 && info.frames < Int64.max / 4 ? info.frames : nil
        self.targetRate = targetRate
        formatDescription = Self.describe(handle: handle, format: info.format)
        // Bound the decode buffer (frames x channels) for files with very many channels, and the resampled one
        // (frames x rate ratio) for very low rates: 47 MB for a 100-Hz file otherwise. A short file gets buffers
        // of its length (a longer one than its header claims just takes more reads).
        let upsampling = max(1, targetRate / sourceRate)
        let claimed = sourceFrames.map { Int(min($0, Int64(chunkFrames))) } ?? chunkFrames
        self.chunkFrames = max(1, min(chunkFrames, max(256, claimed), max(256, (1 << 22) / channels),
                                      max(256, (1 << 20) / upsampling)))
        interleaved = [Float](repeating: 0, count: self.chunkFrames * channels)
        mono = [Float](repeating: 0, count: self.chunkFrames)
        if sourceRate == targetRate {
            resampler = nil
            resampled = []
        } else {
            do {
                let converter = try Resampler(inputRate: sourceRate, outputRate: targetRate)
                resampler = converter
                resampled = [Float](repeating: 0, count: converter.maxOutputCount(forInput: self.chunkFrames))
            } catch {
                sf_close(handle)
                throw AudioFileError(path: name, kind: .resampleFailed, detail: "\(error)")
            }
        }
    }

    deinit {
        sf_close(file)
    }

    /// Ends the stream early (shutdown): a read blocked on a pipe returns, and the reader then reports end of input.
    /// Any thread. Regular files never block, so they simply stop at the caller's next check.
    public func cancel() {
        pipe?.cancel()
    }

    /// Fills `buffer` with the next mono samples at `targetRate`. Returns how many were written;
    /// fewer than `buffer.count` only at the end, 0 once everything was delivered.
    public func read(into buffer: UnsafeMutableBufferPointer<Float>) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            if pendingStart < pendingEnd {
                let n = min(buffer.count - filled, pendingEnd - pendingStart)
                if pendingInResampled {
                    resampled.withUnsafeBufferPointer { src in
                        (buffer.baseAddress! + filled).update(from: src.baseAddress! + pendingStart, count: n)
                    }
                } else {
                    mono.withUnsafeBufferPointer { src in
                        (buffer.baseAddress! + filled).update(from: src.baseAddress! + pendingStart, count: n)
                    }
                }
                pendingStart += n
                filled += n
                continue
            }
            if finished { break }
            try refill()
        }
        return filled
    }

    /// The next block of at most `chunkFrames` samples at the target rate, or nil at the end.
    public func nextChunk() throws -> [Float]? {
        var chunk = [Float](repeating: 0, count: chunkFrames)
        let n = try chunk.withUnsafeMutableBufferPointer { try read(into: $0) }
        if n == 0 { return nil }
        chunk.removeLast(chunk.count - n)
        return chunk
    }

    /// Decodes the whole file at `path` ("-" = stdin) to mono samples at `targetRate`.
    public static func readAll(path: String, targetRate: Int) throws -> [Float] {
        let reader = try AudioFileReader(path: path, targetRate: targetRate)
        var all: [Float] = []
        if let frames = reader.sourceFrames {
            // The header's length is only a claim (a FLAC one can say 2^36 frames in a 100-byte file), so at most
            // 2^24 samples (64 MB) are reserved up front; a longer file grows the array as it is decoded.
            let expected = Double(frames) * Double(targetRate) / Double(reader.sourceRate)
            all.reserveCapacity(Int(min(expected, Double(1 << 24))) + 16)
        }
        while let chunk = try reader.nextChunk() {
            all.append(contentsOf: chunk)
        }
        return all
    }

    // MARK: Decoding

    /// Decodes one chunk (or drains the resampler at the end) into the pending span.
    private func refill() throws {
        pendingStart = 0
        pendingEnd = 0
        if !sourceDone {
            let frames = Int(interleaved.withUnsafeMutableBufferPointer {
                sf_readf_float(file, $0.baseAddress, sf_count_t(chunkFrames))
            })
            // A decoder that ignores short reads (libsndfile's GSM 6.10, when the header declares more data than a
            // pipe brings) would deliver made-up audio for ever once the input has ended.
            let endless = pipe?.endless ?? false
            if frames > 0 && !endless {
                decodedFrames += frames
                downmix(frames: frames)
                try deliver(frames: frames)
                return
            }
            if endless && !(pipe?.cancelled ?? false) {
                throw AudioFileError(path: path, kind: .invalidContents,
                                     detail: "the decoder reads on past the end of the input: the header declares more audio than the stream holds")
            }
            if sf_error(file) != 0 {
                throw AudioFileError(path: path, kind: .readFailed, detail: String(cString: sf_strerror(file)))
            }
            if let readError = pipe?.readError {
                throw AudioFileError(path: path, kind: .readFailed, detail: readError)
            }
            if decodedFrames == 0 && sourceFrames != 0 {
                throw AudioFileError(path: path, kind: .readFailed,
                                     detail: "no audio could be decoded (truncated or corrupt file?)")
            }
            sourceDone = true
        }
        guard let resampler else {
            finished = true
            return
        }
        do {
            let made = try resampled.withUnsafeMutableBufferPointer { try resampler.flush(output: $0) }
            pendingInResampled = true
            pendingEnd = made
            if made == 0 { finished = true }
        } catch {
            throw AudioFileError(path: path, kind: .resampleFailed, detail: "\(error)")
        }
    }

    private func downmix(frames: Int) {
        let channelCount = channels
        let scale = 1 / Float(channelCount)
        interleaved.withUnsafeBufferPointer { src in
            mono.withUnsafeMutableBufferPointer { dst in
                if channelCount == 1 {
                    dst.baseAddress!.update(from: src.baseAddress!, count: frames)
                    return
                }
                for frame in 0..<frames {
                    var sum: Float = 0
                    let base = frame * channelCount
                    for channel in 0..<channelCount { sum += src[base + channel] }
                    dst[frame] = sum * scale
                }
            }
        }
    }

    private func deliver(frames: Int) throws {
        guard let resampler else {
            pendingInResampled = false
            pendingEnd = frames
            return
        }
        do {
            var offset = 0
            var produced = 0
            // At most 2^16 output samples' worth of input per call: soxr grows its internal FIFOs (by realloc) to
            // what one call produces, megabytes per chunk when upsampling a 100-Hz file.
            let step = max(1, (1 << 16) * resampler.inputRate / resampler.outputRate)
            while offset < frames {  // one pass in practice unless upsampling a lot (output sized by maxOutputCount)
                if produced == resampled.count {
                    resampled += [Float](repeating: 0, count: resampled.count)
                }
                let result = try mono.withUnsafeBufferPointer { input in
                    try resampled.withUnsafeMutableBufferPointer { output in
                        try resampler.process(input: UnsafeBufferPointer(rebasing: input[offset..<min(frames, offset + step)]),
                                              output: UnsafeMutableBufferPointer(rebasing: output[produced...]))
                    }
                }
                if result.consumed + result.produced == 0 { break }
                offset += result.consumed
                produced += result.produced
            }
            pendingInResampled = true
            pendingEnd = produced
        } catch {
            throw AudioFileError(path: path, kind: .resampleFailed, detail: "\(error)")
        }
    }

    // MARK: Errors and descriptions

    /// Throws when libsndfile would never return from parsing this seekable input's header (see `WavListGuard`).
    /// Reads with pread from the descriptor's current offset, which is where libsndfile starts, and leaves it there.
    private static func refuseLoopingHeader(fd: Int32, name: String) throws {
        var st = stat()
        let start = lseek(fd, 0, SEEK_CUR)
        guard fstat(fd, &st) == 0, start >= 0 else { return }  // libsndfile reports it
        let length = max(Int(st.st_size) - Int(start), 0)
        let problem = WavListGuard.problem(length: length) { offset, count in
            var bytes = [UInt8](repeating: 0, count: max(0, min(count, length - offset)))
            let n = bytes.withUnsafeMutableBytes { buffer in
                retryingEINTR { negativeErrno(pread(fd, buffer.baseAddress, buffer.count, off_t(start) + off_t(offset))) }
            }
            return Array(bytes.prefix(max(n, 0)))
        }
        if let problem { throw AudioFileError(path: name, kind: .invalidContents, detail: problem) }
    }

    private static func openError(path: String) -> AudioFileError {
        let message = String(cString: sf_strerror(nil))
        switch Int(sf_error(nil)) {
        case Int(SF_ERR_UNRECOGNISED_FORMAT):
            return AudioFileError(path: path, kind: .unrecognisedFormat,
                                  detail: "\(message) (expected WAV, FLAC, OGG or another format libsndfile reads)")
        case Int(SF_ERR_SYSTEM):
            return AudioFileError(path: path, kind: .cannotOpen, detail: message)
        default:
            return AudioFileError(path: path, kind: .invalidContents, detail: message)
        }
    }

    private static func describe(handle: OpaquePointer, format: Int32) -> String {
        func name(_ code: Int32) -> String? {
            var info = SF_FORMAT_INFO()
            info.format = code
            guard sf_command(handle, Int32(SFC_GET_FORMAT_INFO), &info, Int32(MemoryLayout<SF_FORMAT_INFO>.size)) == 0,
                  let text = info.name else { return nil }
            return String(cString: text)
        }
        let container = name(format & Int32(SF_FORMAT_TYPEMASK))
        let encoding = name(format & Int32(SF_FORMAT_SUBMASK))
        return [container, encoding].compactMap { $0 }.joined(separator: ", ")
    }
}

/// libsndfile virtual IO over a non-seekable descriptor. libsndfile (FLAC especially) seeks
/// back to re-read the header; the first `prefixCapacity` bytes are kept so such seeks succeed.
/// Seeks that would need discarded data fail, which libsndfile tolerates for the probing it does
/// (e.g. the last OGG page). A WAV header is parsed as a file of the prefix's bytes (`headerInPrefix`).
private final class PipeSource {
    let fd: Int32
    let prefixCapacity = 1 << 20
    private let prefix: UnsafeMutableRawPointer
    private var buffered = 0  // bytes held in `prefix` (all consumed bytes while < capacity)
    private var consumed = 0  // bytes taken from the descriptor
    private var position = 0  // libsndfile's logical offset
    private(set) var readError: String?
    /// Set once a read returned early because of `cancel()`.
    private(set) var cancelled = false
    /// Reads that came up short: at the end of the stream (or cancelled) a decoder sees a few; one that keeps
    /// reading there is decoding nothing.
    private var shortReads = 0
    /// `tell` calls since the last read or seek: a header parser spinning on a chunk it holds in its cache asks for
    /// the position and nothing else (and grows its chunk list each time: 2 GB in seconds).
    private var idleTells = 0
    /// `peek` met the end of the stream (or a cancel): reading again would only wait.
    private var peekedToEnd = false
    /// While libsndfile parses a WAV header: the stream is a file of the prefix's bytes. Reads end at the prefix's
    /// end, and a seek past the bytes there lands in a hole where reads end, as on a file, instead of failing.
    /// libsndfile takes virtual IO as seekable, so it seeks past the samples for trailing chunks; when that seek
    /// failed it parsed the samples as chunks, a walk `WavListGuard` cannot check ahead of it.
    private var headerInPrefix = false
    /// The WAV header parse went past the prefix (see `headerInPrefix`): for the error when it fails.
    private(set) var headerPassedPrefix = false
    /// libsndfile loops on the stream instead of reading it: both counts far beyond what parsing or decoding needs.
    var endless: Bool { shortReads > 64 || idleTells > 100_000 }

    /// Woken by `cancel()`, so a read blocked on the source returns.
    private let cancelPipe = try? WakePipe()

    init(fd: Int32) {
        self.fd = fd
        prefix = .allocate(byteCount: prefixCapacity, alignment: 16)
    }

    deinit {
        prefix.deallocate()
    }

    /// Makes the current and every later read return end of stream. Any thread.
    func cancel() {
        cancelPipe?.wake()
    }

    /// Opens libsndfile on this source; nil on failure (see sf_strerror(nil) / `readError`).
    func open(info: inout SF_INFO) -> OpaquePointer? {
        var io = SF_VIRTUAL_IO(
            get_filelen: { _ in sf_count_t.max },  // unknown length: let the header decide
            seek: { offset, whence, user in
                Unmanaged<PipeSource>.fromOpaque(user!).takeUnretainedValue().seek(offset, whence)
            },
            read: { ptr, count, user in
                Unmanaged<PipeSource>.fromOpaque(user!).takeUnretainedValue().read(ptr!, count)
            },
            write: nil,
            tell: { user in
                Unmanaged<PipeSource>.fromOpaque(user!).takeUnretainedValue().tell()
            })
        headerInPrefix = WavListGuard.isWAV(peek(0, 12))
        defer { headerInPrefix = false }
        return sf_open_virtual(&io, Int32(SFM_READ), &info, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Reads up to `count` more bytes of the stream into the replay prefix, which holds every byte read so far (the
    /// callers check that `consumed == buffered`); returns how many came.
    @discardableResult
    private func fillPrefix(_ count: Int) -> Int {
        let n = readRaw(prefix + buffered, count)
        buffered += n
        consumed += n
        return n
    }

    /// Up to `count` bytes at `offset` from the start of the stream, read ahead into the replay prefix without moving
    /// libsndfile's position (it is served from the prefix later); fewer at the end of the stream or of the prefix,
    /// which is where a WAV header's parse ends (`headerInPrefix`).
    func peek(_ offset: Int, _ count: Int) -> [UInt8] {
        let end = min(offset + count, prefixCapacity)
        guard offset >= 0, offset < end else { return [] }
        if end > buffered, consumed == buffered, !peekedToEnd {
            let want = end - buffered
            peekedToEnd = fillPrefix(want) < want
        }
        guard offset < buffered else { return [] }
        return Array(UnsafeRawBufferPointer(start: prefix + offset, count: min(end, buffered) - offset))
    }

    /// libsndfile's offset, except once `endless`: then the end of a file of unknown length. Its header parsers
    /// stop there, where on a file they would stop at its known length: a chunk cut short by the end of the stream
    /// (a 19-byte WAV) or one of 4 GB (72 bytes) loops them for ever.
    private func tell() -> sf_count_t {
        idleTells += 1
        return endless ? sf_count_t.max : sf_count_t(position)
    }

    /// Reads from the descriptor until `count` bytes or end of stream.
    private func readRaw(_ dst: UnsafeMutableRawPointer, _ count: Int) -> Int {
        var done = 0
        while done < count {
            // Wait for data or a cancel, so shutdown never hangs on a silent pipe.
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: cancelPipe?.readFD ?? -1, events: Int16(POLLIN), revents: 0)]
            _ = posixCall { poll(&fds, 2, -1) }  // a negative fd is ignored by poll
            if fds[1].revents != 0 {
                cancelled = true
                break
            }
            let n = retryingEINTR { negativeErrno(Glibc.read(fd, dst + done, count - done)) }
            if n < 0 {
                readError = "read failed: \(Errno(Int32(-n)))"
                break
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    private func read(_ dst: UnsafeMutableRawPointer, _ count: sf_count_t) -> sf_count_t {
        idleTells = 0
        var done = 0
        let want = Int(count)
        while done < want {
            if position < buffered {
                let n = min(want - done, buffered - position)
                (dst + done).copyMemory(from: prefix + position, byteCount: n)
                position += n
                done += n
            } else if position == consumed && consumed < prefixCapacity {
                // Still filling the replay prefix: read into it, then copy out.
                if fillPrefix(min(want - done, prefixCapacity - buffered)) == 0 { break }
            } else if position == consumed && !headerInPrefix {
                let n = readRaw(dst + done, want - done)
                consumed += n
                position += n
                done += n
                break
            } else {
                // The bytes at `position` were discarded, or lie past a WAV header's prefix: a short read.
                if headerInPrefix && position >= prefixCapacity { headerPassedPrefix = true }
                break
            }
        }
        if done < want { shortReads += 1 }
        return sf_count_t(done)
    }

    private func seek(_ offset: sf_count_t, _ whence: Int32) -> sf_count_t {
        idleTells = 0
        let target: Int
        switch whence {
        case SEEK_SET: target = Int(offset)
        case SEEK_CUR: target = position + Int(offset)
        default: return -1  // SEEK_END: length unknown
        }
        if target < 0 { return -1 }
        if target <= buffered || target == consumed {
            position = target
            return sf_count_t(target)
        }
        // Forward into the not-yet-read part of the prefix: read it in.
        if target > consumed && target <= prefixCapacity && consumed == buffered {
            fillPrefix(target - buffered)
            guard consumed == target || headerInPrefix else { return -1 }
            position = target
            return sf_count_t(target)
        }
        if headerInPrefix {
            if target > prefixCapacity { headerPassedPrefix = true }
            position = target  // a hole (see `headerInPrefix`)
            return sf_count_t(target)
        }
        return -1
    }
}

import CSndfile
import Foundation
import SystemSupport

/// Why a clip file could not be written.
public struct ClipFileError: Error, CustomStringConvertible, Equatable {
    /// The file concerned.
    public var path: String
    /// What failed.
    public var detail: String
    public var description: String { "\(path): \(detail)" }
}

/// A mono clip being written with libsndfile to a file descriptor we own (so its size can be checked).
final class SoundFileWriter {
    let path: String
    private let fd: Int32
    private var handle: OpaquePointer?
    private(set) var frames: Int64 = 0

    /// Creates `path` (which must not exist) for `format` at `sampleRate`.
    init(path: String, format: ClipFormat, sampleRate: Int) throws {
        self.path = path
        switch posixCall({ open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }) {
        case .success(let fd): self.fd = Int32(fd)
        case .failure(let e): throw ClipFileError(path: path, detail: "cannot create: \(e)")
        }
        var info = SF_INFO()
        info.samplerate = Int32(sampleRate)
        info.channels = 1
        info.format = format == .flac ? Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16) : Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)
        guard let h = sf_open_fd(fd, Int32(SFM_WRITE), &info, 0) else {
            let reason = String(cString: sf_strerror(nil))
            close(fd)
            throw ClipFileError(path: path, detail: "libsndfile cannot open it for writing: \(reason)")
        }
        handle = h
        // Out-of-range samples clip instead of wrapping around in 16-bit.
        sf_command(h, Int32(SFC_SET_CLIPPING), nil, Int32(SF_TRUE))
    }

    deinit { if handle != nil { _ = try? finish() } }

    /// Appends samples; throws on a short write (full disk, I/O error).
    func write(_ samples: UnsafeBufferPointer<Float>) throws {
        guard let handle, let base = samples.baseAddress, !samples.isEmpty else { return }
        let n = sf_write_float(handle, base, sf_count_t(samples.count))
        frames += Int64(max(0, n))
        if n != samples.count || sf_error(handle) != 0 {
            throw ClipFileError(path: path, detail: "write failed: \(String(cString: sf_strerror(handle)))")
        }
    }

    /// Bytes on disk so far.
    var bytes: Int64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? Int64(st.st_size) : 0
    }

    /// Flushes and closes; throws if anything failed, including the final flush (FLAC writes its last block here).
    func finish() throws {
        guard let h = handle else { return }
        handle = nil
        let closed = sf_close(h)
        let synced = posixCall { fsync(fd) }
        close(fd)
        if closed != 0 { throw ClipFileError(path: path, detail: "closing failed: \(String(cString: sf_error_number(closed)))") }
        if case .failure(let e) = synced { throw ClipFileError(path: path, detail: "fsync failed: \(e)") }
    }

    /// Closes without caring (the file is being abandoned).
    func abandon() {
        if let h = handle { sf_close(h); handle = nil; close(fd) }
    }

    /// Frames libsndfile reads back from a finished file (nil if unreadable): catches a clip a full disk cut short.
    static func frameCount(path: String) -> Int64? {
        var info = SF_INFO()
        guard let h = sf_open(path, Int32(SFM_READ), &info) else { return nil }
        sf_close(h)
        return Int64(info.frames)
    }

    /// A whole mono file as float samples (for its spectrogram).
    static func readAll(path: String) -> [Float]? {
        var info = SF_INFO()
        guard let h = sf_open(path, Int32(SFM_READ), &info) else { return nil }
        defer { sf_close(h) }
        guard info.channels == 1 else { return nil }
        var out = [Float](repeating: 0, count: Int(info.frames))
        let n = out.withUnsafeMutableBufferPointer { sf_readf_float(h, $0.baseAddress, sf_count_t($0.count)) }
        return Array(out.prefix(Int(max(0, n))))
    }
}

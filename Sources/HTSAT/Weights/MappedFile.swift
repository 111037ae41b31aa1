#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SystemSupport

/// A whole file mapped read-only (MAP_PRIVATE), unmapped when the last reference goes.
final class MappedFile: @unchecked Sendable {
    let path: String
    let base: UnsafeRawPointer
    let count: Int

    /// Maps `path`; an empty file is reported as `.empty` because mmap rejects zero lengths.
    init(path: String) throws {
        self.path = path
        let fd: Int32
        switch posixCall({ open(path, O_RDONLY | O_CLOEXEC) }) {
        case .success(let n): fd = Int32(n)
        case .failure(let error): throw WeightsError.cannotOpen(file: path, reason: "\(error)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw WeightsError.cannotOpen(file: path, reason: "\(Errno.current)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw WeightsError.cannotOpen(file: path, reason: "not a regular file") }
        guard st.st_size > 0 else { throw WeightsError.empty(file: path) }
        let size = Int(st.st_size)
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw WeightsError.cannotOpen(file: path, reason: "mmap: \(Errno.current)")
        }
        base = UnsafeRawPointer(p)
        count = size
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), count) }

    /// The bytes `[offset, offset+length)`, or nil when that range leaves the file.
    func bytes(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }
}

/// Little-endian reads from a raw buffer; callers bounds-check first.
extension UnsafeRawBufferPointer {
    func le16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    func le32(_ at: Int) -> UInt32 { UInt32(le16(at)) | UInt32(le16(at + 2)) << 16 }
    func le64(_ at: Int) -> UInt64 { UInt64(le32(at)) | UInt64(le32(at + 4)) << 32 }
}

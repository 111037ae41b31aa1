/// The central directory of a ZIP archive over a mapped file (ZIP64 aware); entries are read in place.
struct ZipArchive {
    /// One file in the archive, as the central directory describes it.
    struct Entry {
        var name: String
        var method: UInt16
        var compressedSize: Int
        var uncompressedSize: Int
        var localHeaderOffset: Int
    }

    let file: MappedFile
    /// Entries in central-directory order.
    let entries: [Entry]
    private let index: [String: Int]

    init(_ file: MappedFile) throws {
        self.file = file
        let path = file.path
        let all = UnsafeRawBufferPointer(start: file.base, count: file.count)
        guard let eocd = ZipArchive.findEndRecord(all) else {
            throw WeightsError.truncated(file: path, detail: "no ZIP end-of-central-directory record; the archive was cut short")
        }
        var total = Int(all.le16(eocd + 10))
        var cdSize = Int(all.le32(eocd + 12))
        var cdOffset = Int(all.le32(eocd + 16))
        var cdLimit = eocd
        // ZIP64: a locator just before the end record points at the 64-bit end record.
        if eocd >= 20, all.le32(eocd - 20) == 0x0706_4b50 {
            let recordAt = all.le64(eocd - 20 + 8)
            guard recordAt <= UInt64(eocd - 20), Int(recordAt) + 56 <= eocd - 20,
                  all.le32(Int(recordAt)) == 0x0606_4b50 else {
                throw WeightsError.corrupt(file: path, detail: "ZIP64 end-of-central-directory locator points outside the archive")
            }
            let r = Int(recordAt)
            let t = all.le64(r + 32), s = all.le64(r + 40), o = all.le64(r + 48)
            guard t <= UInt64(Int.max), s <= UInt64(Int.max), o <= UInt64(Int.max) else {
                throw WeightsError.corrupt(file: path, detail: "ZIP64 end record has impossible sizes")
            }
            (total, cdSize, cdOffset, cdLimit) = (Int(t), Int(s), Int(o), r)
        }
        guard cdOffset <= cdLimit, cdSize <= cdLimit - cdOffset else {
            throw WeightsError.truncated(file: path, detail: "ZIP central directory (\(cdSize) bytes at \(cdOffset)) lies beyond the data that precedes its end record")
        }
        guard total <= cdSize / 46 else {
            throw WeightsError.corrupt(file: path, detail: "ZIP declares \(total) entries, more than its \(cdSize)-byte central directory can hold")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(total)
        var pos = cdOffset
        let cdEnd = cdOffset + cdSize
        for _ in 0..<total {
            guard pos + 46 <= cdEnd, all.le32(pos) == 0x0201_4b50 else {
                throw WeightsError.corrupt(file: path, detail: "ZIP central directory entry \(entries.count) at offset \(pos) is malformed")
            }
            let nameLen = Int(all.le16(pos + 28)), extraLen = Int(all.le16(pos + 30)), commentLen = Int(all.le16(pos + 32))
            let next = pos + 46 + nameLen + extraLen + commentLen
            guard next <= cdEnd else {
                throw WeightsError.corrupt(file: path, detail: "ZIP central directory entry \(entries.count) overruns the directory")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: all[(pos + 46)..<(pos + 46 + nameLen)]), as: UTF8.self)
            var comp = UInt64(all.le32(pos + 20)), uncomp = UInt64(all.le32(pos + 24)), local = UInt64(all.le32(pos + 42))
            // ZIP64 extra field (tag 1) carries, in order, only the fields whose 32-bit value is saturated.
            var e = pos + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let tag = all.le16(e), size = Int(all.le16(e + 2))
                guard e + 4 + size <= extraEnd else { break }
                if tag == 1 {
                    var f = e + 4
                    for field in [0, 1, 2] {
                        let saturated = field == 0 ? uncomp == 0xFFFF_FFFF : field == 1 ? comp == 0xFFFF_FFFF : local == 0xFFFF_FFFF
                        guard saturated else { continue }
                        guard f + 8 <= e + 4 + size else {
                            throw WeightsError.corrupt(file: path, detail: "ZIP64 extra field of '\(name)' is too short")
                        }
                        let v = all.le64(f); f += 8
                        if field == 0 { uncomp = v } else if field == 1 { comp = v } else { local = v }
                    }
                }
                e += 4 + size
            }
            guard comp <= UInt64(all.count), uncomp <= UInt64(Int.max), local <= UInt64(all.count) else {
                throw WeightsError.truncated(file: path, detail: "ZIP entry '\(name)' lies beyond the end of the file")
            }
            entries.append(Entry(name: name, method: all.le16(pos + 10), compressedSize: Int(comp),
                                 uncompressedSize: Int(uncomp), localHeaderOffset: Int(local)))
            pos = next
        }
        self.entries = entries
        var index: [String: Int] = [:]
        for (i, e) in entries.enumerated() where index[e.name] == nil { index[e.name] = i }
        self.index = index
    }

    func contains(_ name: String) -> Bool { index[name] != nil }

    /// The bytes of a stored (uncompressed) entry, in place in the mapping.
    func data(_ name: String) throws -> UnsafeRawBufferPointer {
        let path = file.path
        guard let i = index[name] else { throw WeightsError.corrupt(file: path, detail: "ZIP entry '\(name)' is missing") }
        let e = entries[i]
        guard e.method == 0 else {
            throw WeightsError.unsupportedFormat(file: path, detail: "ZIP entry '\(name)' is compressed (method \(e.method)); torch.save stores entries uncompressed, so re-save it with torch.save instead of re-zipping it")
        }
        guard e.compressedSize == e.uncompressedSize else {
            throw WeightsError.corrupt(file: path, detail: "stored ZIP entry '\(name)' has different compressed and uncompressed sizes")
        }
        guard let header = file.bytes(e.localHeaderOffset, 30), header.le32(0) == 0x0403_4b50 else {
            throw WeightsError.corrupt(file: path, detail: "ZIP local header of '\(name)' at offset \(e.localHeaderOffset) is missing or malformed")
        }
        let start = e.localHeaderOffset + 30 + Int(header.le16(26)) + Int(header.le16(28))
        guard let bytes = file.bytes(start, e.compressedSize) else {
            throw WeightsError.truncated(file: path, detail: "ZIP entry '\(name)' (\(e.compressedSize) bytes at \(start)) runs past the end of the file")
        }
        return bytes
    }

    /// Offset of the end-of-central-directory record, searched backwards over the maximal comment length.
    private static func findEndRecord(_ all: UnsafeRawBufferPointer) -> Int? {
        guard all.count >= 22 else { return nil }
        let lowest = max(0, all.count - 22 - 0xFFFF)
        var p = all.count - 22
        while p >= lowest {
            if all.le32(p) == 0x0605_4b50, p + 22 + Int(all.le16(p + 20)) <= all.count { return p }
            p -= 1
        }
        return nil
    }
}

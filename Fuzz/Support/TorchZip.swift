/// Builds a ZIP the way torch.save lays one out: entries stored, each one's data 64-byte aligned through an extra
/// field; optionally ZIP64 (every size and offset in the ZIP64 extra field and end records). The pickle fuzz target
/// wraps its input in one; the weights tests write their hand-made checkpoints with it.
public enum TorchZip {
    public static func archive(_ entries: [(String, [UInt8])], method: UInt16 = 0, zip64: Bool = false) -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        func u16(_ v: Int, _ b: inout [UInt8]) { b += le([UInt16(v)]) }
        func u32(_ v: Int, _ b: inout [UInt8]) { b += le([UInt32(truncatingIfNeeded: v)]) }
        for (entryName, data) in entries {
            let nameBytes = Array(entryName.utf8), offset = out.count
            let pad = (64 - (offset + 30 + nameBytes.count + 4) % 64) % 64
            let crc = crc32(data)
            out += [0x50, 0x4b, 0x03, 0x04]; u16(20, &out); u16(0, &out); u16(Int(method), &out); u32(0, &out)
            u32(Int(crc), &out); u32(data.count, &out); u32(data.count, &out); u16(nameBytes.count, &out); u16(4 + pad, &out)
            out += nameBytes; u16(0x4246, &out); u16(pad, &out); out += [UInt8](repeating: 0x5a, count: pad); out += data
            let extra: [UInt8] = zip64 ? le([UInt16(1), UInt16(24)]) + le([UInt64(data.count), UInt64(data.count), UInt64(offset)]) : []
            let sat = 0xFFFF_FFFF
            central += [0x50, 0x4b, 0x01, 0x02]; u16(45, &central); u16(45, &central); u16(0, &central); u16(Int(method), &central)
            u32(0, &central); u32(Int(crc), &central); u32(zip64 ? sat : data.count, &central); u32(zip64 ? sat : data.count, &central)
            u16(nameBytes.count, &central); u16(extra.count, &central); u16(0, &central); u16(0, &central); u16(0, &central)
            u32(0, &central); u32(zip64 ? sat : offset, &central); central += nameBytes + extra
        }
        let cdOffset = out.count
        out += central
        if zip64 {
            let record = out.count
            out += [0x50, 0x4b, 0x06, 0x06] + le([UInt64(44)]) + le([UInt16(45), UInt16(45)]) + le([UInt32(0), UInt32(0)])
            out += le([UInt64(entries.count), UInt64(entries.count), UInt64(central.count), UInt64(cdOffset)])
            out += [0x50, 0x4b, 0x06, 0x07] + le([UInt32(0)]) + le([UInt64(record)]) + le([UInt32(1)])
        }
        out += [0x50, 0x4b, 0x05, 0x06]; u16(0, &out); u16(0, &out)
        u16(zip64 ? 0xFFFF : entries.count, &out); u16(zip64 ? 0xFFFF : entries.count, &out)
        u32(zip64 ? 0xFFFF_FFFF : central.count, &out); u32(zip64 ? 0xFFFF_FFFF : cdOffset, &out); u16(0, &out)
        return out
    }

    /// Little-endian bytes of `values`.
    public static func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.flatMap { v in (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return ~c
    }
}

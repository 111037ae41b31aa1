/// Finds the WAV headers on which libsndfile's header parser never returns, so that they are refused before it sees
/// them.
///
/// libsndfile 1.2 (Debian 12's 1.2.0 and upstream to at least July 2026) walks a LIST chunk's sub-chunks in
/// `wavlike_subchunk_parse` with a 32-bit byte count and skips with an `int`. A skip of 2 GB or more, from a sub-chunk
/// size that wraps the count past its bounds check or a LIST as long as a pipe allows, becomes a jump back into the
/// header bytes it has just parsed: it reads them again, and again, for ever, without touching the input, so nothing
/// on our side of its I/O can stop it. No real file holds a 2-GB LIST entry; refusing one loses nothing.
///
/// This walks the header the way libsndfile's `wav_read_header` and `wavlike_subchunk_parse` do, with the same 32-bit
/// arithmetic, and reports the first such skip.
final class WavListGuard {
    /// Up to `count` bytes at `offset` from the start of the input, fewer at its end (for a pipe, the end of what
    /// libsndfile may parse as its header: see `PipeSource.headerInPrefix`).
    typealias Read = (_ offset: Int, _ count: Int) -> [UInt8]
    /// Thrown once the walk has read 1 MB, far more than libsndfile's 64-KB header cache lets it read: it has stopped.
    private struct PastHeaderCache: Error {}

    private let read: Read
    /// The input's length; nil for a stream, whose length libsndfile takes as unbounded.
    private let length: Int?
    private var bigEndian = false
    /// Bytes read so far, against the header cache's bound.
    private var bytesTaken = 0

    /// Why libsndfile would loop on this input's header, or nil.
    static func problem(length: Int?, read: @escaping Read) -> String? {
        do {
            return try WavListGuard(read: read, length: length).run()
        } catch {
            return nil  // PastHeaderCache: libsndfile has stopped reading long before
        }
    }

    /// Whether these first 12 bytes start a WAV (RIFF, RIFX or RF64) file, the kind this checks.
    static func isWAV(_ head: [UInt8]) -> Bool {
        head.count >= 12 && ["RIFF", "RIFX", "RF64"].contains(String(decoding: head[0..<4], as: UTF8.self))
            && String(decoding: head[8..<12], as: UTF8.self) == "WAVE"
    }

    private init(read: @escaping Read, length: Int?) {
        self.read = read
        self.length = length
    }

    /// The top level, as `wav_read_header` steps through it.
    private func run() throws -> String? {
        guard Self.isWAV(try bytes(0, 12)), let riff = try word(0, marker: true) else { return nil }
        bigEndian = riff == fourCC("RIFX")
        let riffSize = try word(4)
        var position = 12
        while true {
            guard let marker = try word(position, marker: true), marker != 0,
                  let size = try word(position + 4) else { return nil }
            let body = position + 8
            var chunkSize = size  // what its end-of-chunk checks see
            var pad = Int(size & 1)
            switch marker {
            case fourCC("data"):
                // The header goes on after the samples (clamped to the file): libsndfile seeks past them, on a pipe
                // too. RF64's size is in its ds64 chunk.
                let end = length ?? Int.max
                guard riff != fourCC("RF64"), !(size == 0 && riffSize == 8 && end > 44) else { return nil }
                position = body + min(Int(size), max(end - body, 0)) + pad
                chunkSize = 0
                pad = 0
            case fourCC("LIST"), fourCC("INFO"):
                switch try list(at: body, declared: size) {
                case .loops(let why):
                    return "its LIST chunk at byte \(position) \(why): corrupt, and libsndfile can loop on it for ever"
                case .ends(let end): position = end
                }
            case fourCC("RIFF"), fourCC("RIFX"):
                return nil  // a second RIFF: libsndfile refuses the file
            default:
                if !isPrintable(marker) {
                    // Its resync: three bytes back from an unaligned chunk, else the end of the header.
                    guard size < 0xffff_0000, body & 3 != 0 else { return nil }
                    position = body - 3
                    pad = 0
                } else {
                    // Its skips of 2 GB or more go backwards, then round until our tell guard ends them: nothing
                    // left to check.
                    guard size < 0x8000_0000 else { return nil }
                    position = body + (marker == fourCC("fact") ? max(Int(size), 4) : Int(size))
                }
            }
            if let length, Int(chunkSize) >= length || position >= length - 4 { return nil }
            position += pad
        }
    }

    private enum ListEnd {
        case ends(Int)
        case loops(String)
    }

    /// One LIST chunk, as `wavlike_subchunk_parse` reads it: 32-bit counts, and every skip of 2 GB or more refused.
    private func list(at start: Int, declared: UInt32) throws -> ListEnd {
        if declared <= 8 { return .ends(start + Int(declared)) }  // its "weird length" case: a marker and a skip
        var chunkLength = declared
        if let length, start + Int(declared) > length {
            chunkLength = UInt32(truncatingIfNeeded: length - start)
        }
        var position = start
        var bytesRead: UInt32 = 0

        func skip(_ count: UInt32, _ what: @autoclosure () -> String) -> ListEnd? {
            guard count < 0x8000_0000 else { return .loops(what()) }
            position += Int(count)
            return nil
        }

        walk: while bytesRead < chunkLength {
            guard let marker = try word(position, marker: true) else { break }
            position += 4
            bytesRead &+= 4
            switch marker {
            case fourCC("adtl"), fourCC("INFO"):
                continue
            case fourCC("exif"):
                if chunkLength > bytesRead {
                    switch try exif(at: &position, length: chunkLength - bytesRead) {
                    case .loops(let why): return .loops(why)
                    case .ends(let count): bytesRead &+= UInt32(truncatingIfNeeded: count)
                    }
                }
                continue
            case fourCC("data"):
                return .ends(position - 4)  // "data inside a LIST block": it backs out to the top level
            case 0:
                break walk
            default:
                break
            }
            switch marker {
            case fourCC("ISFT"), fourCC("ICOP"), fourCC("IARL"), fourCC("IART"), fourCC("ICMT"), fourCC("ICRD"),
                 fourCC("IENG"), fourCC("IGNR"), fourCC("INAM"), fourCC("IPRD"), fourCC("ISBJ"), fourCC("ISRC"),
                 fourCC("IAUT"), fourCC("ITRK"):
                guard let size = try word(position) else { break walk }
                position += 4
                bytesRead &+= 4
                let padded = size &+ (size & 1)
                if padded >= 2048 || bytesRead &+ padded > chunkLength { break walk }
                position += Int(padded)
                bytesRead &+= padded
            case fourCC("labl"):
                guard let size = try word(position), try word(position + 4) != nil else { break walk }
                position += 8
                bytesRead &+= 8
                var text = size &- 4
                text &+= text & 1
                if text < 1 || text >= 2048 || bytesRead &+ text > chunkLength { break walk }
                position += Int(text)
                bytesRead &+= text
            case fourCC("DISP"), fourCC("ltxt"), fourCC("note"):
                guard try word(position) != nil else { break walk }
                position += 4
                bytesRead &+= 4
                break walk
            default:
                guard let size = try word(position) else { break walk }
                position += 4
                bytesRead &+= 4
                let padded = size &+ (size & 1)
                if bytesRead &+ padded > chunkLength { break walk }
                if let loop = skip(padded, "has a sub-chunk '\(name(marker))' of \(padded) bytes") { return loop }
                bytesRead &+= padded
            }
        }
        if chunkLength > bytesRead,
           let loop = skip(chunkLength - bytesRead, "leaves \(chunkLength - bytesRead) bytes to skip after its entries") {
            return loop
        }
        return .ends(position)
    }

    /// An "exif" block inside a LIST, as `exif_subchunk_parse` reads it; `.ends` carries the bytes it counts.
    private func exif(at position: inout Int, length: UInt32) throws -> ListEnd {
        var bytesRead: UInt32 = 0
        while bytesRead < length {
            guard let marker = try word(position, marker: true) else { break }
            position += 4
            bytesRead &+= 4
            switch marker {
            case fourCC("ever"):
                position += 8
                bytesRead &+= 8
            case fourCC("olym"):
                guard var size = try word(position) else { break }
                position += 4
                bytesRead &+= 4
                if size > length || bytesRead &+ size > length { continue }
                size &+= size & 1
                guard size < 0x8000_0000 else { return .loops("has an exif 'olym' entry of \(size) bytes") }
                position += Int(size)
                bytesRead &+= size
            case fourCC("emnt"), fourCC("emdl"), fourCC("ecor"), fourCC("etim"), fourCC("erel"), fourCC("eucm"):
                guard var size = try word(position) else { break }
                position += 4
                bytesRead &+= 8  // its count takes the size word twice
                size &+= size & 1
                if size >= 4096 { return .ends(Int(bytesRead)) }
                let text = try bytes(position, Int(size))
                position += Int(size)
                bytesRead &+= size
                if marker == fourCC("emdl"), Int(size) == (text.firstIndex(of: 0) ?? text.count) {
                    position += 2
                    bytesRead &+= 2
                }
                if size > length { return .ends(Int(bytesRead)) }
            default:
                continue
            }
        }
        return .ends(Int(bytesRead))
    }

    private func bytes(_ offset: Int, _ count: Int) throws -> [UInt8] {
        bytesTaken += count
        guard bytesTaken <= 1 << 20 else { throw PastHeaderCache() }
        return read(offset, count)
    }

    /// The 32-bit word at `offset`: a marker in file order, a size in the header's byte order; nil at the end.
    private func word(_ offset: Int, marker: Bool = false) throws -> UInt32? {
        let b = try bytes(offset, 4)
        guard b.count == 4 else { return nil }
        let big = UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
        return marker || bigEndian ? big : big.byteSwapped
    }

    private func fourCC(_ text: StaticString) -> UInt32 {
        text.withUTF8Buffer { $0.reduce(0) { $0 << 8 | UInt32($1) } }
    }

    private func isPrintable(_ marker: UInt32) -> Bool {
        (0..<4).allSatisfy { (0x20...0x7e).contains(marker >> ($0 * 8) & 0xff) }
    }

    private func name(_ marker: UInt32) -> String {
        String((0..<4).reversed().map { shift -> Character in
            let byte = UInt8(marker >> (shift * 8) & 0xff)
            return (0x20...0x7e).contains(byte) ? Character(UnicodeScalar(byte)) : "?"
        })
    }
}

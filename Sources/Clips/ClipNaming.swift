import Foundation

/// Clip file formats: 16-bit FLAC (the default) or 32-bit float WAV (bit-exact).
public enum ClipFormat: String, CaseIterable, Sendable {
    case flac, wav
}

/// htsatd's clip file names: `DIR/YYYY-MM-DD/<event>-<yyyyMMdd'T'HHmmss'Z'>-<id>.<ext>` (UTC), with a `.png`
/// spectrogram beside it and `.<name>.tmp` while being written. Retention deletes only names that parse here.
public struct ClipName: Equatable, Sendable, Comparable {
    /// The event name as it appears in the file name (lower-case letters, digits and `_`).
    public var event: String
    /// The start's wall-clock time, whole seconds since 1970 (UTC).
    public var time: Int64
    /// The event id.
    public var id: Int
    /// The extension: flac, wav or png.
    public var ext: String

    /// The name of an event's clip.
    public init(event: String, start: Date, id: Int, ext: String) {
        self.event = ClipName.slug(event)
        self.time = Int64(start.timeIntervalSince1970.rounded(.down))
        self.id = id
        self.ext = ext
    }

    /// `event` restricted to `[a-z0-9_]`, so a label such as "Civil defense siren" makes a plain file name.
    public static func slug(_ event: String) -> String {
        let s = String(event.lowercased().unicodeScalars.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? Character($0) : "_" })
        return s.isEmpty ? "event" : s
    }

    /// The date directory, `YYYY-MM-DD`.
    public var day: String { Self.format(time, "%04d-%02d-%02d", dateOnly: true) }
    /// The file name.
    public var file: String { "\(event)-\(Self.format(time, "%04d%02d%02dT%02d%02d%02dZ", dateOnly: false))-\(id).\(ext)" }
    /// The path relative to the clip directory.
    public var relativePath: String { "\(day)/\(file)" }
    /// The same clip with another extension (its spectrogram).
    public func with(ext: String) -> ClipName { var n = self; n.ext = ext; return n }

    /// Parses one of htsatd's file names, or nil for any other file.
    public init?(file: String) {
        // event-yyyyMMddTHHmmssZ-id.ext, the event part of [a-z0-9_]+.
        let parts = file.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, ["flac", "wav", "png"].contains(parts[1]) else { return nil }
        let fields = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard fields.count == 3, !fields[0].isEmpty,
              fields[0].unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }),
              let id = Int(fields[2]), id >= 0, String(id) == fields[2],
              let time = Self.parseTime(fields[1]) else { return nil }
        (event, self.time, self.id, ext) = (String(fields[0]), time, id, String(parts[1]))
    }

    /// True for a `YYYY-MM-DD` directory name.
    public static func isDay(_ name: String) -> Bool {
        let f = name.split(separator: "-", omittingEmptySubsequences: false)
        return f.count == 3 && f.map(\.count) == [4, 2, 2] && f.allSatisfy { $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }

    /// Oldest first: by time, then id, then the clip before its picture.
    public static func < (a: ClipName, b: ClipName) -> Bool {
        (a.time, a.id, a.event, a.ext) < (b.time, b.id, b.event, b.ext)
    }

    private static func parseTime(_ s: Substring) -> Int64? {
        let c = Array(s.utf8)
        guard c.count == 16, c[8] == UInt8(ascii: "T"), c[15] == UInt8(ascii: "Z") else { return nil }
        func num(_ r: Range<Int>) -> Int32? {
            var v: Int32 = 0
            for i in r { guard c[i] >= 48, c[i] <= 57 else { return nil }; v = v * 10 + Int32(c[i] - 48) }
            return v
        }
        guard let y = num(0..<4), let mo = num(4..<6), let d = num(6..<8), let h = num(9..<11), let mi = num(11..<13),
              let se = num(13..<15), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        var t = tm()
        (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec) = (y - 1900, mo - 1, d, h, mi, se)
        return Int64(timegm(&t))
    }

    private static func format(_ time: Int64, _ pattern: String, dateOnly: Bool) -> String {
        var seconds = time_t(time)
        var t = tm()
        gmtime_r(&seconds, &t)
        let y = Int(t.tm_year) + 1900, mo = Int(t.tm_mon) + 1, d = Int(t.tm_mday)
        if dateOnly { return String(format: pattern, y, mo, d) }
        return String(format: pattern, y, mo, d, Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec))
    }
}

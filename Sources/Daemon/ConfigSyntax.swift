import Foundation

/// The configuration file's syntax: strict RFC 8259 JSON plus `//` and `/* */` comments.
///
/// Foundation's parsers report no line:column (and its JSON5 mode accepts trailing commas), so this checker
/// validates the text, records where each key path is and what it holds, and hands `JSONDecoder` the same bytes
/// with comments and a byte order mark blanked to spaces.
struct ConfigSyntax {
    /// Where a value is (its key's position, for object members) and a short rendering for messages.
    struct Place: Sendable { let line: Int, column: Int, shown: String }

    /// By key path (`outputs.socket_mode`, `events[1]`; "" is the whole document).
    private(set) var places: [String: Place] = [:]
    /// Documentation by key path: the comments just before a key, or a `"_key"` entry's text ("": the file's header).
    private(set) var docs: [String: String] = [:]
    /// The input with comments blanked, for `JSONDecoder`.
    private(set) var json: [UInt8]
    private let bytes: [UInt8]
    private var pos = 0, line = 1, lineStart = 0, depth = 0, comments: [String] = []

    init(_ bytes: [UInt8]) throws {
        (self.bytes, json) = (bytes, bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { (pos, lineStart, json[0..<3]) = (3, 3, [0x20, 0x20, 0x20]) }
        try skipSpace()
        guard pos < bytes.count else { throw error("the file is empty; expected a JSON object { ... }") }
        document("")
        _ = try value(at: "", place: (line, column(pos)))
        try skipSpace()
        guard pos == bytes.count else { throw error("unexpected text after the end of the JSON document") }
    }

    private var current: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    /// Column in characters (UTF-8 continuation bytes do not count).
    private func column(_ offset: Int) -> Int { 1 + bytes[lineStart..<min(offset, bytes.count)].filter { $0 & 0xC0 != 0x80 }.count }

    private func error(_ message: String, at offset: Int? = nil) -> ConfigError {
        ConfigError(line: line, column: column(offset ?? pos), message: "invalid JSON: \(message)")
    }

    private func found() -> String {
        guard let c = current else { return "the end of the file" }
        return c >= 0x20 && c < 0x7F ? "'\(Character(UnicodeScalar(c)))'" : String(format: "byte 0x%02X", c)
    }

    private mutating func document(_ path: String) {
        if !comments.isEmpty { docs[path] = comments.joined(separator: " ") }
        comments = []
    }

    /// Skips whitespace and comments, blanking the comments in `json` (line breaks stay, so positions do).
    private mutating func skipSpace() throws {
        while let c = current {
            if c == 0x0A { (line, lineStart) = (line + 1, pos + 1) }
            if c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A { pos += 1; continue }
            guard c == ascii("/"), pos + 1 < bytes.count, [ascii("/"), ascii("*")].contains(bytes[pos + 1]) else { return }
            let start = pos, startLine = line, startColumn = column(pos), block = bytes[pos + 1] == ascii("*")
            let end = Array((block ? "*/" : "\n").utf8)
            pos += 2
            while pos < bytes.count, !bytes[pos...].starts(with: end) {
                if bytes[pos] == 0x0A { (line, lineStart) = (line + 1, pos + 1) }
                pos += 1
            }
            comments.append(String(decoding: bytes[(start + 2)..<pos], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            if block {
                guard pos < bytes.count else {
                    throw ConfigError(line: startLine, column: startColumn, message: "invalid JSON: unterminated /* comment (it ends with */)")
                }
                pos += 2
            }
            for i in start..<pos where bytes[i] != 0x0A { json[i] = 0x20 }
        }
    }

    /// Checks the value at `pos`, records its place, and returns it if it is a string.
    private mutating func value(at path: String, place: (line: Int, column: Int)) throws -> String? {
        guard let c = current else { throw error("expected a value, found the end of the file") }
        var text: String?, shown: String
        switch c {
        case ascii("{"), ascii("["): try container(path, object: c == ascii("{")); shown = c == ascii("{") ? "an object" : "an array"
        case ascii("\""): text = try string(); shown = quote(text!) + " (a string)"
        case ascii("-"), ascii("0")...ascii("9"): shown = try number()
        default:
            guard let word = ["true", "false", "null"].first(where: { bytes[pos...].starts(with: $0.utf8) }) else {
                throw error(c >= ascii("a") && c <= ascii("z") ? "unknown word; expected a value such as \"text\", 1, true, false or null"
                            : "expected a value, found \(found())")
            }
            pos += word.utf8.count
            shown = word
        }
        places[path] = Place(line: place.line, column: place.column, shown: shown)
        return text
    }

    /// An object's members or an array's items.
    private mutating func container(_ path: String, object: Bool) throws {
        depth += 1
        guard depth <= 64 else { throw error("nested more than 64 levels deep") }
        let close = object ? ascii("}") : ascii("]")
        pos += 1
        comments = []
        try skipSpace()
        if current == close { pos += 1; depth -= 1; return }
        var seen: Set<String> = []
        for index in 0... {
            try skipSpace()
            let place = (line, column(pos))
            var after = "in the array"
            if object {
                guard current == ascii("\"") else {
                    throw error("expected a key in double quotes, found \(found())" + (current == close ? " (JSON allows no trailing comma)" : ""))
                }
                let key = try string(), keyPath = DaemonConfig.keyPath(path, key)
                // `_key` entries are documentation, so the same one may repeat (the decoder keeps one of them).
                guard seen.insert(key).inserted || key.hasPrefix("_") else {
                    throw ConfigError(line: place.0, column: place.1, key: keyPath, message: "duplicate key; give each key once")
                }
                document(keyPath)
                try skipSpace()
                guard current == ascii(":") else { throw error("expected ':' after the key \"\(key)\", found \(found())") }
                pos += 1
                try skipSpace()
                if let doc = try value(at: keyPath, place: place), key.hasPrefix("_") {
                    docs[DaemonConfig.keyPath(path, String(key.dropFirst()))] = doc
                }
                after = "after the value of \"\(key)\""
            } else {
                if current == close { throw error("expected a value, found ']' (JSON allows no trailing comma)") }
                _ = try value(at: "\(path)[\(index)]", place: place)
            }
            try skipSpace()
            switch current {
            case ascii(","): pos += 1; comments = []
            case close: pos += 1; depth -= 1; return
            default: throw error("expected ',' or '\(Character(UnicodeScalar(close)))' \(after), found \(found())")
            }
        }
    }

    private mutating func number() throws -> String {
        let start = pos
        func digits(_ what: String) throws {
            let from = pos
            while let c = current, (ascii("0")...ascii("9")).contains(c) { pos += 1 }
            if pos == from { throw error("expected a digit\(what), found \(found())") }
        }
        if current == ascii("-") { pos += 1 }
        let zero = current == ascii("0")
        if zero { pos += 1 } else { try digits("") }
        let fraction = current == ascii(".")
        if fraction { pos += 1; try digits(" after the decimal point") }
        if current == ascii("e") || current == ascii("E") {
            let exponent = pos
            pos += 1
            if current == ascii("+") || current == ascii("-") { pos += 1 }
            try digits(" in the exponent")
            // JSONDecoder (swift-foundation 6.3) rejects the valid 0e1 ... 0e9 (a fuzz find); zero times any power
            // of ten is zero, so it is handed a plain 0.
            if zero && !fraction { json.replaceSubrange(exponent..<pos, with: repeatElement(0x20, count: pos - exponent)) }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw error("number \(text) is out of range", at: start) }
        return text
    }

    private static let escapes: [UInt8: UInt8] = [
        ascii("\""): ascii("\""), ascii("\\"): ascii("\\"), ascii("/"): ascii("/"),
        ascii("b"): 0x08, ascii("f"): 0x0C, ascii("n"): 0x0A, ascii("r"): 0x0D, ascii("t"): 0x09,
    ]

    private mutating func string() throws -> String {
        let start = pos
        pos += 1
        var out: [UInt8] = []
        while let c = current {
            guard c >= 0x20 else { throw error(c == 0x0A ? "unterminated string (a line break inside quotes)" : "control character in a string") }
            pos += 1
            if c == ascii("\"") {
                guard let s = String(validating: out, as: UTF8.self) else { throw error("the string is not valid UTF-8", at: start) }
                return s
            }
            guard c == ascii("\\") else { out.append(c); continue }
            guard let e = current else { break }
            pos += 1
            if let byte = Self.escapes[e] {
                out.append(byte)
            } else if e == ascii("u") {
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    // A high surrogate must be followed by \u and a low surrogate.
                    guard bytes[pos...].starts(with: "\\u".utf8) else { throw error("unpaired surrogate in \\u escape") }
                    pos += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = UnicodeScalar(code) else { throw error("invalid \\u escape") }
                out.append(contentsOf: String(Character(scalar)).utf8)
            } else {
                throw error("invalid escape '\\\(Character(UnicodeScalar(e)))' in a string", at: pos - 2)
            }
        }
        throw error("unterminated string", at: start)
    }

    private mutating func hex4() throws -> UInt32 {
        let digits = bytes[pos..<min(pos + 4, bytes.count)]
        guard digits.count == 4, digits.allSatisfy({ Character(UnicodeScalar($0)).isHexDigit }),
              let code = UInt32(String(decoding: digits, as: UTF8.self), radix: 16) else { throw error("expected four hex digits after \\u") }
        pos += 4
        return code
    }
}

/// One value of the file, read through its Decoder; errors name its key path, line:column and what it holds.
struct ConfigValue {
    static let placesKey = CodingUserInfoKey(rawValue: "htsatd.config.places")!
    let decoder: Decoder
    init(_ decoder: Decoder) { self.decoder = decoder }

    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// The key path of `codingPath` as `ConfigSyntax` names it, and what it recorded there.
    private func place(_ codingPath: [CodingKey]) -> (path: String, place: ConfigSyntax.Place?) {
        let path = codingPath.reduce("") { p, k in k.intValue.map { "\(p)[\($0)]" } ?? DaemonConfig.keyPath(p, k.stringValue) }
        return (path, (decoder.userInfo[Self.placesKey] as? [String: ConfigSyntax.Place])?[path])
    }

    func error(_ message: String, key: CodingKey? = nil) -> ConfigError {
        let (path, place) = self.place(decoder.codingPath + (key.map { [$0] } ?? []))
        return ConfigError(line: place?.line, column: place?.column, key: path.isEmpty ? nil : path, message: message)
    }

    func mismatch(_ expected: String) -> ConfigError {
        error("expected \(expected), got \(place(decoder.codingPath).place?.shown ?? "another type")")
    }

    private func decode<T: Decodable>(_ expected: String) throws -> T {
        do { return try decoder.singleValueContainer().decode(T.self) } catch is DecodingError { throw mismatch(expected) }
    }

    func string() throws -> String { try decode("a string") }
    func bool() throws -> Bool { try decode("true or false") }
    func number() throws -> Double { try decode("a number") }

    func path() throws -> String {
        guard let path = try? string(), !path.isEmpty else { throw mismatch("a file path (a non-empty string)") }
        return path
    }

    /// Via Double, since JSONDecoder's error for 2.5 as Int has no coding path.
    func integer() throws -> Int {
        guard let n = try? number(), n == n.rounded(), abs(n) < 1e15 else { throw mismatch("an integer") }
        return Int(n)
    }

    func choice<T: CaseIterable & RawRepresentable>(_ what: String) throws -> T where T.RawValue == String {
        let name = try string()
        guard let value = T(rawValue: name) else {
            throw error("\(quote(name)) is not \(what); allowed: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }

    /// nil for JSON null, else `read(self)`.
    func nullable<T>(_ read: (ConfigValue) throws -> T) throws -> T? { try decoder.singleValueContainer().decodeNil() ? nil : read(self) }

    func array() throws -> [ConfigValue] {
        guard var items = try? decoder.unkeyedContainer() else { throw mismatch("an array") }
        var values: [ConfigValue] = []
        while !items.isAtEnd { values.append(ConfigValue(try items.superDecoder())) }
        return values
    }

    /// The members but `_` documentation entries; any other key not in `allowed` (nil: any) is an error.
    func object(allowed: [String]?) throws -> [String: ConfigValue] {
        guard let object = try? decoder.container(keyedBy: Key.self) else { throw mismatch("an object { ... }") }
        let keys = object.allKeys.filter { !$0.stringValue.hasPrefix("_") }
        func position(_ key: Key) -> [Int] { place(decoder.codingPath + [key]).place.map { [$0.line, $0.column] } ?? [] }
        // allKeys is unordered: report the first unknown key in the file.
        if let allowed, let unknown = keys.filter({ !allowed.contains($0.stringValue) })
            .min(by: { position($0).lexicographicallyPrecedes(position($1)) }) {
            let parent = place(decoder.codingPath).path
            throw error("unknown key; allowed keys\(parent.isEmpty ? "" : " in \(parent)"): \(allowed.joined(separator: ", "))", key: unknown)
        }
        return try Dictionary(uniqueKeysWithValues: keys.map { ($0.stringValue, ConfigValue(try object.superDecoder(forKey: $0))) })
    }
}

extension Optional where Wrapped == ConfigValue {
    /// nil when the key is absent, `.some(nil)` for JSON null, else `read`'s result.
    func nullable<T>(_ read: (ConfigValue) throws -> T) throws -> T?? { try map { try $0.nullable(read) } }
}

private func ascii(_ c: Unicode.Scalar) -> UInt8 { UInt8(ascii: c) }

/// A string in double quotes, escaped as in JSON, for messages.
func quote(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n") + "\""
}

import Foundation

/// The configuration file's syntax: strict RFC 8259 JSON plus `//` and `/* */` comments.
///
/// Foundation's parsers report no line:column (and its JSON5 mode accepts trailing commas), so this checker
/// validates the text, records where each key path is and what it holds, and hands `JSONDecoder` the same bytes
/// with comments and a byte order mark blanked to spaces.
struct ConfigSyntax {
    /// Where a value is (its key's position for object members) and a short rendering for messages.
    struct Place: Sendable {
        let line: Int, column: Int, shown: String
    }

    /// By key path (`outputs.socket_mode`, `events[1]`; "" is the whole document).
    private(set) var places: [String: Place] = [:]
    /// Documentation by key path: the comments just before a key, or a `"_key"` entry's text ("": the file's header).
    private(set) var docs: [String: String] = [:]
    /// The input with comments blanked, for `JSONDecoder`.
    private(set) var json: [UInt8]
    private let bytes: [UInt8]
    private var pos = 0, line = 1, lineStart = 0, depth = 0
    private var comments: [String] = []
    private static let maxDepth = 64

    init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        json = bytes
        // A UTF-8 byte order mark is harmless; skip it.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { pos = 3; lineStart = 3; json[0..<3] = [0x20, 0x20, 0x20] }
        try skipSpace()
        guard pos < bytes.count else { throw error("the file is empty; expected a JSON object { ... }") }
        document("")
        _ = try value(at: "", place: (line, column(pos)))
        try skipSpace()
        guard pos == bytes.count else { throw error("unexpected text after the end of the JSON document") }
    }

    private var current: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    /// Column in characters (UTF-8 continuation bytes do not count).
    private func column(_ offset: Int) -> Int {
        1 + bytes[lineStart..<min(offset, bytes.count)].filter { $0 & 0xC0 != 0x80 }.count
    }

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
            if c == 0x0A { line += 1; lineStart = pos + 1 }
            if c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A { pos += 1; continue }
            guard c == ascii("/"), pos + 1 < bytes.count, bytes[pos + 1] == ascii("/") || bytes[pos + 1] == ascii("*") else { return }
            let start = pos, startLine = line, startColumn = column(pos), block = bytes[pos + 1] == ascii("*")
            let end = Array((block ? "*/" : "\n").utf8)
            pos += 2
            while pos < bytes.count, !bytes[pos...].starts(with: end) {
                if bytes[pos] == 0x0A { line += 1; lineStart = pos + 1 }
                pos += 1
            }
            let text = String(decoding: bytes[(start + 2)..<pos], as: UTF8.self)
            if block {
                guard pos < bytes.count else {
                    throw ConfigError(line: startLine, column: startColumn, message: "invalid JSON: unterminated /* comment (it ends with */)")
                }
                pos += 2
            }
            for i in start..<pos where bytes[i] != 0x0A { json[i] = 0x20 }
            comments.append(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// Checks the value at `pos`, records its place, and returns it if it is a string.
    private mutating func value(at path: String, place: (line: Int, column: Int)) throws -> String? {
        var text: String?
        let shown: String
        guard let c = current else { throw error("expected a value, found the end of the file") }
        switch c {
        case ascii("{"): try container(path, object: true); shown = "an object"
        case ascii("["): try container(path, object: false); shown = "an array"
        case ascii("\""): text = try string(); shown = quote(text!) + " (a string)"
        case ascii("t"): shown = try word("true")
        case ascii("f"): shown = try word("false")
        case ascii("n"): shown = try word("null")
        case ascii("-"), ascii("0")...ascii("9"): shown = try number()
        default: throw error("expected a value, found \(found())")
        }
        places[path] = Place(line: place.line, column: place.column, shown: shown)
        return text
    }

    private mutating func word(_ literal: String) throws -> String {
        guard bytes[pos...].starts(with: literal.utf8) else {
            throw error("unknown word; expected a value such as \"text\", 1, true, false or null")
        }
        pos += literal.utf8.count
        return literal
    }

    /// An object's members or an array's items.
    private mutating func container(_ path: String, object: Bool) throws {
        depth += 1
        guard depth <= Self.maxDepth else { throw error("nested more than \(Self.maxDepth) levels deep") }
        let close = object ? ascii("}") : ascii("]")
        pos += 1
        comments = []
        try skipSpace()
        if current == close { pos += 1; depth -= 1; return }
        var seen: Set<String> = []
        for index in 0... {
            try skipSpace()
            let place = (line, column(pos))
            let after: String
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
                after = "in the array"
            }
            try skipSpace()
            if current == ascii(",") {
                pos += 1
                comments = []
            } else if current == close {
                pos += 1; depth -= 1; return
            } else {
                throw error("expected ',' or '\(Character(UnicodeScalar(close)))' \(after), found \(found())")
            }
        }
    }

    private mutating func number() throws -> String {
        let start = pos
        func digits() -> Int {
            let from = pos
            while let c = current, (ascii("0")...ascii("9")).contains(c) { pos += 1 }
            return pos - from
        }
        if current == ascii("-") { pos += 1 }
        if current == ascii("0") { pos += 1 } else if digits() == 0 { throw error("expected a digit, found \(found())") }
        if current == ascii(".") {
            pos += 1
            guard digits() > 0 else { throw error("expected a digit after the decimal point, found \(found())") }
        }
        if current == ascii("e") || current == ascii("E") {
            pos += 1
            if current == ascii("+") || current == ascii("-") { pos += 1 }
            guard digits() > 0 else { throw error("expected a digit in the exponent, found \(found())") }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw error("number \(text) is out of range", at: start) }
        return text
    }

    private mutating func string() throws -> String {
        let start = pos
        pos += 1
        var out: [UInt8] = []
        while true {
            guard let c = current else { throw error("unterminated string", at: start) }
            pos += 1
            if c == ascii("\"") {
                guard let s = String(validating: out, as: UTF8.self) else { throw error("the string is not valid UTF-8", at: start) }
                return s
            }
            guard c == ascii("\\") else {
                guard c >= 0x20 else {
                    pos -= 1
                    throw error(c == 0x0A ? "unterminated string (a line break inside quotes)" : "control character in a string")
                }
                out.append(c)
                continue
            }
            guard let e = current else { throw error("unterminated string", at: start) }
            pos += 1
            switch e {
            case ascii("\""), ascii("\\"), ascii("/"): out.append(e)
            case ascii("b"): out.append(0x08)
            case ascii("f"): out.append(0x0C)
            case ascii("n"): out.append(0x0A)
            case ascii("r"): out.append(0x0D)
            case ascii("t"): out.append(0x09)
            case ascii("u"):
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
            default:
                throw error("invalid escape '\\\(Character(UnicodeScalar(e)))' in a string", at: pos - 2)
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        let digits = bytes[pos..<min(pos + 4, bytes.count)]
        guard digits.count == 4, digits.allSatisfy({ Character(UnicodeScalar($0)).isHexDigit }),
              let code = UInt32(String(decoding: digits, as: UTF8.self), radix: 16) else {
            throw error("expected four hex digits after \\u")
        }
        pos += 4
        return code
    }
}

private func ascii(_ c: Unicode.Scalar) -> UInt8 { UInt8(ascii: c) }

/// A string in double quotes, escaped as JSON would, for messages.
func quote(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n") + "\""
}

import Foundation

/// A model's class labels: one display name (and, for AudioSet, MID) per model output row. Read from a
/// `class_labels_indices.csv`-style file, or one of the sets built into the binary (`builtIn(classes:)`).
public struct AudioSetLabels: Sendable {
    /// Display names, indexed by model output row.
    public let names: [String]
    /// AudioSet machine identifiers (e.g. `/m/09x0r`), indexed by model output row (empty strings for sets without).
    public let mids: [String]
    /// Where the labels come from: a file path, or e.g. "built-in ESC-50 labels".
    public let source: String
    private let byLowercasedName: [String: Int]

    /// Number of classes.
    public var count: Int { names.count }

    /// Whether these are AudioSet's 527 labels, which the built-in event groups are defined over.
    public var isAudioSet: Bool { count == 527 }

    /// Reads and validates a `class_labels_indices.csv` file.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw AudioSetLabelsError(source: url.path, line: nil,
                                      reason: "cannot read the file (\(error.localizedDescription)); pass the path of AudioSet's class_labels_indices.csv")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw AudioSetLabelsError(source: url.path, line: nil, reason: "the file is not UTF-8 text")
        }
        try self.init(csv: text, source: url.path)
    }

    /// Parses CSV text with the header `index,mid,display_name`; `source` names it in errors.
    public init(csv text: String, source: String = "<labels>") throws {
        let records = try CSV.parse(text, source: source)
        guard let header = records.first else {
            throw AudioSetLabelsError(source: source, line: nil, reason: "the file is empty; expected the header index,mid,display_name")
        }
        let headerFields = header.fields.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard headerFields == ["index", "mid", "display_name"] else {
            throw AudioSetLabelsError(source: source, line: header.line,
                                      reason: "expected the header index,mid,display_name, found \(header.fields.joined(separator: ","))")
        }
        var names: [String] = []
        var mids: [String] = []
        var lookup: [String: Int] = [:]
        for record in records.dropFirst() {
            guard record.fields.count == 3 else {
                throw AudioSetLabelsError(source: source, line: record.line,
                                          reason: "expected 3 fields (index,mid,display_name), found \(record.fields.count); quote names that contain commas")
            }
            let indexText = record.fields[0].trimmingCharacters(in: .whitespaces)
            guard let index = Int(indexText) else {
                throw AudioSetLabelsError(source: source, line: record.line, reason: "index \"\(indexText)\" is not an integer")
            }
            // The index is the model's output row, so rows must be complete and in order.
            guard index == names.count else {
                throw AudioSetLabelsError(source: source, line: record.line,
                                          reason: "index \(index) out of order; expected \(names.count) (rows must be 0, 1, 2, ... in order)")
            }
            let name = record.fields[2].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else {
                throw AudioSetLabelsError(source: source, line: record.line, reason: "empty display_name for index \(index)")
            }
            let key = name.lowercased()
            if let previous = lookup[key] {
                throw AudioSetLabelsError(source: source, line: record.line,
                                          reason: "display_name \"\(name)\" repeats the one at index \(previous)")
            }
            lookup[key] = index
            names.append(name)
            mids.append(record.fields[1].trimmingCharacters(in: .whitespaces))
        }
        guard !names.isEmpty else {
            throw AudioSetLabelsError(source: source, line: nil, reason: "no labels after the header")
        }
        self.names = names
        self.mids = mids
        self.source = source
        self.byLowercasedName = lookup
    }

    /// The output row of a display name, compared case-insensitively.
    public func index(of displayName: String) -> Int? {
        byLowercasedName[displayName.lowercased()]
    }

    /// Checks that the labels match a model with `classes` outputs.
    public func validate(classes: Int) throws {
        guard classes == count else {
            throw AudioSetLabelsError(source: "labels", line: nil,
                                      reason: "the labels file has \(count) labels but the model has \(classes) outputs; use the labels file that belongs to the checkpoint")
        }
    }
}

/// A malformed or unreadable labels file, with the place and the reason.
public struct AudioSetLabelsError: Error, CustomStringConvertible, Equatable {
    /// File path (or a name for in-memory text).
    public let source: String
    /// 1-based line number, when the problem is on one line.
    public let line: Int?
    /// What is wrong and, where useful, what to do.
    public let reason: String

    public var description: String {
        if let line { return "labels file \(source), line \(line): \(reason)" }
        return "labels file \(source): \(reason)"
    }
}

/// A minimal RFC 4180 CSV reader: quoted fields may contain commas, newlines and doubled quotes.
enum CSV {
    struct Record {
        var line: Int
        var fields: [String]
    }

    static func parse(_ text: String, source: String) throws -> [Record] {
        var records: [Record] = []
        var fields: [String] = []
        var field = String.UnicodeScalarView()
        var line = 1
        var recordLine = 1
        var inQuotes = false
        var wasQuoted = false  // the current field was a quoted one, now closed
        var scalars = text.unicodeScalars[...]
        if scalars.first == "\u{FEFF}" { scalars = scalars.dropFirst() }

        func endField() {
            fields.append(String(field))
            field = String.UnicodeScalarView()
            wasQuoted = false
        }
        func endRecord() {
            endField()
            // Blank lines carry no record.
            if !(fields.count == 1 && fields[0].isEmpty) {
                records.append(Record(line: recordLine, fields: fields))
            }
            fields = []
        }

        var iterator = scalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        while let c = pending ?? iterator.next() {
            pending = nil
            if inQuotes {
                if c == "\"" {
                    let next = iterator.next()
                    if next == "\"" {
                        field.append("\"")
                    } else {
                        inQuotes = false
                        wasQuoted = true
                        pending = next
                    }
                } else {
                    if c == "\n" { line += 1 }
                    field.append(c)
                }
                continue
            }
            switch c {
            case ",":
                endField()
            case "\r":
                let next = iterator.next()
                if next != "\n" { pending = next }
                endRecord(); line += 1; recordLine = line
            case "\n":
                endRecord(); line += 1; recordLine = line
            case "\"":
                guard field.isEmpty, !wasQuoted else {
                    throw AudioSetLabelsError(source: source, line: line,
                                              reason: "stray quote inside a field; quote the whole field and double inner quotes")
                }
                inQuotes = true
            default:
                if wasQuoted && c != " " {
                    throw AudioSetLabelsError(source: source, line: line,
                                              reason: "text after a closing quote; a quoted field must end at a comma or the end of the line")
                }
                if !wasQuoted { field.append(c) }
            }
        }
        if inQuotes {
            throw AudioSetLabelsError(source: source, line: recordLine, reason: "unterminated quoted field")
        }
        if !field.isEmpty || !fields.isEmpty || wasQuoted { endRecord() }
        return records
    }
}

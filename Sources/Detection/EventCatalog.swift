import Foundation

/// A resolved event: its output name and the AudioSet labels whose scores it takes the max of.
public struct EventDefinition: Equatable, Sendable {
    /// The name used in event lines (a built-in group name or a label's slug).
    public let name: String
    /// Model output rows of the member labels.
    public let labelIndices: [Int]
    /// Display names of the member labels, parallel to `labelIndices`.
    public let labelNames: [String]

    /// Creates a definition; `labelIndices` and `labelNames` are parallel and non-empty.
    public init(name: String, labelIndices: [Int], labelNames: [String]) {
        precondition(!labelIndices.isEmpty && labelIndices.count == labelNames.count)
        self.name = name
        self.labelIndices = labelIndices
        self.labelNames = labelNames
    }
}

/// Event names the daemon understands: built-in groups of AudioSet labels, plus every single label by name or slug.
public struct EventCatalog: Sendable {
    /// The built-in groups: name and AudioSet display names, in listing order.
    ///
    /// The trained fixture detector used smoke_alarm = outputs 399 and 388, dog_bark = 74 and 75,
    /// siren = 396 and 397, speech = 0; every group here contains those.
    public static let builtInGroups: [(name: String, labels: [String])] = [
        ("alarm", ["Alarm", "Alarm clock", "Buzzer", "Smoke detector, smoke alarm", "Fire alarm", "Car alarm"]),
        ("baby_cry", ["Baby cry, infant cry", "Crying, sobbing"]),
        ("car_alarm", ["Car alarm"]),
        ("cat", ["Cat", "Meow", "Purr", "Caterwaul"]),
        ("dog_bark", ["Bark", "Dog", "Bow-wow", "Yip"]),
        ("doorbell", ["Doorbell", "Ding-dong"]),
        ("glass_break", ["Shatter", "Glass"]),
        ("gunshot", ["Gunshot, gunfire", "Machine gun"]),
        ("knock", ["Knock"]),
        ("music", ["Music", "Musical instrument"]),
        ("scream", ["Screaming", "Yell"]),
        ("siren", ["Siren", "Civil defense siren", "Police car (siren)", "Ambulance (siren)", "Fire engine, fire truck (siren)"]),
        ("smoke_alarm", ["Smoke detector, smoke alarm", "Fire alarm", "Alarm"]),
        ("speech", ["Speech", "Male speech, man speaking", "Female speech, woman speaking", "Child speech, kid speaking", "Conversation", "Narration, monologue"]),
    ]

    /// The labels this catalogue resolves against.
    public let labels: AudioSetLabels
    private let groups: [String: EventDefinition]
    private let slugs: [String]
    private let bySlug: [String: Int]

    /// Builds the catalogue; fails if a built-in group names a label missing from `labels`.
    public init(labels: AudioSetLabels) throws {
        self.labels = labels
        var groups: [String: EventDefinition] = [:]
        for (name, members) in Self.builtInGroups {
            var indices: [Int] = []
            var names: [String] = []
            for member in members {
                guard let index = labels.index(of: member) else {
                    throw EventCatalogError.missingGroupMember(group: name, label: member)
                }
                indices.append(index)
                names.append(labels.names[index])
            }
            groups[name] = EventDefinition(name: name, labelIndices: indices, labelNames: names)
        }
        self.groups = groups
        let slugs = labels.names.map(Self.slug)
        self.slugs = slugs
        var bySlug: [String: Int] = [:]
        for (index, slug) in slugs.enumerated() where bySlug[slug] == nil { bySlug[slug] = index }
        self.bySlug = bySlug
    }

    /// Lowercase, every run of non-alphanumerics collapsed to `_`, no leading or trailing `_`.
    public static func slug(_ text: String) -> String {
        var out = ""
        var pendingUnderscore = false
        for scalar in text.lowercased().unicodeScalars {
            if CharacterSet.alphanumerics.contains(scalar) {
                if pendingUnderscore && !out.isEmpty { out.append("_") }
                pendingUnderscore = false
                out.unicodeScalars.append(scalar)
            } else {
                pendingUnderscore = true
            }
        }
        return out
    }

    /// Resolves a built-in group name, an exact display name or a slug (all case-insensitive).
    /// Built-in groups win over labels of the same name (e.g. `speech`, `music`, `cat`, `alarm`).
    public func resolve(_ name: String) throws -> EventDefinition {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        let key = trimmed.lowercased()
        if let group = groups[key] { return group }
        let index = labels.index(of: trimmed) ?? bySlug[key]
        if let index {
            return EventDefinition(name: slugs[index], labelIndices: [index], labelNames: [labels.names[index]])
        }
        throw EventCatalogError.unknownEvent(name: trimmed, suggestions: suggestions(for: key))
    }

    /// Resolves several names; repeated names (after resolution) are an error, since they would emit twice.
    public func resolve(_ names: [String]) throws -> [EventDefinition] {
        var seen: Set<String> = []
        var out: [EventDefinition] = []
        for name in names {
            let definition = try resolve(name)
            guard seen.insert(definition.name).inserted else {
                throw EventCatalogError.duplicateEvent(name: definition.name)
            }
            out.append(definition)
        }
        return out
    }

    /// The closest known names to an unknown one: built-ins first on ties, then labels' slugs.
    public func suggestions(for unknown: String, limit: Int = 4) -> [String] {
        let query = Self.slug(unknown)
        let queryTokens = Set(query.split(separator: "_"))
        var scored: [(distance: Int, builtIn: Bool, name: String)] = []
        func consider(_ candidate: String, builtIn: Bool) {
            var distance = Self.editDistance(query, candidate)
            // A shared word (e.g. "dog" in "dog_bork") makes a candidate more likely meant.
            if !queryTokens.isDisjoint(with: candidate.split(separator: "_")) { distance -= 2 }
            // A name containing the query (e.g. "smoke" in "smoke_alarm") is as good as a one-letter typo.
            if query.count >= 3 && candidate.contains(query) { distance = min(distance, 1) }
            scored.append((distance, builtIn, candidate))
        }
        for (name, _) in Self.builtInGroups { consider(name, builtIn: true) }
        for slug in slugs where groups[slug] == nil { consider(slug, builtIn: false) }
        scored.sort { a, b in
            if a.distance != b.distance { return a.distance < b.distance }
            if a.builtIn != b.builtIn { return a.builtIn }
            return a.name < b.name
        }
        return scored.prefix(limit).map(\.name)
    }

    /// Levenshtein distance over Unicode scalars.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// Text for `htsatd events`: every built-in group with its labels, then every label with its slug.
    public func listing() -> String {
        var out = "Built-in events (the score is the highest of its labels):\n"
        let width = Self.builtInGroups.map(\.name.count).max() ?? 0
        for (name, _) in Self.builtInGroups {
            let names = groups[name]!.labelNames.map { "\"\($0)\"" }.joined(separator: ", ")
            out += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + names + "\n"
        }
        out += "\nAudioSet labels (use the slug, or the exact name in quotes; built-in names above take precedence):\n"
        let slugWidth = min(slugs.map(\.count).max() ?? 0, 40)
        for (index, name) in labels.names.enumerated() {
            let slug = slugs[index]
            let padded = slug.count < slugWidth ? slug.padding(toLength: slugWidth, withPad: " ", startingAt: 0) : slug
            out += "  " + String(index).leftPadded(3) + "  " + padded + "  " + name + "\n"
        }
        return out
    }
}

/// An event name that cannot be used, with what to do about it.
public enum EventCatalogError: Error, CustomStringConvertible, Equatable {
    /// No built-in group, label or slug has this name.
    case unknownEvent(name: String, suggestions: [String])
    /// A built-in group names a label the labels file does not have.
    case missingGroupMember(group: String, label: String)
    /// The same event was configured twice.
    case duplicateEvent(name: String)

    public var description: String {
        switch self {
        case let .unknownEvent(name, suggestions):
            let hint = suggestions.isEmpty ? "" : " did you mean \(suggestions.joined(separator: ", ")), ...?"
            return "unknown event \"\(name)\":\(hint) Run 'htsatd events' to list them."
        case let .missingGroupMember(group, label):
            return "built-in event \"\(group)\" needs the AudioSet label \"\(label)\", which the labels file lacks; use AudioSet's class_labels_indices.csv"
        case let .duplicateEvent(name):
            return "event \"\(name)\" is configured twice; list each event once"
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

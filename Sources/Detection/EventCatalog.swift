import Foundation

/// On and off thresholds an event definition brings as its defaults (the DESED events' per-class thresholds).
public struct EventThresholds: Equatable, Sendable {
    /// Score that starts an event.
    public var on: Float
    /// Score below which it ends.
    public var off: Float

    /// Plain memberwise initializer.
    public init(on: Float, off: Float) {
        self.on = on
        self.off = off
    }
}

/// A resolved event: its output name and the labels whose scores it takes the max of.
public struct EventDefinition: Equatable, Sendable {
    /// The name used in event lines (a built-in group name or a label's slug).
    public let name: String
    /// Model output rows of the member labels.
    public let labelIndices: [Int]
    /// Display names of the member labels, parallel to `labelIndices`.
    public let labelNames: [String]
    /// Thresholds this event defaults to instead of the global ones (nil: the global defaults apply).
    public let defaultThresholds: EventThresholds?

    /// Creates a definition; `labelIndices` and `labelNames` are parallel and non-empty.
    public init(name: String, labelIndices: [Int], labelNames: [String], defaultThresholds: EventThresholds? = nil) {
        precondition(!labelIndices.isEmpty && labelIndices.count == labelNames.count)
        self.name = name
        self.labelIndices = labelIndices
        self.labelNames = labelNames
        self.defaultThresholds = defaultThresholds
    }

    /// `base` (the global defaults) with this event's default thresholds in place of its own; per-event settings
    /// the user configures go on top of the result.
    public func defaultSettings(base: EventSettings) -> EventSettings {
        guard let t = defaultThresholds else { return base }
        var settings = base
        settings.onThreshold = t.on
        settings.offThreshold = t.off
        return settings
    }
}

/// Event names the daemon understands: every single label of the model by name or slug and, for AudioSet label
/// sets only, built-in groups of AudioSet labels and the DESED event set. Other models (ESC-50, Speech Commands
/// V2, custom labels) have exactly their own labels as events.
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

    /// The DESED detection set of the paper, on the AudioSet model (event-F1 50.7): the 10 DESED classes as
    /// `fl_audioset_mapping` in the official `config.py` maps them to AudioSet output rows (the labels below are
    /// exactly those rows' names, in their order), with the per-class thresholds of `fl_mapping` in `fl_evaluate.py`
    /// (RetroCirce/HTS-Audio-Transformer at 2e29471), both in the order of `fl_class_num`. A class is active in a
    /// frame when any of its labels exceeds its threshold, which is the group maximum used here.
    ///
    /// The paper used one threshold per class (off = on). htsatd's tracker adds hysteresis: off = 0.75 x on, so a
    /// score hovering at the threshold does not chatter; the merge gap joins short dips as for every event.
    public static let desedEvents: [(name: String, labels: [String], onThreshold: Float)] = [
        ("desed_speech", ["Speech", "Male speech, man speaking", "Female speech, woman speaking", "Child speech, kid speaking",
                          "Conversation", "Narration, monologue", "Babbling", "Speech synthesizer"], 0.275),
        ("desed_frying", ["Chopping (food)", "Frying (food)", "Microwave oven"], 0.2),
        ("desed_dishes", ["Dishes, pots, and pans"], 0.2),
        ("desed_running_water", ["Water", "Rain", "Raindrop", "Rain on surface", "Stream", "Waterfall", "Ocean",
                                 "Waves, surf", "Steam", "Gurgling"], 0.23),
        ("desed_blender", ["Blender"], 0.48),
        ("desed_electric_shaver_toothbrush", ["Electric shaver, electric razor"], 0.2),
        ("desed_alarm_bell_ringing", ["Car alarm", "Alarm", "Telephone", "Telephone bell ringing", "Ringtone",
                                      "Telephone dialing, DTMF", "Dial tone", "Busy signal", "Alarm clock", "Siren",
                                      "Civil defense siren", "Buzzer", "Smoke detector, smoke alarm", "Fire alarm",
                                      "Foghorn", "Whistle"], 0.18),
        ("desed_cat", ["Cat", "Purr", "Meow", "Hiss", "Caterwaul"], 0.51),
        ("desed_dog", ["Dog", "Bark", "Yip", "Howl", "Bow-wow", "Growling"], 0.39),
        ("desed_vacuum_cleaner", ["Vacuum cleaner"], 0.14),
    ]

    /// The off threshold of a DESED event: 0.75 x its on threshold (see `desedEvents`).
    public static func desedOffThreshold(on: Float) -> Float { 0.75 * on }

    /// Names that select several events at once (AudioSet label sets only): `desed` selects the ten DESED events.
    public static let builtInSets: [(name: String, events: [String])] = [("desed", desedEvents.map(\.name))]

    /// The labels this catalogue resolves against.
    public let labels: AudioSetLabels
    private let groups: [String: EventDefinition]
    private let slugs: [String]
    private let bySlug: [String: Int]
    /// Custom events (`htsatd enroll`), by name; their rows follow the model's outputs, in the order given.
    private var custom: [String: EventDefinition]
    /// Custom event names in the order given.
    public let customNames: [String]

    /// Whether the built-in groups and sets exist (they do for AudioSet label sets only).
    public var hasBuiltIns: Bool { labels.isAudioSet }

    /// Builds the catalogue. For AudioSet label sets (527 labels) it fails if a built-in group names a label
    /// missing from `labels`; for any other label set the events are its labels, and the groups are not checked.
    /// `custom` events get the rows after the model's outputs (`labels.names.count + i`), with their suggested
    /// thresholds as defaults; a name that is taken (a built-in, a label, another custom event) is an error.
    public init(labels: AudioSetLabels, custom: [CustomEvent] = []) throws {
        self.labels = labels
        var groups: [String: EventDefinition] = [:]
        func group(_ name: String, _ members: [String], _ thresholds: EventThresholds?) throws {
            var indices: [Int] = []
            var names: [String] = []
            for member in members {
                guard let index = labels.index(of: member) else {
                    throw EventCatalogError.missingGroupMember(group: name, label: member)
                }
                indices.append(index)
                names.append(labels.names[index])
            }
            groups[name] = EventDefinition(name: name, labelIndices: indices, labelNames: names, defaultThresholds: thresholds)
        }
        if labels.isAudioSet {
            for (name, members) in Self.builtInGroups { try group(name, members, nil) }
            for (name, members, on) in Self.desedEvents {
                try group(name, members, EventThresholds(on: on, off: Self.desedOffThreshold(on: on)))
            }
        }
        self.groups = groups
        let slugs = labels.names.map(Self.slug)
        self.slugs = slugs
        var bySlug: [String: Int] = [:]
        for (index, slug) in slugs.enumerated() where bySlug[slug] == nil { bySlug[slug] = index }
        self.bySlug = bySlug
        var customs: [String: EventDefinition] = [:]
        self.custom = [:]
        self.customNames = custom.map(\.name)
        for (i, event) in custom.enumerated() {
            guard Self.isValidCustomName(event.name) else { throw CustomEventError.badName(name: event.name) }
            if let taken = collision(for: event.name) { throw CustomEventError.nameCollides(name: event.name, with: taken) }
            guard customs[event.name] == nil else { throw CustomEventError.nameCollides(name: event.name, with: "another custom event file") }
            customs[event.name] = EventDefinition(name: event.name, labelIndices: [labels.names.count + i], labelNames: [event.name],
                                                  defaultThresholds: EventThresholds(on: event.thresholds.on, off: event.thresholds.off))
        }
        self.custom = customs
    }

    /// A custom event name: a lowercase letter, then lowercase letters, digits and `_` (at most 64).
    public static func isValidCustomName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first), name.unicodeScalars.count <= 64 else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// What already uses `name` (a built-in event or set, a label of this model, or an AudioSet label), or nil.
    public func collision(for name: String) -> String? {
        let key = name.lowercased()
        for catalog in [self] + (labels.isAudioSet ? [] : [try? EventCatalog(labels: .audioSet)].compactMap { $0 }) {
            if catalog.groups[key] != nil { return "the built-in event \"\(key)\"" }
            if Self.builtInSets.contains(where: { $0.name == key }) { return "the built-in event set \"\(key)\"" }
            if let index = catalog.labels.index(of: name) ?? catalog.bySlug[key] {
                return "the \(catalog.labels.isAudioSet ? "AudioSet" : "model's") label \"\(catalog.labels.names[index])\""
            }
        }
        return nil
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
        if let event = custom[key] { return event }
        let index = labels.index(of: trimmed) ?? bySlug[key]
        if let index {
            return EventDefinition(name: slugs[index], labelIndices: [index], labelNames: [labels.names[index]])
        }
        if hasBuiltIns, let set = Self.builtInSets.first(where: { $0.name == key }) {
            throw EventCatalogError.eventSet(name: set.name, events: set.events)
        }
        throw EventCatalogError.unknownEvent(name: trimmed, suggestions: suggestions(for: key))
    }

    /// Resolves several names, expanding sets (`desed`) into their events; repeated events (after resolution) are
    /// an error, since they would emit twice.
    public func resolve(_ names: [String]) throws -> [EventDefinition] {
        var seen: Set<String> = []
        var out: [EventDefinition] = []
        for name in names {
            let key = name.trimmingCharacters(in: .whitespaces).lowercased()
            let set = hasBuiltIns && groups[key] == nil && custom[key] == nil && labels.index(of: key) == nil && bySlug[key] == nil
                ? Self.builtInSets.first(where: { $0.name == key }) : nil
            for member in set?.events ?? [name] {
                let definition = try resolve(member)
                guard seen.insert(definition.name).inserted else {
                    throw EventCatalogError.duplicateEvent(name: definition.name)
                }
                out.append(definition)
            }
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
        if hasBuiltIns {
            for (name, _) in Self.builtInGroups { consider(name, builtIn: true) }
            for (name, _, _) in Self.desedEvents { consider(name, builtIn: true) }
            for (name, _) in Self.builtInSets { consider(name, builtIn: true) }
        }
        for name in customNames { consider(name, builtIn: true) }
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

    /// Text for `htsatd events`: for AudioSet labels every built-in group and DESED event with its labels, then
    /// every label with its slug.
    public func listing() -> String {
        var out = ""
        if !customNames.isEmpty {
            out += "Custom events (htsatd enroll; on/off are their suggested thresholds):\n"
            let width = customNames.map(\.count).max() ?? 0
            for name in customNames {
                let t = custom[name]!.defaultThresholds!
                out += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: "  on %.3f off %.3f", t.on, t.off) + "\n"
            }
            out += "\n"
        }
        if hasBuiltIns {
            out += "Built-in events (the score is the highest of its labels):\n"
            let width = Self.builtInGroups.map(\.name.count).max() ?? 0
            for (name, _) in Self.builtInGroups {
                let names = groups[name]!.labelNames.map { "\"\($0)\"" }.joined(separator: ", ")
                out += "  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + names + "\n"
            }
            out += "\nDESED events (the HTS-AT paper's detection set: fl_audioset_mapping and the per-class thresholds of"
            out += " fl_evaluate.py; on/off are their default thresholds). \"desed\" selects all ten:\n"
            let desedWidth = Self.desedEvents.map(\.name.count).max() ?? 0
            for (name, _, _) in Self.desedEvents {
                let event = groups[name]!, t = event.defaultThresholds!
                let names = event.labelNames.map { "\"\($0)\"" }.joined(separator: ", ")
                out += "  " + name.padding(toLength: desedWidth, withPad: " ", startingAt: 0)
                out += String(format: "  on %.3f off %.3f  ", t.on, t.off) + names + "\n"
            }
            out += "\nAudioSet labels (use the slug, or the exact name in quotes; built-in names above take precedence):\n"
        } else {
            out += "Events are the model's own labels (\(labels.source); use the slug, or the exact name in quotes):\n"
        }
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
    /// A set name (`desed`) where one event is expected; a list of events expands it.
    case eventSet(name: String, events: [String])

    public var description: String {
        switch self {
        case let .unknownEvent(name, suggestions):
            let hint = suggestions.isEmpty ? "" : " did you mean \(suggestions.joined(separator: ", ")), ...?"
            return "unknown event \"\(name)\":\(hint) Run 'htsatd events' to list them."
        case let .missingGroupMember(group, label):
            return "built-in event \"\(group)\" needs the AudioSet label \"\(label)\", which the labels file lacks; use AudioSet's class_labels_indices.csv"
        case let .duplicateEvent(name):
            return "event \"\(name)\" is configured twice; list each event once"
        case let .eventSet(name, events):
            return "\"\(name)\" selects \(events.count) events (\(events.joined(separator: ", "))); name it in the list of events, not as one event"
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

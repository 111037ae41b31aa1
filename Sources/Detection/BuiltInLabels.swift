import Foundation

/// The label sets shipped in the binary, keyed by class count (the model's output rows), so that Detection needs
/// nothing from the model but that count: 527 AudioSet, 50 ESC-50, 35 Speech Commands V2.
extension AudioSetLabels {
    /// AudioSet's 527 labels (`class_labels_indices.csv`, embedded by scripts/generate-audioset-labels.py).
    public static let audioSet = builtInSet(csv: audioSetCSV, source: "built-in AudioSet labels")

    /// ESC-50's 50 categories in `target` order: the `category` of each `target` in `meta/esc50.csv` of
    /// karolpiczak/ESC-50 (read from the fork FarukErat/ESC-50 at 10653245, an unmodified copy), which the official
    /// `esc-50/prep_esc50.ipynb` (cell 3) uses as the model's class index.
    public static let esc50 = builtIn(names: [
        "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
        "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind", "pouring_water",
        "toilet_flush", "thunderstorm",
        "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing", "brushing_teeth",
        "snoring", "drinking_sipping",
        "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening", "washing_machine",
        "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
        "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane", "fireworks",
        "hand_saw",
    ], source: "built-in ESC-50 labels")

    /// Speech Commands V2's 35 words in the official class order: `target_map` as printed by
    /// `scv2/prep_scv2.ipynb` (cell 2, lines 38-72 of the notebook) in RetroCirce/HTS-Audio-Transformer at 2e29471,
    /// the `os.listdir` order of the author's dataset folder, which the released checkpoint's outputs follow.
    public static let speechCommands = builtIn(names: [
        "bed", "wow", "five", "left", "down", "forward", "sheila", "go", "dog", "up",
        "zero", "yes", "learn", "two", "right", "four", "eight", "cat", "happy", "six",
        "tree", "bird", "follow", "marvin", "on", "stop", "one", "visual", "house", "off",
        "seven", "nine", "no", "three", "backward",
    ], source: "built-in Speech Commands V2 labels")

    /// The built-in set with `classes` labels (527, 50 or 35), or nil.
    public static func builtIn(classes: Int) -> AudioSetLabels? {
        [audioSet, esc50, speechCommands].first { $0.count == classes }
    }

    /// The labels for a model with `classes` outputs: the file at `path` when given (checked against the count),
    /// otherwise the built-in set of that size; any other count needs a labels file, and the error says so.
    public static func forModel(classes: Int, labelsFile path: String?) throws -> AudioSetLabels {
        if let path {
            let labels = try AudioSetLabels(contentsOf: URL(fileURLWithPath: path))
            try labels.validate(classes: classes)
            return labels
        }
        guard let labels = builtIn(classes: classes) else {
            throw AudioSetLabelsError(source: "labels", line: nil,
                                      reason: "the model has \(classes) outputs and no built-in label set has \(classes) labels (AudioSet 527, ESC-50 50, Speech Commands V2 35): --labels is required, a CSV with the header index,mid,display_name and one row per output")
        }
        return labels
    }

    private static func builtIn(names: [String], source: String) -> AudioSetLabels {
        let rows = names.enumerated().map { "\($0.offset),,\($0.element)" }
        return builtInSet(csv: (["index,mid,display_name"] + rows).joined(separator: "\n"), source: source)
    }

    private static func builtInSet(csv: String, source: String) -> AudioSetLabels {
        do {
            return try AudioSetLabels(csv: csv, source: source)
        } catch {
            fatalError("\(source) do not parse: \(error)")  // tested; never happens in a built binary
        }
    }
}

/// One member label's score within an event.
public struct LabelScore: Equatable, Sendable {
    /// AudioSet display name.
    public var label: String
    /// Its highest fused score over the event so far.
    public var score: Float

    /// Creates a label score.
    public init(label: String, score: Float) {
        self.label = label
        self.score = score
    }
}

/// A start or stop of a detected event; times are seconds from the start of the stream.
public struct DetectionEvent: Equatable, Sendable {
    /// Whether the event begins or ends.
    public enum Kind: String, Sendable { case start, stop }

    /// Start or stop.
    public var kind: Kind
    /// Event name (built-in group or label slug).
    public var event: String
    /// Identifier shared by an event's start and stop lines.
    public var id: Int
    /// Onset, back-dated to the grid cell where the score first reached the on threshold.
    public var start: Double
    /// For a stop: when the score fell below the off threshold for good (or the forced end).
    public var end: Double?
    /// For a start: the highest group score until confirmation; for a stop: the peak over the event.
    public var score: Float
    /// Member labels by descending score: those above the label floor, and at least the top one.
    public var labels: [LabelScore]
    /// False on the stop of an early start the settled read-out did not confirm (its `end` is then start + min duration).
    public var confirmed: Bool = true

    /// Creates an event.
    public init(kind: Kind, event: String, id: Int, start: Double, end: Double? = nil, score: Float, labels: [LabelScore]) {
        self.kind = kind
        self.event = event
        self.id = id
        self.start = start
        self.end = end
        self.score = score
        self.labels = labels
    }

    /// `end - start` for a stop.
    public var duration: Double? { end.map { $0 - start } }
}


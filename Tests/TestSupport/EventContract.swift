import Detection

/// The event-line contract (README, "Event lines"), checked over one run's lines in emission order.
public struct EventContract {
    /// Per event name: its minimum duration and onset tolerance.
    public var minDuration: [String: Double]
    public var tolerance: [String: Double]
    /// The fusion grid cell (an unconfirmed stop spans at least one).
    public var cell: Double

    /// Plain memberwise initializer.
    public init(minDuration: [String: Double], tolerance: [String: Double], cell: Double) {
        self.minDuration = minDuration
        self.tolerance = tolerance
        self.cell = cell
    }

    /// What one run says about the contract: violations (empty when it holds) and counts of what was exercised.
    public struct Report {
        public var violations: [String] = []
        public var unconfirmed = 0
        public var confirmed = 0
        /// Confirmed events whose start differs from the settled-only run's (an adopted early start).
        public var moved = 0
        /// Unconfirmed events a later confirmed one starts inside (allowed only when withdrawn for an earlier one).
        public var withdrawnOverlaps = 0

        /// No violations, nothing counted.
        public init() {}
    }

    /// Checks `lines`; with `reference` (the settled-only run's lines) also that the confirmed events match it.
    public func check(_ lines: [DetectionEvent], reference: [DetectionEvent]? = nil) -> Report {
        var report = Report()
        func fail(_ message: String) { report.violations.append(message) }
        var open: [Int: DetectionEvent] = [:]
        var stopped: Set<Int> = []
        var lastStartID = 0
        var stops: [(event: DetectionEvent, index: Int)] = []
        for (index, line) in lines.enumerated() {
            switch line.kind {
            case .start:
                if open[line.id] != nil || stopped.contains(line.id) { fail("id \(line.id) started twice: \(describe(line))") }
                if line.id <= lastStartID { fail("id \(line.id) after id \(lastStartID) in start-line order") }
                lastStartID = max(lastStartID, line.id)
                open[line.id] = line
            case .stop:
                guard let started = open.removeValue(forKey: line.id) else { fail("stop without an open start: \(describe(line))"); continue }
                stopped.insert(line.id)
                if started.event != line.event || started.start != line.start {
                    fail("stop \(describe(line)) does not match its start \(describe(started))")
                }
                guard let end = line.end else { fail("stop without end: \(describe(line))"); continue }
                let min = minDuration[line.event] ?? 0
                if !(end > line.start) { fail("stop ends at or before its start: \(describe(line))") }
                if end - line.start < min - 1e-6 { fail("shorter than min duration \(min): \(describe(line))") }
                if !line.confirmed {
                    report.unconfirmed += 1
                    if abs(end - (line.start + Swift.max(min, cell))) > 1e-6 { fail("unconfirmed stop not start + min duration: \(describe(line))") }
                } else {
                    report.confirmed += 1
                }
                stops.append((line, index))
            }
        }
        for event in open.values { fail("never stopped: \(describe(event))") }

        for name in Set(stops.map(\.event.event)) {
            let mine = stops.filter { $0.event.event == name }
            let confirmed = mine.filter(\.event.confirmed).map(\.event).sorted { $0.start < $1.start }
            for (a, b) in zip(confirmed, confirmed.dropFirst()) where b.start < a.end! - 1e-9 {
                fail("confirmed events overlap: \(describe(a)) and \(describe(b))")
            }
            for u in mine where !u.event.confirmed {
                let inside = confirmed.filter { $0.start >= u.event.start - 1e-9 && $0.start < u.event.end! - 1e-9 }
                guard !inside.isEmpty else { continue }
                // Allowed only when the unconfirmed start was withdrawn for an earlier-starting settled event, whose
                // start line comes right after its stop.
                let next = u.index + 1 < lines.count ? lines[u.index + 1] : nil
                if let next, next.kind == .start, next.event == name, next.start < u.event.start {
                    report.withdrawnOverlaps += 1
                } else {
                    fail("unconfirmed \(describe(u.event)) overlaps later-starting confirmed \(inside.map(describe))")
                }
            }
        }

        if let reference {
            let referenceStops = reference.filter { $0.kind == .stop }
            if referenceStops.contains(where: { !$0.confirmed }) { fail("the settled-only run has unconfirmed events") }
            for name in Set(referenceStops.map(\.event) + stops.map(\.event.event)) {
                let expected = referenceStops.filter { $0.event == name }.sorted { $0.start < $1.start }
                let got = stops.map(\.event).filter { $0.event == name && $0.confirmed }.sorted { $0.start < $1.start }
                guard expected.count == got.count else {
                    fail("\(name): \(got.count) confirmed events, settled-only run has \(expected.count): \(got.map(describe)) vs \(expected.map(describe))")
                    continue
                }
                let tol = tolerance[name] ?? 0
                for (g, e) in zip(got, expected) {
                    if g.end != e.end { fail("end differs from the settled-only run: \(describe(g)) vs \(describe(e))") }
                    if abs(g.start - e.start) > tol + 1e-6 { fail("start more than \(tol) s from the settled-only run: \(describe(g)) vs \(describe(e))") }
                    if g.start != e.start { report.moved += 1 }
                }
            }
        }
        return report
    }
}

/// One line, briefly: "start dog#3 1.230" or "stop dog#3 1.230-2.000 unconfirmed".
public func describe(_ e: DetectionEvent) -> String {
    let times = e.end.map { String(format: "%.3f-%.3f", e.start, $0) } ?? String(format: "%.3f", e.start)
    return "\(e.kind) \(e.event)#\(e.id) \(times)\(e.confirmed ? "" : " unconfirmed")"
}

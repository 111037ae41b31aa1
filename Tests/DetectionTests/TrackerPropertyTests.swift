import Detection
import Foundation
import TestSupport
import XCTest

/// Seeded property tests of the event-line contract: random score tracks, seen through random windows with
/// window-edge artefacts, through `Detector` with random settings; each run is checked against the contract and
/// against the same settings without the early read-out (onset settle = settle).
///
/// Reproduce a failure with `TRACKER_PROPERTY_SEED=<seed>`; `TRACKER_PROPERTY_CASES=<n>` runs more cases.
final class TrackerPropertyTests: XCTestCase {
    /// 10 s windows of 256 frames at 1 kHz: the HTS-AT layout at a fraction of the cost.
    static let geometry = WindowGeometry(sampleRate: 1000, clipSamples: 10_000, stftHop: 10, frames: 256)
    static let step = 0.01  // score-track resolution, s
    static let names = ["a", "b"]
    static let members = [[0], [1, 2]]  // b is the max of two labels

    /// One generated case: settings, a score track per class and how windows distort it.
    struct Case {
        var seed: UInt64
        var length = 0.0, hop = 1.0, settle = 9.0, onsetSettle = 2.0, cell = 0.01
        var settings: [EventSettings] = []
        var tracks: [[Float]] = []
        /// Per class: the running maximum of the track over the last `linger` seconds (the model's right-edge tail).
        var lingered: [[Float]] = []
        var rightEdge = 0.0, linger = 0.0, leftEdge = 0.0, noise: Float = 0, dropWindow = 0.0
        var features: [String] = []

        var summary: String {
            let s = settings.enumerated().map { i, e in
                String(format: "%@: on %.3f off %.3f min %.3f gap %.3f max %@", TrackerPropertyTests.names[i], e.onThreshold, e.offThreshold,
                       e.minDuration, e.mergeGap, e.maxDuration.map { String(format: "%.3f", $0) } ?? "none")
            }
            return String(format: "seed %llu: %.2f s, hop %.3f, settle %.3f, onset settle %.3f, cell %.2f, right edge %.2f s lingering %.2f s, left edge %.2f s, noise %.3f, drop %.2f\n  ",
                          seed, length, hop, settle, onsetSettle, cell, rightEdge, linger, leftEdge, noise, dropWindow)
                + s.joined(separator: "\n  ") + "\n  tracks: " + features.joined(separator: "; ")
        }
    }

    static func generate(seed: UInt64) -> Case {
        var r = SplitMix(seed: seed)
        var c = Case(seed: seed)
        c.length = r.range(4, 40)
        c.hop = r.pick([0.25, 0.5, 1, 1, 1, 1.5, 2, 3.3])
        c.cell = r.pick([0.01, 0.01, 0.02, 0.05])
        c.settle = r.chance(0.5) ? 10 - c.hop : r.range(0, 10)
        c.onsetSettle = r.chance(0.15) ? c.settle : r.range(0, c.settle)
        for _ in names {
            let on = Float(r.range(0.3, 0.85))
            let off = r.chance(0.1) ? on : Float(r.range(0.1, Double(on)))
            let min = r.chance(0.15) ? 0 : r.range(0.01, 1.6)
            let gap = r.chance(0.15) ? 0 : r.range(0, 2.5)
            let max: Double? = r.chance(0.5) ? nil : r.range(Swift.max(min, 0.05), 8)
            c.settings.append(EventSettings(onThreshold: on, offThreshold: off, minDuration: min, mergeGap: gap, maxDuration: max))
        }
        c.rightEdge = r.chance(0.2) ? 0 : r.range(0, 4)
        c.linger = r.range(0, 4)
        c.leftEdge = r.chance(0.5) ? 0 : r.range(0, 2)
        c.noise = r.chance(0.3) ? 0 : Float(r.range(0, 0.15))
        c.dropWindow = r.chance(0.8) ? 0 : r.range(0, 0.2)

        let n = Int(c.length / step) + 1
        for (e, classes) in members.enumerated() {
            let s = c.settings[e]
            for cls in classes {
                var track = [Float](repeating: Float(r.range(0, Double(s.offThreshold) * 0.9)), count: n)
                func fill(_ from: Double, _ seconds: Double, _ value: (Double) -> Float) {
                    let a = Swift.max(0, Int(from / step)), b = Swift.min(n, Int((from + seconds) / step))
                    if a < b { for i in a..<b { track[i] = value(Double(i - a) * step) } }
                }
                let high = { Float(r.range(Double(s.onThreshold), 1)) }
                let between = { Float(r.range(Double(s.offThreshold), Double(s.onThreshold))) }
                var features: [String] = []
                for _ in 0..<r.int(6) {
                    let t = r.range(-1, c.length)
                    switch r.int(7) {
                    case 0:
                        let len = r.range(0.02, 8), v = high()
                        fill(t, len, { _ in v }); features.append(String(format: "burst %.2f+%.2f", t, len))
                    case 1:
                        let up = r.range(0.1, 3), hold = r.range(0, 3), down = r.range(0.1, 3), v = high()
                        fill(t, up, { Float($0 / up) * v })
                        fill(t + up, hold, { _ in v })
                        fill(t + up + hold, down, { v * Float(1 - $0 / down) })
                        features.append(String(format: "ramp %.2f %.2f/%.2f/%.2f", t, up, hold, down))
                    case 2:
                        // Flicker around the thresholds.
                        let len = r.range(0.2, 5), period = r.range(0.01, 0.6)
                        let levels = [s.onThreshold + 0.02, s.onThreshold - 0.02, s.offThreshold + 0.02, s.offThreshold - 0.02]
                        var phase = r.int(4)
                        fill(t, len, { x in
                            if Int(x / period) % 2 == 0 { phase = (phase + 1) % 4 }
                            return levels[phase]
                        })
                        features.append(String(format: "flicker %.2f+%.2f period %.2f", t, len, period))
                    case 3:
                        // Two bursts split by a gap near the merge gap.
                        let a = r.range(0.1, 2), gap = Swift.max(0, s.mergeGap + r.range(-0.1, 0.1)), b = r.range(0.1, 2), v = high()
                        fill(t, a, { _ in v }); fill(t + a + gap, b, { _ in v })
                        features.append(String(format: "pair %.2f %.2f gap %.2f %.2f", t, a, gap, b))
                    case 4:
                        // A sound near (a multiple of) the maximum duration.
                        let len = Double(1 + r.int(2)) * (s.maxDuration ?? r.range(1, 6)) + r.range(-0.1, 0.1), v = high()
                        fill(t, len, { _ in v }); features.append(String(format: "long %.2f+%.2f", t, len))
                    case 5:
                        // The issue's case: a burst, a tail between off and on, a second burst 4-7 s after the first.
                        let a = r.range(0.3, 3), apart = r.range(4, 7), v = high(), tail = between()
                        fill(t, apart + 0.5, { _ in tail }); fill(t, a, { _ in v }); fill(t + apart, r.range(0.3, 3), { _ in v })
                        features.append(String(format: "two bursts %.2f and %.2f", t, t + apart))
                    default:
                        let len = r.range(0.5, 6), v = between()
                        fill(t, len, { _ in v }); features.append(String(format: "between %.2f+%.2f", t, len))
                    }
                }
                c.tracks.append(track)
                c.features.append("class \(cls): " + (features.isEmpty ? "quiet" : features.joined(separator: ", ")))
                c.lingered.append(runningMax(track, over: Int(c.linger / step)))
            }
        }
        return c
    }

    /// `out[i]` = max of `x[i - back ... i]`, in linear time (a queue of indices with decreasing values).
    static func runningMax(_ x: [Float], over back: Int) -> [Float] {
        var out = x, queue: [Int] = [], head = 0
        for i in x.indices {
            while queue.count > head, x[queue[queue.count - 1]] <= x[i] { queue.removeLast() }
            queue.append(i)
            if queue[head] < i - back { head += 1 }
            out[i] = x[queue[head]]
        }
        return out
    }

    /// Runs the case's windows through a detector with `onsetSettle`; returns its lines.
    static func run(_ c: Case, onsetSettle: Double) throws -> [DetectionEvent] {
        let g = geometry
        let specs = names.indices.map {
            EventSpec(definition: EventDefinition(name: names[$0], labelIndices: members[$0], labelNames: members[$0].map { "L\($0)" }),
                      settings: c.settings[$0])
        }
        let detector = try Detector(events: specs, geometry: g, classes: 3, settle: c.settle, onsetSettle: onsetSettle,
                                    hopSeconds: c.hop, cellSeconds: c.cell)
        let hop = Int64((c.hop * Double(g.sampleRate)).rounded())
        let total = Int64(c.length * Double(g.sampleRate))
        var ends = Array(stride(from: hop, through: total, by: Int(hop)))
        if ends.last != total { ends.append(total) }
        // Window artefacts are drawn from their own stream, the same for both runs of a case.
        var r = SplitMix(seed: c.seed ^ 0xA5A5_A5A5)
        var lines: [DetectionEvent] = []
        var framewise = [Float](repeating: 0, count: g.frames * 3)
        for end in ends {
            let drop = r.chance(c.dropWindow) && end != total
            let leftFactor = Float(r.range(0.3, 1.3))
            for i in 0..<g.frames {
                let offset = g.frameOffset(Double(i)) / Double(g.sampleRate)
                let t = Double(end - Int64(g.clipSamples)) / Double(g.sampleRate) + offset
                for cls in 0..<3 {
                    var v: Float
                    if t < 0 {
                        v = 0.99  // the zero padding: must never reach fusion
                    } else {
                        let k = Swift.min(c.tracks[cls].count - 1, Int(t / step))
                        v = 10 - offset < c.rightEdge ? c.lingered[cls][k] : c.tracks[cls][k]
                        if offset < c.leftEdge { v *= leftFactor }
                        if c.noise > 0 { v += c.noise * Float(r.range(-1, 1)) }
                    }
                    framewise[i * 3 + cls] = Swift.min(1, Swift.max(0, v))
                }
            }
            if drop { continue }  // a skipped window (inference fell behind)
            lines += framewise.withUnsafeBufferPointer { detector.consume(windowEndSample: end, framewise: $0) }
        }
        return lines + detector.finish(atSample: total)
    }

    func contract(_ c: Case) -> EventContract {
        EventContract(minDuration: Dictionary(uniqueKeysWithValues: zip(Self.names, c.settings.map(\.minDuration))),
                      tolerance: Dictionary(uniqueKeysWithValues: zip(Self.names, c.settings.map { max(1, c.hop, $0.minDuration) })),
                      cell: c.cell)
    }

    func testRandomTracksKeepTheContract() throws {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["TRACKER_PROPERTY_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            let cases = environment["TRACKER_PROPERTY_CASES"].flatMap(Int.init) ?? 3000
            seeds = (0..<UInt64(cases)).map { 0x1257_0000 + $0 }
        }
        let began = Date()
        var total = EventContract.Report()
        var failures = 0
        for seed in seeds {
            let c = Self.generate(seed: seed)
            let lines = try Self.run(c, onsetSettle: c.onsetSettle)
            let reference = try Self.run(c, onsetSettle: c.settle)
            var report = contract(c).check(lines, reference: reference)
            report.violations += contract(c).check(reference).violations.map { "settled-only run: " + $0 }
            total.unconfirmed += report.unconfirmed
            total.confirmed += report.confirmed
            total.moved += report.moved
            total.withdrawnOverlaps += report.withdrawnOverlaps
            if !report.violations.isEmpty {
                failures += 1
                if failures <= 3 {
                    XCTFail("\(c.summary)\n  violations:\n    \(report.violations.joined(separator: "\n    "))\n  lines:\n    "
                            + lines.map(describe).joined(separator: "\n    ") + "\n  settled-only:\n    " + reference.map(describe).joined(separator: "\n    "))
                }
            }
        }
        print(String(format: "%d cases in %.2f s: %d confirmed events (%d with an adopted early start), %d unconfirmed, %d withdrawn overlaps, %d failing",
                     seeds.count, Date().timeIntervalSince(began), total.confirmed, total.moved, total.unconfirmed, total.withdrawnOverlaps, failures))
        if seeds.count >= 1000 {
            // The generator must reach every path, or the cases prove little.
            XCTAssertGreaterThan(total.confirmed, 1000)
            XCTAssertGreaterThan(total.moved, 50)
            XCTAssertGreaterThan(total.unconfirmed, 50)
        }
    }
}

import ArgumentParser
import AudioCapture
import Clips
import Detection
import Engine
import Foundation
import HTSAT
import Logging

/// `htsatd plot`: one SVG of a recording for tuning: log-mel on top, then per event its settled score track (what the
/// tracker sees) with the on/off thresholds, the detected events and, with `--truth`, the annotated spans.
public struct Plot: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Draw a recording's spectrogram, each event's settled score and thresholds, and the detected events as an SVG.",
        discussion: """
        Takes the flags of 'run' (model, events, thresholds, settle, config), runs file mode over --input, and writes \
        the picture to --output. --truth adds annotated spans (a JSON {"events": [{"event", "start", "end"}]} file).
        """
    )

    @OptionGroup var options: Run
    @Option(help: "The SVG file to write.") var output: String
    @Option(help: "Draw from this second of the recording (default: its start).") var from: Double?
    @Option(help: "Draw up to this second (default: its end).") var to: Double?
    @Option(help: "Annotated events to compare with (the fixtures' *.events.json format).") var truth: String?

    public init() {}

    public func run() throws {
        try runReportingErrors {
            guard let input = options.input, input != "-" else { throw DaemonError("plot needs --input FILE (a file, not stdin: it is read twice)") }
            var config = try options.effectiveConfig()
            config.clips.dir = nil
            let logger = makeLogger(level: .warning)
            let loaded = try LoadedModel(config: config, logger: logger)
            let rate = loaded.model.config.signal.sampleRate
            let truthSpans = try truth.map(Self.readTruth) ?? []

            var stops: [DetectionEvent] = []
            let scheduler = try loaded.scheduler(config: config, logger: logger, afterWindow: {}) { event in
                if event.kind == .stop { stops.append(event) }
            }
            var tracks = [[(Double, Float)]](repeating: [], count: loaded.specs.count)
            scheduler.detector.settledScoreTap = { e, t, score in tracks[e].append((t, score)) }
            try scheduler.runFile(AudioFileReader(path: input, targetRate: rate))

            let samples = try AudioFileReader.readAll(path: input, targetRate: rate)
            let extractor = try LogMelExtractor(model: loaded.model)
            let logMel = samples.withUnsafeBufferPointer { extractor($0) }
            let duration = Double(samples.count) / Double(rate)
            let t0 = max(0, from ?? 0), t1 = min(duration, to ?? duration)
            guard t1 > t0 else { throw DaemonError("--from \(t0) / --to \(t1): empty span (the recording lasts \(String(format: "%.2f", duration)) s)") }

            let plot = ScorePlot(
                title: (input as NSString).lastPathComponent, from: t0, to: t1,
                logMel: logMel, mels: extractor.mels, framesPerSecond: Double(rate) / Double(extractor.hop),
                lanes: loaded.specs.enumerated().map { e, spec in
                    ScorePlot.Lane(event: spec.definition.name, on: Double(spec.settings.onThreshold),
                                   off: Double(spec.settings.offThreshold), track: tracks[e],
                                   detected: stops.filter { $0.event == spec.definition.name },
                                   truth: truthSpans.filter { $0.event == spec.definition.name })
                })
            try Data(plot.svg().utf8).write(to: URL(fileURLWithPath: output))
            FileHandle.standardError.write(Data("wrote \(output): \(stops.count) event(s) over \(String(format: "%.1f", t1 - t0)) s\n".utf8))
        }
    }

    /// Reads `{"events": [{"event", "start", "end"}]}`.
    static func readTruth(_ path: String) throws -> [ScorePlot.Span] {
        struct File: Decodable { struct Event: Decodable { let event: String; let start: Double; let end: Double }; let events: [Event] }
        do {
            let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            return file.events.map { ScorePlot.Span(event: $0.event, start: $0.start, end: $0.end) }
        } catch {
            throw DaemonError("--truth \(path): expected {\"events\": [{\"event\", \"start\", \"end\"}, …]}: \(error)")
        }
    }
}

/// The picture `htsatd plot` draws, written as SVG text (no renderer needed).
struct ScorePlot {
    /// An annotated span.
    struct Span { let event: String; let start: Double; let end: Double }
    /// One event's lane.
    struct Lane { let event: String; let on: Double; let off: Double; let track: [(Double, Float)]; let detected: [DetectionEvent]; let truth: [Span] }

    let title: String, from: Double, to: Double
    let logMel: [Float], mels: Int, framesPerSecond: Double
    let lanes: [Lane]

    // Layout, in pixels.
    private let left = 170.0, right = 24.0, top = 62.0, specHeight = 160.0, laneHeight = 130.0, gap = 14.0
    private var width: Double { min(2400, max(960, 24 * (to - from))) + left + right }
    private var plotWidth: Double { width - left - right }
    private func x(_ t: Double) -> Double { left + (t - from) / (to - from) * plotWidth }

    func svg() -> String {
        let axisY = top + specHeight + gap + Double(lanes.count) * (laneHeight + gap)
        let height = axisY + 64
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="\(f(width))" height="\(f(height))" \
        viewBox="0 0 \(f(width)) \(f(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">
        <rect width="100%" height="100%" fill="#ffffff"/>
        <text x="\(f(left))" y="24" font-size="17" font-weight="bold">\(esc(title)) — \(f(from))–\(f(to)) s</text>

        """
        s += legend(y: 44)
        s += spectrogram()
        for (i, lane) in lanes.enumerated() { s += draw(lane, y: top + specHeight + gap + Double(i) * (laneHeight + gap)) }
        s += axis(y: axisY)
        return s + "</svg>\n"
    }

    private func spectrogram() -> String {
        let f0 = Int(from * framesPerSecond), f1 = min(logMel.count / max(mels, 1), Int((to * framesPerSecond).rounded(.up)) + 1)
        let crop = f1 > f0 ? Array(logMel[(f0 * mels)..<(f1 * mels)]) : []
        let image = SpectrogramPicture.render(logMel: crop, mels: mels, width: Int(plotWidth), rowsPerMel: 2)
        let data = image.png().map { Data($0).base64EncodedString() } ?? ""
        var s = "<text x=\"\(f(left - 10))\" y=\"\(f(top + specHeight / 2))\" text-anchor=\"end\" font-weight=\"bold\">log-mel</text>\n"
        s += "<text x=\"\(f(left - 10))\" y=\"\(f(top + specHeight / 2 + 16))\" text-anchor=\"end\" fill=\"#555\" font-size=\"11\">\(mels) bands</text>\n"
        s += "<image x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(specHeight))\" preserveAspectRatio=\"none\" "
        s += "xlink:href=\"data:image/png;base64,\(data)\" href=\"data:image/png;base64,\(data)\"/>\n"
        // Detected spans outlined over the spectrogram, so what was found lines up with what is seen.
        for lane in lanes {
            for e in lane.detected where visible(e.start, e.end ?? e.start) {
                let (a, b) = clamp(e.start, e.end ?? e.start)
                s += "<rect x=\"\(f(x(a)))\" y=\"\(f(top))\" width=\"\(f(max(1, x(b) - x(a))))\" height=\"\(f(specHeight))\" fill=\"none\" stroke=\"#ffffff\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>\n"
            }
        }
        return s
    }

    /// Swatches naming each mark, in one row under the title.
    private func legend(y: Double) -> String {
        var s = "", x = left
        func item(_ mark: String, _ label: String) {
            s += mark + "<text x=\"\(f(x + 30))\" y=\"\(f(y + 4))\" fill=\"#333\">\(label)</text>\n"
            x += 40 + Double(label.count) * 7.2
        }
        func line(_ color: String, dashed: Bool) -> String {
            "<line x1=\"\(f(x))\" x2=\"\(f(x + 24))\" y1=\"\(f(y))\" y2=\"\(f(y))\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
        }
        func box(_ color: String, _ opacity: Double) -> String {
            "<rect x=\"\(f(x))\" y=\"\(f(y - 6))\" width=\"24\" height=\"12\" fill=\"\(color)\" fill-opacity=\"\(f(opacity))\"/>"
        }
        item(line("#1565c0", dashed: false), "settled score (what the tracker uses)")
        item(line("#d32f2f", dashed: true), "on threshold")
        item(line("#f57c00", dashed: true), "off threshold")
        item(box("#4caf50", 0.35), "detected event #id")
        item(box("#888888", 1), "annotated truth")
        return s
    }

    private func draw(_ lane: Lane, y: Double) -> String {
        // A label strip on top (event ids), the score area, the truth bar at the bottom.
        let scoreTop = y + 24, scoreBottom = y + laneHeight - 22
        func sy(_ v: Double) -> Double { scoreBottom - v * (scoreBottom - scoreTop) }
        var s = "<g>\n<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(plotWidth))\" height=\"\(f(laneHeight))\" fill=\"#f7f7f7\" stroke=\"#cccccc\"/>\n"
        s += "<text x=\"\(f(left - 34))\" y=\"\(f(y + laneHeight / 2 - 4))\" text-anchor=\"end\" font-weight=\"bold\" font-size=\"14\">\(esc(lane.event))</text>\n"
        s += "<text x=\"\(f(left - 34))\" y=\"\(f(y + laneHeight / 2 + 13))\" text-anchor=\"end\" fill=\"#555\" font-size=\"11\">on \(f(lane.on)) / off \(f(lane.off))</text>\n"
        for v in [0.0, 0.5, 1.0] {
            s += "<line x1=\"\(f(left))\" x2=\"\(f(left + plotWidth))\" y1=\"\(f(sy(v)))\" y2=\"\(f(sy(v)))\" stroke=\"#e0e0e0\"/>\n"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(sy(v) + 4))\" text-anchor=\"end\" fill=\"#777\" font-size=\"10\">\(f(v))</text>\n"
        }
        // Truth: a grey bar along the lane's bottom.
        for t in lane.truth where visible(t.start, t.end) {
            let (a, b) = clamp(t.start, t.end)
            s += "<rect x=\"\(f(x(a)))\" y=\"\(f(y + laneHeight - 16))\" width=\"\(f(max(1, x(b) - x(a))))\" height=\"12\" fill=\"#888888\"><title>truth \(esc(t.event)) \(f(t.start))–\(f(t.end)) s</title></rect>\n"
            s += "<text x=\"\(f(x(a) + 3))\" y=\"\(f(y + laneHeight - 6))\" fill=\"#ffffff\" font-size=\"10\">truth</text>\n"
        }
        for e in lane.detected where visible(e.start, e.end ?? e.start) {
            let (a, b) = clamp(e.start, e.end ?? e.start)
            let dashed = e.confirmed ? "" : " stroke=\"#2e7d32\" stroke-dasharray=\"3 3\""
            s += "<rect x=\"\(f(x(a)))\" y=\"\(f(y + 1))\" width=\"\(f(max(1, x(b) - x(a))))\" height=\"\(f(scoreBottom - y))\" fill=\"#4caf50\" fill-opacity=\"0.28\"\(dashed)>"
            s += "<title>\(esc(e.event)) #\(e.id) \(f(e.start))–\(f(e.end ?? e.start)) s\(e.confirmed ? "" : " (unconfirmed)")</title></rect>\n"
            s += "<text x=\"\(f(x(a) + 3))\" y=\"\(f(y + 16))\" fill=\"#1b5e20\" font-weight=\"bold\">\(esc(e.event)) #\(e.id)</text>\n"
        }
        for (v, color) in [(lane.on, "#d32f2f"), (lane.off, "#f57c00")] {
            s += "<line x1=\"\(f(left))\" x2=\"\(f(left + plotWidth))\" y1=\"\(f(sy(v)))\" y2=\"\(f(sy(v)))\" stroke=\"\(color)\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n"
        }
        s += "<polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.6\" points=\"\(points(lane.track, sy))\"/>\n"
        return s + "</g>\n"
    }

    /// The track's maximum per pixel column (peaks stay visible however long the recording).
    private func points(_ track: [(Double, Float)], _ sy: (Double) -> Double) -> String {
        var columns: [Int: Float] = [:]
        for (t, v) in track where t >= from && t <= to {
            let c = Int(x(t).rounded())
            columns[c] = max(columns[c] ?? 0, v)
        }
        return columns.keys.sorted().map { "\($0),\(f(sy(Double(columns[$0]!))))" }.joined(separator: " ")
    }

    private func axis(y: Double) -> String {
        let span = to - from
        let step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300].first { plotWidth / (span / $0) >= 60 } ?? 600
        var s = "<line x1=\"\(f(left))\" x2=\"\(f(left + plotWidth))\" y1=\"\(f(y))\" y2=\"\(f(y))\" stroke=\"#333\"/>\n"
        var t = (from / step).rounded(.up) * step
        while t <= to + 1e-9 {
            s += "<line x1=\"\(f(x(t)))\" x2=\"\(f(x(t)))\" y1=\"\(f(top))\" y2=\"\(f(y))\" stroke=\"#000\" stroke-opacity=\"0.07\"/>\n"
            s += "<line x1=\"\(f(x(t)))\" x2=\"\(f(x(t)))\" y1=\"\(f(y))\" y2=\"\(f(y + 6))\" stroke=\"#333\"/>\n"
            s += "<text x=\"\(f(x(t)))\" y=\"\(f(y + 22))\" text-anchor=\"middle\">\(f(t))</text>\n"
            t += step
        }
        s += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(y + 46))\" text-anchor=\"middle\" fill=\"#333\">time (s)</text>\n"
        return s
    }

    private func visible(_ a: Double, _ b: Double) -> Bool { b >= from && a <= to }
    private func clamp(_ a: Double, _ b: Double) -> (Double, Double) { (max(a, from), min(b, to)) }
    private func f(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
    private func esc(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

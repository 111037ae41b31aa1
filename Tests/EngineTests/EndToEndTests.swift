import AudioCapture
import Engine
import Sinks
import Detection
import Foundation
import HTSAT
import Logging
import TestSupport
import XCTest

/// Acceptance: the trained fixture detector through the file-mode pipeline (10 s windows every 1 s, default settle,
/// on/off 0.6/0.4, merge gap 1 s) finds every annotated event, start within 1.5 s and end within 2.0 s, with at most
/// one spurious event longer than 1 s per stream.
final class EndToEndTests: XCTestCase {
    struct Annotation: Decodable {
        let event: String
        let start: Double
        let end: Double
    }

    struct Annotations: Decodable {
        let events: [Annotation]
    }

    func testDogAndSirenStream() throws {
        try check(stream: "dog_siren_32k")
    }

    /// 48 kHz stereo: exercises downmix and resampling on the way in.
    func testAlarmAndSpeechStream() throws {
        try check(stream: "alarm_speech_48k_stereo")
    }

    func check(stream: String) throws {
        let checkpoint = try Fixtures.require("detector/detector.ckpt")
        let wav = try Fixtures.require("detector/streams/\(stream).wav")
        let annotations = try JSONDecoder().decode(Annotations.self, from: Data(contentsOf: Fixtures.require("detector/streams/\(stream).events.json"))).events
        let labels = try AudioSetLabels(contentsOf: Fixtures.require("audioset/class_labels_indices.csv"))

        let model = try HTSATModel(stateDict: StateDict.load(contentsOf: checkpoint.path), signal: .audioSet, threads: 1)
        let signal = model.config.signal
        try labels.validate(classes: model.config.classes)
        let settings = EventSettings(onThreshold: 0.6, offThreshold: 0.4, mergeGap: 1.0)
        let specs = try EventCatalog(labels: labels).resolve(["dog_bark", "siren", "smoke_alarm", "speech"])
            .map { EventSpec(definition: $0, settings: settings) }
        // The daemon's defaults: full averaging for stops, starts from the early read-out.
        let detector = try Detector(events: specs, geometry: WindowGeometry(config: model.config), classes: model.config.classes,
                                    settle: Detector.defaultSettle(clipSeconds: 10, hopSeconds: 1),
                                    onsetSettle: Detector.defaultOnsetSettle)
        XCTAssertEqual(detector.fusion.geometry.frames, 1024)

        var events: [DetectionEvent] = []
        let scheduler = try WindowScheduler(detector: detector, hopSeconds: 1, logger: Logger(label: "e2e"),
                                            inference: WindowScheduler.inference(model: model), output: { events.append($0) })
        let began = Date()
        try scheduler.runFile(AudioFileReader(path: wav.path, targetRate: signal.sampleRate))
        let stats = scheduler.stats
        print(String(format: "%@: %d windows, %.1f ms mean inference, real-time factor %.3f, %.1f s wall",
                     stream, stats.windowsRun, stats.meanInferenceMilliseconds, stats.realTimeFactor, Date().timeIntervalSince(began)))
        XCTAssertGreaterThanOrEqual(stats.windowsRun, 60)
        XCTAssertEqual(stats.windowsSkipped, 0)

        // Every start has its stop, after it, with the same id and name; every line is one valid JSON object.
        var open: [Int: DetectionEvent] = [:]
        for event in events {
            let line = OutputMessage.event(EventLine(event, clock: { Date(timeIntervalSince1970: $0) })).line
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(line.utf8)), line)
            if event.kind == .start {
                XCTAssertNil(open[event.id])
                open[event.id] = event
            } else {
                XCTAssertEqual(open.removeValue(forKey: event.id)?.event, event.event)
            }
        }
        XCTAssertTrue(open.isEmpty, "unclosed: \(open)")

        let stops = events.filter { $0.kind == .stop }
        var matched: Set<Int> = []
        for annotation in annotations {
            let candidates = stops.filter { $0.event == annotation.event && $0.start <= annotation.end + 1.5 && $0.end! >= annotation.start - 1.5 }
            guard let found = candidates.min(by: { abs($0.start - annotation.start) < abs($1.start - annotation.start) }) else {
                XCTFail("\(stream): missed \(annotation.event) at \(annotation.start)-\(annotation.end); detected \(stops.map { "\($0.event) \($0.start)-\($0.end!)" })")
                continue
            }
            matched.insert(found.id)
            let startError = found.start - annotation.start, endError = found.end! - annotation.end
            print(String(format: "%@: %@ %.3f-%.3f detected %.2f-%.2f, start error %+.2f s, end error %+.2f s, peak %.2f",
                         stream, annotation.event, annotation.start, annotation.end, found.start, found.end!, startError, endError, found.score))
            XCTAssertLessThanOrEqual(abs(startError), 1.5, "\(stream) \(annotation.event) start")
            XCTAssertLessThanOrEqual(abs(endError), 2.0, "\(stream) \(annotation.event) end")
        }
        let spurious = stops.filter { !matched.contains($0.id) && $0.duration! > 1 }
        XCTAssertLessThanOrEqual(spurious.count, 1, "\(stream) spurious: \(spurious)")
    }
}

import Detection
import Foundation
import Sinks
import XCTest

final class EventLineTests: XCTestCase {
    let origin = Date(timeIntervalSince1970: 1_700_000_000)

    func testStartLineShape() throws {
        let event = DetectionEvent(kind: .start, event: "dog_bark", id: 3, start: 8.07, score: 0.8734,
                                   labels: [LabelScore(label: "Bark", score: 0.8734), LabelScore(label: "Dog", score: 0.61)])
        let line = OutputMessage.event(EventLine(event, clock: { self.origin.addingTimeInterval($0) })).line
        XCTAssertFalse(line.contains("\n"))
        XCTAssertEqual(line, #"{"type":"start","event":"dog_bark","id":3,"start":8.07,"time":"2023-11-14T22:13:28.070Z","score":0.873,"labels":[{"label":"Bark","score":0.873},{"label":"Dog","score":0.61}]}"#)
    }

    func testStopLineShapeAndEscaping() throws {
        let event = DetectionEvent(kind: .stop, event: "odd \"name\"\n/é", id: 4, start: 1.0, end: 3.4567, score: 0.9,
                                   labels: [LabelScore(label: "Smoke detector, smoke alarm", score: 0.9)])
        let line = OutputMessage.event(EventLine(event, clock: { self.origin.addingTimeInterval($0) })).line
        XCTAssertFalse(line.contains("\n"))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["type", "event", "id", "start", "end", "duration", "time", "peak_score", "labels"])
        XCTAssertEqual(object["type"] as? String, "stop")
        XCTAssertEqual(object["event"] as? String, "odd \"name\"\n/é")
        XCTAssertEqual(object["id"] as? Int, 4)
        XCTAssertEqual(object["end"] as? Double, 3.457)
        XCTAssertEqual(object["duration"] as? Double, 2.457)
        XCTAssertEqual(object["peak_score"] as? Double, 0.9)
        XCTAssertEqual(object["time"] as? String, "2023-11-14T22:13:23.457Z")
        let labels = try XCTUnwrap(object["labels"] as? [[String: Any]])
        XCTAssertEqual(labels.first?["label"] as? String, "Smoke detector, smoke alarm")
        XCTAssertTrue(line.hasPrefix(#"{"type":"stop","event":"#), line)
    }

    func testUnconfirmedStopSaysSo() {
        let line = { (e: DetectionEvent) in OutputMessage.event(EventLine(e, clock: { self.origin.addingTimeInterval($0) })).line }
        var event = DetectionEvent(kind: .stop, event: "siren", id: 7, start: 51, end: 51.25, score: 0.7,
                                   labels: [LabelScore(label: "Siren", score: 0.7)])
        XCTAssertFalse(line(event).contains("confirmed"), "confirmed stops keep today's line")
        event.confirmed = false
        XCTAssertEqual(line(event),
                       #"{"type":"stop","event":"siren","id":7,"start":51,"end":51.25,"duration":0.25,"confirmed":false,"time":"2023-11-14T22:14:11.250Z","peak_score":0.7,"labels":[{"label":"Siren","score":0.7}]}"#)
    }
}

extension EventLineTests {
    func testStatusAndStatsLinesHaveTypeFirstAndFixedFields() throws {
        let status = OutputMessage.status(StatusLine(state: .deviceUnavailable, device: "hw:1", date: origin,
                                                     error: "No such device", retryIn: 0.5)).line
        XCTAssertEqual(status, #"{"type":"status","state":"device_unavailable","device":"hw:1","time":"2023-11-14T22:13:20.000Z","error":"No such device","retry_in":0.5}"#)
        let stats = OutputMessage.stats(StatsLine(date: origin, cpuPercent: 12.3456, realTimeFactor: 0.1204, meanInferenceMs: 120.4,
                                                  windows: 60, windowsSkippedTotal: 0, overrunsTotal: 1, reconnectsTotal: 2, clients: 3)).line
        XCTAssertTrue(stats.hasPrefix(#"{"type":"stats","time":"2023-11-14T22:13:20.000Z","cpu_percent":12.346,"#), stats)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any])
        XCTAssertEqual(object["windows"] as? Int, 60)
        XCTAssertEqual(object["clients"] as? Int, 3)
    }

    /// `time` is rounded to the millisecond, not truncated (51.3 s once came out as …51.299Z).
    func testTimeIsRoundedToTheMillisecond() {
        let event = DetectionEvent(kind: .start, event: "siren", id: 1, start: 51.3, score: 0.7, labels: [])
        let line = OutputMessage.event(EventLine(event, clock: { Date(timeIntervalSince1970: 1_700_000_000 + $0) })).line
        XCTAssertTrue(line.contains("\"time\":\"2023-11-14T22:14:11.300Z\""), line)
    }
}

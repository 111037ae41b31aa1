import Detection
import XCTest

/// The timing rules, defined once and shared by the configuration and the daemon.
final class DetectionTimingTests: XCTestCase {
    func testDefaultsAndRanges() throws {
        let lags = try DetectionTiming(hopSeconds: 1).resolved(clipSeconds: 10)
        XCTAssertEqual(lags.settle, 9)
        XCTAssertEqual(lags.onsetSettle, Detector.defaultOnsetSettle)
        XCTAssertEqual(try DetectionTiming(hopSeconds: 2, settleSeconds: 1).resolved(clipSeconds: 10).onsetSettle,
                       min(Detector.defaultOnsetSettle, 1))
        func field(_ t: DetectionTiming, clip: Double = 10) -> String? {
            do { _ = try t.resolved(clipSeconds: clip); return nil } catch { return (error as? DetectionTimingError)?.field }
        }
        XCTAssertEqual(field(DetectionTiming(hopSeconds: 0)), "hop_seconds")
        XCTAssertEqual(field(DetectionTiming(hopSeconds: .nan)), "hop_seconds")
        XCTAssertEqual(field(DetectionTiming(hopSeconds: 2), clip: 1), "hop_seconds")
        XCTAssertEqual(field(DetectionTiming(settleSeconds: 10.5)), "settle_seconds")
        XCTAssertEqual(field(DetectionTiming(settleSeconds: 3, onsetSettleSeconds: 4)), "onset_settle_seconds")
        XCTAssertNil(field(DetectionTiming(hopSeconds: 10, settleSeconds: 10, onsetSettleSeconds: 10)))
        let error = try XCTUnwrap({ () -> DetectionTimingError? in
            do { _ = try DetectionTiming(hopSeconds: 11).resolved(clipSeconds: 10); return nil } catch { return error as? DetectionTimingError }
        }())
        XCTAssertEqual(error.expected, "more than 0 and at most the window length, 10 s")
    }
}

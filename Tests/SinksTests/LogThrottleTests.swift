import Synchronization
import SystemSupport
import XCTest

final class LogThrottleTests: XCTestCase {
    /// The first occurrence goes out at once; repeats within the interval are folded into the next line.
    func testFirstAtOnceThenOncePerIntervalWithTheCount() {
        let clock = Mutex<UInt64>(0)
        let throttle = LogThrottle(interval: 10, now: { clock.withLock { $0 } })
        var lines: [Int] = []
        func at(_ seconds: Double) {
            clock.withLock { $0 = UInt64(seconds * 1e9) }
            throttle.record { lines.append($0) }
        }
        at(0)                              // logged, nothing folded
        for t in stride(from: 0.5, to: 10, by: 0.5) { at(t) }   // 19 folded
        at(10)                             // logged with 19
        at(12)                             // folded
        at(25)                             // logged with 1
        XCTAssertEqual(lines, [0, 19, 1])
        XCTAssertEqual(LogThrottle.suffix(0), "")
        XCTAssertTrue(LogThrottle.suffix(3).contains("3 more"))
    }
}

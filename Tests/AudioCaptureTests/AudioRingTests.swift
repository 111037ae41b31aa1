import AudioCapture
import Foundation
import XCTest

final class AudioRingTests: XCTestCase {
    /// Values equal to their absolute index, so any read can be checked.
    private func ramp(_ range: Range<Int64>) -> [Float] { range.map { Float($0 % (1 << 24)) } }

    func testWraparoundKeepsTheNewestSamples() {
        let ring = AudioRing(capacity: 10)
        var next: Int64 = 0
        for size in [3, 4, 7, 1, 10] {  // 25 samples in uneven writes
            ring.write(ramp(next..<next + Int64(size)))
            next += Int64(size)
        }
        XCTAssertEqual(ring.totalWritten, 25)
        XCTAssertEqual(ring.oldestAvailable, 15)

        var out = [Float](repeating: -1, count: 10)
        XCTAssertTrue(ring.read(endingAt: 25, count: 10, into: &out))
        XCTAssertEqual(out, ramp(15..<25))
        XCTAssertTrue(ring.read(endingAt: 20, count: 4, into: &out))
        XCTAssertEqual(Array(out[0..<4]), ramp(16..<20))

        XCTAssertFalse(ring.read(endingAt: 24, count: 10, into: &out), "sample 14 was overwritten")
        XCTAssertFalse(ring.read(endingAt: 26, count: 2, into: &out), "sample 25 is not written yet")
        XCTAssertFalse(ring.read(endingAt: 25, count: 11, into: &out), "more than the capacity")
        XCTAssertFalse(ring.read(endingAt: 3, count: 5, into: &out), "before the first sample")
        var small = [Float](repeating: 0, count: 2)
        XCTAssertFalse(ring.read(endingAt: 25, count: 3, into: &small), "caller buffer too small")
        XCTAssertTrue(ring.read(endingAt: 25, count: 0, into: &small))
    }

    func testWriteLargerThanCapacityKeepsItsTail() {
        let ring = AudioRing(capacity: 8)
        ring.write(ramp(0..<5))
        ring.write(ramp(5..<26))  // one write of 21 > capacity
        XCTAssertEqual(ring.totalWritten, 26)
        var out = [Float](repeating: 0, count: 8)
        XCTAssertTrue(ring.read(endingAt: 26, count: 8, into: &out))
        XCTAssertEqual(out, ramp(18..<26))
        XCTAssertFalse(ring.read(endingAt: 25, count: 8, into: &out))
    }

    func testWaitTimesOutThenSeesLaterWrite() {
        let ring = AudioRing(capacity: 100)
        let start = Date()
        XCTAssertEqual(ring.waitForSamples(1, timeout: 0.2), .timedOut)
        let waited = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(waited, 0.19)
        XCTAssertLessThan(waited, 1.5)

        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { ring.write(self.ramp(0..<50)) }
        let before = Date()
        XCTAssertEqual(ring.waitForSamples(50, timeout: 5), .ready)
        XCTAssertLessThan(Date().timeIntervalSince(before), 2)
        XCTAssertEqual(ring.waitForSamples(50, timeout: 0), .ready, "already there: no wait")
    }

    func testCloseWakesWaiterPromptly() {
        let ring = AudioRing(capacity: 16)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { ring.close() }
        let start = Date()
        XCTAssertEqual(ring.waitForSamples(1, timeout: 10), .closed)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        XCTAssertTrue(ring.isClosed)
        XCTAssertEqual(ring.waitForSamples(1, timeout: 10), .closed, "stays closed")
    }

    /// A producer writes as fast as it can while a consumer reads the oldest spans, which the
    /// producer overwrites next: every read that reports success must hold exactly the values
    /// written there. (Without the ring's post-copy check this test fails.)
    func testConcurrentProducerAndConsumerNeverSeeTornData() {
        let ring = AudioRing(capacity: 4096)
        let total: Int64 = 10_000_000
        let producerDone = expectation(description: "producer")
        DispatchQueue.global().async {
            var chunk = [Float](repeating: 0, count: 800)
            var next: Int64 = 0
            var size = 1
            while next < total {
                let n = Int(min(Int64(size), total - next))
                for i in 0..<n { chunk[i] = Float((next + Int64(i)) % (1 << 24)) }
                chunk.withUnsafeBufferPointer { ring.write(UnsafeBufferPointer(rebasing: $0[0..<n])) }
                next += Int64(n)
                size = size % 700 + 37  // varying sizes, wrapping at odd offsets
            }
            producerDone.fulfill()
        }

        // Read the oldest spans, the very samples the producer overwrites next.
        var buffer = [Float](repeating: 0, count: 4096)
        var good = 0, rejected = 0, corrupt = 0
        XCTAssertEqual(ring.waitForSamples(4096, timeout: 5), .ready)
        var attempt = 0
        while ring.totalWritten < total {
            attempt += 1
            let end = ring.totalWritten
            let count = 4096 - attempt % 64
            if ring.read(endingAt: end, count: count, into: &buffer) {
                good += 1
                let start = end - Int64(count)
                for i in 0..<count where buffer[i] != Float((start + Int64(i)) % (1 << 24)) {
                    corrupt += 1
                    break
                }
            } else {
                rejected += 1
            }
        }
        wait(for: [producerDone], timeout: 30)
        XCTAssertEqual(corrupt, 0, "a read reported success but held overwritten samples")
        XCTAssertGreaterThan(good, 10, "some reads succeed (rejected \(rejected))")
        XCTAssertEqual(ring.totalWritten, total)
    }

    func testSilenceAdvancesTheClockAndZeroesAtMostOneRing() {
        let ring = AudioRing(capacity: 8)
        ring.write([1, 2, 3, 4, 5, 6, 7, 8])
        ring.writeSilence(count: 3)
        var out = [Float](repeating: -1, count: 8)
        XCTAssertTrue(ring.read(endingAt: 11, count: 8, into: &out))
        XCTAssertEqual(out, [4, 5, 6, 7, 8, 0, 0, 0])
        XCTAssertEqual(ring.silenceFilledUpTo, 11)
        ring.writeSilence(count: 1_000_000_000)  // an hour-long outage costs one ring of zeroing
        XCTAssertEqual(ring.totalWritten, 1_000_000_011)
        XCTAssertTrue(ring.read(endingAt: 1_000_000_011, count: 8, into: &out))
        XCTAssertEqual(out, [Float](repeating: 0, count: 8))
    }
}

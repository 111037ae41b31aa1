import Detection
import Foundation
import TestSupport
import XCTest

/// The enrolment math on synthetic embeddings: prototypes, leave-one-out, calibration, the report's verdicts, the
/// file's exact round trip, and name checks in the catalogue.
final class CustomEventTests: XCTestCase {
    private let d = 32
    private var rng = SplitMix(seed: 5)

    /// `direction` plus noise of size `spread`.
    private func near(_ direction: Int, _ spread: Float, count: Int) -> [[Float]] {
        (0..<count).map { _ in (0..<d).map { k in (k == direction ? 1 : 0) + spread * Float(rng.range(-1, 1)) } }
    }

    private let identity = CustomEvent.ModelIdentity(fingerprint: "fnv1a64:0123456789abcdef", features: 32, file: "m.ckpt")

    func testSeparatedExamplesCalibrateAndScore() throws {
        let positives = (0..<5).map { CustomEventEnrollment.Example(file: "p\($0).wav", views: [near(0, 0.2, count: 8), near(0, 0.2, count: 8)]) }
        let background = [CustomEventEnrollment.Example(file: "room.wav", views: [near(1, 0.3, count: 32), near(2, 0.3, count: 32)])]
        let event = CustomEventEnrollment.enroll(name: "beep", model: identity, positives: positives, background: background)
        XCTAssertEqual(event.prototypes.count, 10, "one per example and view")
        XCTAssertEqual(event.background.count, 16, "one per 4-frame segment")
        XCTAssertEqual(event.report.separation, "good", "\(event.report)")
        XCTAssertTrue(event.report.positives.allSatisfy { $0.score > 0.9 }, "\(event.report.positives)")
        XCTAssertLessThan(event.report.background99, 0.2)
        let scorer = CustomEventScorer(event)
        for v in near(0, 0.2, count: 20) { XCTAssertGreaterThan(v.withUnsafeBufferPointer { scorer.score($0.baseAddress!) }, 0.8) }
        for v in near(1, 0.3, count: 20) { XCTAssertLessThan(v.withUnsafeBufferPointer { scorer.score($0.baseAddress!) }, 0.2) }
        // Scale does not matter: scores are cosines.
        let loud = near(0, 0.2, count: 1)[0].map { $0 * 1000 }
        XCTAssertGreaterThan(loud.withUnsafeBufferPointer { scorer.score($0.baseAddress!) }, 0.8)
    }

    /// An example unlike the others scores low without its own prototypes (and is named in a warning); examples no
    /// different from the background give `none` and the plain advice.
    func testOddExampleAndInseparableExamplesAreReported() throws {
        var positives = (0..<4).map { CustomEventEnrollment.Example(file: "p\($0).wav", views: [near(0, 0.2, count: 8)]) }
        positives.append(.init(file: "odd.wav", views: [near(3, 0.2, count: 8)]))
        let background = [CustomEventEnrollment.Example(file: "room.wav", views: [near(1, 0.3, count: 32)])]
        let odd = CustomEventEnrollment.enroll(name: "beep", model: identity, positives: positives, background: background)
        XCTAssertLessThan(odd.report.positives.last!.score, 0.5, "\(odd.report.positives)")
        XCTAssertTrue(odd.report.warnings.contains { $0.contains("odd.wav scores") }, "\(odd.report.warnings)")

        let same = (0..<5).map { CustomEventEnrollment.Example(file: "p\($0).wav", views: [near(1, 0.3, count: 8)]) }
        let none = CustomEventEnrollment.enroll(name: "beep", model: identity, positives: same, background: background)
        XCTAssertNotEqual(none.report.separation, "good")
        XCTAssertTrue(none.report.warnings.contains { $0.contains("record more examples, closer, with less noise") }, "\(none.report.warnings)")
    }

    func testFileRoundTripsExactly() throws {
        let positives = (0..<3).map { CustomEventEnrollment.Example(file: "p\($0).wav", views: [near(0, 0.2, count: 6)]) }
        let event = CustomEventEnrollment.enroll(name: "beep", model: identity, positives: positives,
                                                 background: [.init(file: "", views: [near(1, 0.3, count: 8)])])
        let dir = try Fixtures.temporaryDirectory("htsatd-custom-event")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("beep.json").path
        try event.write(to: path)
        let back = try CustomEvent.load(contentsOf: path)
        XCTAssertEqual(back, event)
        XCTAssertEqual(back.prototypes.values.map(\.bitPattern), event.prototypes.values.map(\.bitPattern))
    }

    func testCatalogueGivesCustomEventsTheirRowsAndRefusesTakenNames() throws {
        let positives = (0..<3).map { CustomEventEnrollment.Example(file: "p\($0).wav", views: [near(0, 0.2, count: 6)]) }
        func event(_ name: String) -> CustomEvent {
            CustomEventEnrollment.enroll(name: name, model: identity, positives: positives, background: [.init(file: "", views: [near(1, 0.3, count: 8)])])
        }
        let catalog = try EventCatalog(labels: .audioSet, custom: [event("beep"), event("gate_buzz")])
        XCTAssertEqual(try catalog.resolve("gate_buzz").labelIndices, [528])
        XCTAssertEqual(try catalog.resolve("beep").labelNames, ["beep"])
        XCTAssertEqual(try catalog.resolve("beep").defaultThresholds, EventThresholds(on: 0.5, off: 0.3))
        XCTAssertTrue(catalog.listing().contains("Custom events"))
        for taken in ["dog_bark", "bark", "speech", "desed"] {
            XCTAssertThrowsError(try EventCatalog(labels: .audioSet, custom: [event(taken)]), taken) { error in
                guard case CustomEventError.nameCollides = error else { return XCTFail("\(taken): \(error)") }
            }
        }
        XCTAssertThrowsError(try EventCatalog(labels: .audioSet, custom: [event("beep"), event("beep")]))
        XCTAssertFalse(EventCatalog.isValidCustomName("Beep"))
        XCTAssertFalse(EventCatalog.isValidCustomName("1beep"))
        XCTAssertFalse(EventCatalog.isValidCustomName(""))
        XCTAssertTrue(EventCatalog.isValidCustomName("door_bell_2"))
    }
}

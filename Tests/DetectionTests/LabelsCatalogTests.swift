import Detection
import Foundation
import TestSupport
import XCTest

final class LabelsCatalogTests: XCTestCase {
    func testParsesQuotedNamesWithCommasQuotesAndCRLF() throws {
        let csv = "index,mid,display_name\r\n0,/m/a,\"Speech\"\r\n1,/m/b,\"Smoke detector, smoke alarm\"\r\n2,/m/c,\"Say \"\"hi\"\"\"\r\n\r\n3,/m/d,Plain\r\n"
        let labels = try AudioSetLabels(csv: csv)
        XCTAssertEqual(labels.names, ["Speech", "Smoke detector, smoke alarm", "Say \"hi\"", "Plain"])
        XCTAssertEqual(labels.mids, ["/m/a", "/m/b", "/m/c", "/m/d"])
        XCTAssertEqual(labels.index(of: "smoke DETECTOR, smoke alarm"), 1)
        XCTAssertNil(labels.index(of: "Smoke detector"))
    }

    func testRejectsBadFilesWithLineAndReason() {
        func reason(_ csv: String) -> String {
            do {
                _ = try AudioSetLabels(csv: csv, source: "t.csv")
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        XCTAssertEqual(reason(""), "labels file t.csv: the file is empty; expected the header index,mid,display_name")
        XCTAssertTrue(reason("idx,mid,name\n0,/m/a,A\n").contains("line 1: expected the header"))
        XCTAssertTrue(reason("index,mid,display_name\n").contains("no labels after the header"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,Smoke detector, smoke alarm\n")
            .contains("line 2: expected 3 fields (index,mid,display_name), found 4; quote names that contain commas"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n").contains("line 3: index 2 out of order; expected 1"))
        XCTAssertTrue(reason("index,mid,display_name\nzero,/m/a,A\n").contains("line 2: index \"zero\" is not an integer"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,\"A\n").contains("line 2: unterminated quoted field"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,\"A\"x\n").contains("line 2: text after a closing quote"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,A\"b\n").contains("line 2: stray quote"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,Dog\n1,/m/b,dog\n").contains("line 3: display_name \"dog\" repeats the one at index 0"))
        XCTAssertTrue(reason("index,mid,display_name\n0,/m/a,\n").contains("empty display_name"))
    }

    func testUnreadableFileIsAClearError() {
        XCTAssertThrowsError(try AudioSetLabels(contentsOf: URL(fileURLWithPath: "/nonexistent/labels.csv"))) { error in
            XCTAssertTrue(String(describing: error).hasPrefix("labels file /nonexistent/labels.csv: cannot read the file"), "\(error)")
        }
    }

    func testFixtureLabels() throws {
        let labels = try fixtureLabels()
        XCTAssertEqual(labels.count, 527)
        XCTAssertNoThrow(try labels.validate(classes: 527))
        XCTAssertThrowsError(try labels.validate(classes: 10))
        XCTAssertEqual(labels.names[399], "Smoke detector, smoke alarm")
        XCTAssertEqual(labels.names[325], "Fire engine, fire truck (siren)")
        XCTAssertEqual(labels.index(of: "Bark"), 75)
    }

    func testBuiltInsResolveToTheTrainedOutputs() throws {
        let catalog = try EventCatalog(labels: fixtureLabels())
        // The fixture detector was trained with these groups (detector.json).
        let trained: [String: [Int]] = ["speech": [0], "dog_bark": [74, 75], "siren": [396, 397], "smoke_alarm": [399, 388]]
        for (name, outputs) in trained {
            let definition = try catalog.resolve(name)
            XCTAssertEqual(definition.name, name)
            XCTAssertTrue(Set(outputs).isSubset(of: definition.labelIndices), "\(name): \(definition.labelIndices)")
        }
        XCTAssertEqual(try catalog.resolve("siren").labelNames,
                       ["Siren", "Civil defense siren", "Police car (siren)", "Ambulance (siren)", "Fire engine, fire truck (siren)"])
        for (name, _) in EventCatalog.builtInGroups { XCTAssertEqual(try catalog.resolve(name.uppercased()).name, name) }
    }

    func testLabelsResolveByExactNameOrSlug() throws {
        let catalog = try EventCatalog(labels: fixtureLabels())
        let byName = try catalog.resolve("smoke detector, SMOKE alarm")
        XCTAssertEqual(byName, EventDefinition(name: "smoke_detector_smoke_alarm", labelIndices: [399], labelNames: ["Smoke detector, smoke alarm"]))
        XCTAssertEqual(try catalog.resolve("smoke_detector_smoke_alarm"), byName)
        XCTAssertEqual(try catalog.resolve("police_car_siren").labelIndices, [323])
        XCTAssertEqual(try catalog.resolve("Bow-wow").name, "bow_wow")
        // A built-in group wins over the label of the same name.
        XCTAssertEqual(try catalog.resolve("Speech").labelIndices.count, 6)
        XCTAssertEqual(EventCatalog.slug("  Fire engine, fire truck (siren) "), "fire_engine_fire_truck_siren")
    }

    func testUnknownNamesSuggestTheClosest() throws {
        let catalog = try EventCatalog(labels: fixtureLabels())
        XCTAssertThrowsError(try catalog.resolve("dog_bork")) { error in
            guard case let EventCatalogError.unknownEvent(name, suggestions) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "dog_bork")
            XCTAssertEqual(suggestions.first, "dog_bark")
            XCTAssertTrue(suggestions.contains("dog"), "\(suggestions)")
            XCTAssertTrue(String(describing: error).hasPrefix("unknown event \"dog_bork\": did you mean dog_bark, "), "\(error)")
            XCTAssertTrue(String(describing: error).hasSuffix("...? Run 'htsatd events' to list them."))
        }
        XCTAssertEqual(catalog.suggestions(for: "sirene").first, "siren")
        XCTAssertEqual(catalog.suggestions(for: "smoke-alarm").first, "smoke_alarm")
        XCTAssertThrowsError(try catalog.resolve(["siren", "Siren"])) { error in
            XCTAssertEqual(error as? EventCatalogError, .duplicateEvent(name: "siren"))
        }
    }

    /// An AudioSet-sized label set (527) must carry every group member; other sets have no groups to check.
    func testMissingGroupMemberIsAnError() throws {
        let rows = (0..<527).map { $0 == 388 ? "388,/m/x,Not an alarm" : "\($0),/m/\($0),Label \($0)" }
        let csv = (["index,mid,display_name"] + rows).joined(separator: "\n")
        XCTAssertThrowsError(try EventCatalog(labels: AudioSetLabels(csv: csv))) { error in
            guard case EventCatalogError.missingGroupMember = error else { return XCTFail("\(error)") }
            XCTAssertTrue(String(describing: error).contains("needs the AudioSet label"))
        }
        let small = try EventCatalog(labels: AudioSetLabels(csv: "index,mid,display_name\n0,/m/a,Speech\n1,/m/b,Dog\n"))
        XCTAssertEqual(try small.resolve(["dog", "speech"]).map(\.labelIndices), [[1], [0]])
    }

    func testListingNamesEveryEventAndLabel() throws {
        let labels = try fixtureLabels()
        let listing = try EventCatalog(labels: labels).listing()
        XCTAssertTrue(listing.contains("  smoke_alarm  \"Smoke detector, smoke alarm\", \"Fire alarm\", \"Alarm\"\n"), listing)
        for (name, _) in EventCatalog.builtInGroups { XCTAssertTrue(listing.contains("  \(name) ")) }
        for name in labels.names { XCTAssertTrue(listing.contains(name), name) }
        XCTAssertTrue(listing.contains("smoke_detector_smoke_alarm"))
    }

    private func fixtureLabels() throws -> AudioSetLabels {
        try AudioSetLabels(contentsOf: Fixtures.require("audioset/class_labels_indices.csv"))
    }
}

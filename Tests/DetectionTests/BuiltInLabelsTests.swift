import Detection
import Foundation
import TestSupport
import XCTest

/// The label sets in the binary, the DESED event set, and catalogues over non-AudioSet labels.
final class BuiltInLabelsTests: XCTestCase {
    func testBuiltInAudioSetLabelsEqualTheCSV() throws {
        let csv = try AudioSetLabels(contentsOf: Fixtures.require("audioset/class_labels_indices.csv"))
        let builtIn = AudioSetLabels.audioSet
        XCTAssertEqual(builtIn.count, 527)
        XCTAssertEqual(builtIn.names, csv.names)
        XCTAssertEqual(builtIn.mids, csv.mids)
        XCTAssertTrue(builtIn.isAudioSet)
        XCTAssertEqual(AudioSetLabels.builtIn(classes: 527)?.names, csv.names)
    }

    func testESC50AndSpeechCommandsSets() throws {
        let esc = try XCTUnwrap(AudioSetLabels.builtIn(classes: 50))
        XCTAssertEqual(esc.count, 50)
        XCTAssertEqual(esc.source, "built-in ESC-50 labels")
        // Spot checks against meta/esc50.csv (target -> category).
        for (target, category) in [(0, "dog"), (13, "crickets"), (20, "crying_baby"), (36, "vacuum_cleaner"),
                                   (39, "glass_breaking"), (42, "siren"), (49, "hand_saw")] {
            XCTAssertEqual(esc.names[target], category)
        }
        let scv2 = try XCTUnwrap(AudioSetLabels.builtIn(classes: 35))
        XCTAssertEqual(scv2.count, 35)
        for (index, word) in [(0, "bed"), (11, "yes"), (25, "stop"), (32, "no"), (34, "backward")] {
            XCTAssertEqual(scv2.names[index], word)
        }
        XCTAssertEqual(Set(scv2.names).count, 35)
        XCTAssertFalse(esc.isAudioSet || scv2.isAudioSet)
        XCTAssertNil(AudioSetLabels.builtIn(classes: 10))
    }

    func testLabelsForAModel() throws {
        XCTAssertEqual(try AudioSetLabels.forModel(classes: 35, labelsFile: nil).names, AudioSetLabels.speechCommands.names)
        XCTAssertThrowsError(try AudioSetLabels.forModel(classes: 10, labelsFile: nil)) { error in
            XCTAssertTrue("\(error)".contains("the model has 10 outputs and no built-in label set has 10 labels"), "\(error)")
            XCTAssertTrue("\(error)".contains("--labels is required"), "\(error)")
        }
        // A labels file overrides the built-in set, and must fit the model.
        let dir = try Fixtures.temporaryDirectory("labels")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("two.csv")
        try "index,mid,display_name\n0,,knock\n1,,ring\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try AudioSetLabels.forModel(classes: 2, labelsFile: file.path).names, ["knock", "ring"])
        XCTAssertThrowsError(try AudioSetLabels.forModel(classes: 35, labelsFile: file.path)) { error in
            XCTAssertTrue("\(error)".contains("2 labels but the model has 35 outputs"), "\(error)")
        }
    }

    /// The ten DESED events resolve to exactly the rows of `fl_audioset_mapping`, with the paper's thresholds.
    func testDESEDEventsResolveToTheOfficialMapping() throws {
        let catalog = try EventCatalog(labels: AudioSetLabels(contentsOf: Fixtures.require("audioset/class_labels_indices.csv")))
        let official: [[Int]] = [
            [0, 1, 2, 3, 4, 5, 6, 7], [366, 367, 368], [364], [288, 289, 290, 291, 292, 293, 294, 295, 296, 297], [369],
            [382], [310, 388, 389, 390, 391, 392, 393, 394, 395, 396, 397, 398, 399, 400, 401, 402],
            [81, 82, 83, 84, 85], [74, 75, 76, 77, 78, 79], [377],
        ]
        let thresholds: [Float] = [0.275, 0.2, 0.2, 0.23, 0.48, 0.2, 0.18, 0.51, 0.39, 0.14]
        let events = try catalog.resolve(["desed"])
        XCTAssertEqual(events.map(\.name), ["desed_speech", "desed_frying", "desed_dishes", "desed_running_water",
                                            "desed_blender", "desed_electric_shaver_toothbrush", "desed_alarm_bell_ringing",
                                            "desed_cat", "desed_dog", "desed_vacuum_cleaner"])
        XCTAssertEqual(events.map(\.labelIndices), official)
        XCTAssertEqual(events.map { $0.defaultThresholds!.on }, thresholds)
        XCTAssertEqual(events.map { $0.defaultThresholds!.off }, thresholds.map { 0.75 * $0 })
        // Every default validates, and takes the place of the global thresholds only.
        let base = EventSettings(onThreshold: 0.5, offThreshold: 0.3, minDuration: 0.3, mergeGap: 1)
        for event in events {
            let settings = event.defaultSettings(base: base)
            XCTAssertNoThrow(try settings.validate(event: event.name))
            XCTAssertEqual(settings.minDuration, 0.3)
            XCTAssertEqual(settings.onThreshold, event.defaultThresholds!.on)
        }
        XCTAssertEqual(try catalog.resolve("desed_dog").defaultSettings(base: base).offThreshold, 0.75 * 0.39)
        XCTAssertEqual(try catalog.resolve("siren").defaultSettings(base: base), base)
        // One event by itself, and a set where one event is expected.
        XCTAssertEqual(try catalog.resolve(["siren", "desed_cat"]).map(\.name), ["siren", "desed_cat"])
        XCTAssertThrowsError(try catalog.resolve(["desed", "desed_dog"])) { error in
            XCTAssertEqual(error as? EventCatalogError, .duplicateEvent(name: "desed_dog"))
        }
        XCTAssertThrowsError(try catalog.resolve("desed")) { error in
            XCTAssertTrue("\(error)".hasPrefix("\"desed\" selects 10 events (desed_speech, "), "\(error)")
        }
        XCTAssertEqual(catalog.suggestions(for: "desd").first, "desed")
        let listing = catalog.listing()
        XCTAssertTrue(listing.contains("  desed_dog                         on 0.390 off 0.292  \"Dog\", \"Bark\", \"Yip\", \"Howl\", \"Bow-wow\", \"Growling\"\n"), listing)
        XCTAssertTrue(listing.contains("\"desed\" selects all ten"))
    }

    /// Keyword spotting over Speech Commands V2's own labels: no AudioSet group is checked or offered.
    func testCatalogueOverSpeechCommandsLabels() throws {
        let catalog = try EventCatalog(labels: .speechCommands)
        XCTAssertFalse(catalog.hasBuiltIns)
        let events = try catalog.resolve(["yes", "no", "stop"])
        XCTAssertEqual(events, [EventDefinition(name: "yes", labelIndices: [11], labelNames: ["yes"]),
                                EventDefinition(name: "no", labelIndices: [32], labelNames: ["no"]),
                                EventDefinition(name: "stop", labelIndices: [25], labelNames: ["stop"])])
        XCTAssertThrowsError(try catalog.resolve("alarm")) { error in
            guard case let EventCatalogError.unknownEvent(name, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "alarm")
        }
        XCTAssertThrowsError(try catalog.resolve(["desed"]))
        XCTAssertEqual(catalog.suggestions(for: "stp").first, "stop")
        let listing = catalog.listing()
        XCTAssertTrue(listing.hasPrefix("Events are the model's own labels (built-in Speech Commands V2 labels;"), listing)
        XCTAssertFalse(listing.contains("smoke_alarm"))
        XCTAssertTrue(listing.contains("  11  yes"), listing)

        let esc = try EventCatalog(labels: .esc50)
        XCTAssertEqual(try esc.resolve(["crying_baby", "Glass_Breaking", "dog"]).map(\.labelIndices), [[20], [39], [0]])
    }
}

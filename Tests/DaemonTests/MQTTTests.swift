import AudioCapture
import Daemon
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The MQTT output against a real mosquitto broker and a real subscriber (mosquitto_sub): file and live mode,
/// broker outages, client id collisions, the will, password and TLS, and the queue bound.
final class MQTTTests: DaemonTestCase {
    /// A config file holding only an `mqtt` object.
    private func mqttConfig(_ mqtt: [String: Any], name: String = UUID().uuidString) throws -> String {
        let url = dir.appendingPathComponent("mqtt-\(name).json")
        try JSONSerialization.data(withJSONObject: ["mqtt": mqtt]).write(to: url)
        return url.path
    }

    /// A live daemon whose ALSA device does not exist: it keeps retrying the device, so it runs (and publishes
    /// its device status) until stopped.
    private func deviceless(_ extra: [String], events: String = "siren,dog_bark") throws -> DaemonProcess {
        let conf = dir.appendingPathComponent("asound-empty.conf")
        try "</usr/share/alsa/alsa.conf>\n".write(to: conf, atomically: true, encoding: .utf8)
        return try DaemonProcess(try detectorArguments() + ["--device", "nosuchpcm", "--events", events, "--no-stdout"] + extra,
                                 in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
    }

    private func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    private func count(_ needle: String, in text: String) -> Int { lines(text).filter { $0.contains(needle) }.count }

    // MARK: - File mode

    /// One fixture stream in file mode: event payloads equal stdout's lines, each event's ON count equals its starts,
    /// discovery configs carry every field, and the retained states end OFF with the status offline.
    func testFileModeStreamPublishesEventsStatesDiscoveryAndStatus() throws {
        let broker = try Broker(in: dir)
        try broker.start()
        let sub = try Subscriber(port: broker.port, topics: ["htsatd/#", "homeassistant/#"], in: dir)
        sub.waitUntilSubscribed(port: broker.port, probeTopic: "htsatd/probe")
        let events = ["dog_bark", "siren", "speech"]
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav")
        let p = try DaemonProcess(try detectorArguments() + [
            "--input", wav.path, "--events", events.joined(separator: ","), "--threshold", "0.6", "--off-threshold", "0.4",
            "--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "File.1", "--ha-discovery",
        ], in: dir)
        XCTAssertEqual(p.wait(timeout: 120), 0, p.stderr)
        let base = "htsatd/file_1"  // the node reduced to [a-z0-9_-]
        XCTAssertTrue(eventually(timeout: 10) { sub.payloads("\(base)/status").last == "offline" }, "\(sub.messages)\n\(p.stderr)")

        let out = lines(p.stdout)
        XCTAssertGreaterThanOrEqual(out.count, 6, p.stdout)
        XCTAssertEqual(sub.payloads("\(base)/events"), out, "MQTT event payloads are exactly stdout's lines")
        let parsed = jsonLines(p.stdout)
        for event in events {
            let starts = parsed.filter { $0["type"] as? String == "start" && $0["event"] as? String == event }.count
            let states = sub.payloads("\(base)/audio/\(event)")
            XCTAssertEqual(states.filter { $0 == "ON" }.count, starts, "\(event): \(states)")
            XCTAssertEqual(states.first, "OFF", "each state starts OFF on connect")
        }
        XCTAssertEqual(sub.payloads("\(base)/status"), ["online", "offline"])
        let firstEvent = try XCTUnwrap(sub.messages.firstIndex { $0.topic == "\(base)/events" })
        let online = try XCTUnwrap(sub.messages.firstIndex { $0.topic == "\(base)/status" })
        XCTAssertLessThan(online, firstEvent)

        let retained = try Subscriber.retained(port: broker.port, topics: ["\(base)/#", "homeassistant/#"], in: dir)
        XCTAssertEqual(retained["\(base)/status"], "offline")
        XCTAssertNil(retained["\(base)/events"], "events are not retained")
        for event in events {
            XCTAssertEqual(retained["\(base)/audio/\(event)"], "OFF", event)
            let configText = try XCTUnwrap(retained["homeassistant/binary_sensor/file_1/\(event)/config"], "\(retained.keys)")
            let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(configText.utf8)) as? [String: Any])
            XCTAssertEqual(config["unique_id"] as? String, "htsatd_file_1_\(event)")
            XCTAssertEqual(config["state_topic"] as? String, "\(base)/audio/\(event)")
            XCTAssertEqual(config["payload_on"] as? String, "ON")
            XCTAssertEqual(config["payload_off"] as? String, "OFF")
            XCTAssertEqual(config["device_class"] as? String, "sound")
            XCTAssertEqual(config["availability_topic"] as? String, "\(base)/status")
            XCTAssertEqual(config["json_attributes_topic"] as? String, "\(base)/audio/\(event)/attributes")
            XCTAssertNotNil(config["name"] as? String)
            let device = try XCTUnwrap(config["device"] as? [String: Any])
            XCTAssertEqual(device["identifiers"] as? [String], ["htsatd_file_1"])
            for key in ["name", "model", "sw_version"] { XCTAssertNotNil(device[key] as? String, key) }
            XCTAssertEqual(device["sw_version"] as? String, HTSATDVersion.number, "one version everywhere")
            XCTAssertEqual((config["origin"] as? [String: Any])?["name"] as? String, "htsatd")
        }
        // The attributes of the last dog bark: its start, score and labels.
        let lastBark = try XCTUnwrap(parsed.last { $0["event"] as? String == "dog_bark" })
        let attributes = try XCTUnwrap(retained["\(base)/audio/dog_bark/attributes"])
        let attr = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(attributes.utf8)) as? [String: Any])
        XCTAssertEqual(attr["start"] as? Double, lastBark["start"] as? Double)
        XCTAssertEqual(attr["score"] as? Double, lastBark["peak_score"] as? Double)
        XCTAssertEqual((attr["labels"] as? [[String: Any]])?.count, (lastBark["labels"] as? [[String: Any]])?.count)
    }

    /// Two daemons with different nodes on one broker: each publishes its own stream, connecting once.
    func testTwoDaemonsWithDifferentNodesAreIndependent() throws {
        let broker = try Broker(in: dir)
        try broker.start()
        let sub = try Subscriber(port: broker.port, topics: ["htsatd/#"], in: dir)
        sub.waitUntilSubscribed(port: broker.port, probeTopic: "htsatd/probe")
        let runs = try [("a", "dog_siren_32k"), ("b", "alarm_speech_48k_stereo")].map { node, stream in
            (node, try DaemonProcess(try detectorArguments() + [
                "--input", try Fixtures.require("detector/streams/\(stream).wav").path,
                "--events", "dog_bark,siren,smoke_alarm,speech", "--threshold", "0.6", "--off-threshold", "0.4",
                "--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", node,
            ], in: dir))
        }
        for (node, p) in runs {
            XCTAssertEqual(p.wait(timeout: 180), 0, p.stderr)
            XCTAssertTrue(eventually(timeout: 10) { sub.payloads("htsatd/\(node)/status").last == "offline" }, p.stderr)
            XCTAssertEqual(sub.payloads("htsatd/\(node)/events"), lines(p.stdout), node)
            XCTAssertFalse(lines(p.stdout).isEmpty)
            XCTAssertEqual(sub.payloads("htsatd/\(node)/status"), ["online", "offline"], node)
            XCTAssertEqual(broker.connections(of: "htsatd-\(node)"), 1, "\(node) connected once")
            XCTAssertFalse(p.stderr.contains("MQTT broker"), p.stderr)
        }
    }

    /// Two daemons with the same node (so the same client id) take the session from each other: a clear warning,
    /// once per daemon, and reconnects that slow down instead of a storm.
    func testSameNodeWarnsOnceAndBacksOff() throws {
        let broker = try Broker(in: dir)
        try broker.start()
        let args = ["--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "twin"]
        let a = try deviceless(args)
        XCTAssertTrue(eventually(timeout: 30) { broker.connections(of: "htsatd-twin") == 1 }, a.stderr)
        let b = try deviceless(args)
        XCTAssertTrue(eventually(timeout: 30) { broker.connections(of: "htsatd-twin") >= 2 }, b.stderr)
        // A measurement window, not a synchronisation: a storm reconnects many times a second; backing off from
        // 1 s doubling gives about seven connections in 12 s.
        Thread.sleep(forTimeInterval: 12)
        let connections = broker.connections(of: "htsatd-twin")
        XCTAssertLessThanOrEqual(connections, 11, "reconnect storm: \(connections) connections in 12 s")
        let warnings = [a, b].map { count("same client id htsatd-twin", in: $0.stderr) }
        XCTAssertGreaterThanOrEqual(warnings.reduce(0, +), 1, "\(a.stderr)\n\(b.stderr)")
        XCTAssertTrue(warnings.allSatisfy { $0 <= 1 }, "one warning per daemon: \(warnings)\n\(a.stderr)")
        for p in [a, b] {
            XCTAssertTrue(p.process.isRunning)
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 15), 0, p.stderr)
        }
    }

    // MARK: - Broker down or restarted

    /// The broker is absent at start: one log line, retries, then the daemon connects and publishes its states.
    func testBrokerAbsentAtStartThenStarted() throws {
        let broker = try Broker(in: dir)
        let p = try deviceless(["--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "late", "--log-level", "debug"])
        XCTAssertTrue(eventually(timeout: 30) { p.stderr.contains("MQTT retry failed") }, "a retry after the first failure: \(p.stderr)")
        try broker.start()
        var retained: [String: String] = [:]
        XCTAssertTrue(eventually(timeout: 20) {
            retained = (try? Subscriber.retained(port: broker.port, topics: ["htsatd/late/#"], in: dir)) ?? [:]
            return retained["htsatd/late/status"] == "online" && retained["htsatd/late/device"] != nil
        }, "\(retained)\n\(p.stderr)")
        XCTAssertEqual(retained["htsatd/late/audio/siren"], "OFF")
        XCTAssertEqual(retained["htsatd/late/audio/dog_bark"], "OFF")
        XCTAssertTrue(retained["htsatd/late/device"]?.contains("\"state\":\"device_unavailable\"") ?? false, "\(retained)")
        XCTAssertEqual(count("cannot connect to broker", in: p.stderr), 1, "one line per outage: \(p.stderr)")
        XCTAssertEqual(count("MQTT connected", in: p.stderr), 1, p.stderr)
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 15), 0, p.stderr)
        XCTAssertEqual(try Subscriber.retained(port: broker.port, topics: ["htsatd/late/status"], in: dir)["htsatd/late/status"], "offline")
    }

    /// The broker restarts while a live stream runs: the states are republished to the new broker (it keeps no
    /// retained messages), and every event line reaches one of the two subscribers.
    func testBrokerRestartedMidStream() throws {
        var samples = try AudioFileReader.readAll(path: try Fixtures.require("detector/streams/dog_siren_32k.wav").path, targetRate: 32000)
        samples.removeSubrange((32 * 32000)...)
        let conf = try alsaFileDevice("testin", samples: samples)
        let broker = try Broker(in: dir)
        try broker.start()
        let base = "htsatd/restart"
        let before = try Subscriber(port: broker.port, topics: ["\(base)/#"], in: dir)
        before.waitUntilSubscribed(port: broker.port, probeTopic: "\(base)/probe")
        let p = try DaemonProcess(try detectorArguments() + [
            "--device", "testin", "--pace-realtime", "--events", "dog_bark,siren", "--threshold", "0.6",
            "--off-threshold", "0.4", "--settle", "3", "--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "restart",
        ], in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertTrue(eventually(timeout: 40) { before.payloads("\(base)/audio/dog_bark").contains("ON") }, p.stderr)

        broker.stop()
        XCTAssertTrue(eventually(timeout: 10) { p.stderr.contains("lost the connection to broker") }, p.stderr)
        let restarted = try Broker(in: dir, port: broker.port)
        try restarted.start()
        let after = try Subscriber(port: restarted.port, topics: ["\(base)/#"], in: dir)
        XCTAssertTrue(eventually(timeout: 40) { after.payloads("\(base)/audio/siren").contains("ON") }, "\(after.messages)\n\(p.stderr)")
        // Republished on connect: availability and both states (the new broker started empty).
        XCTAssertTrue(after.payloads("\(base)/status").contains("online"))
        XCTAssertFalse(after.payloads("\(base)/audio/dog_bark").isEmpty)
        XCTAssertTrue(eventually(timeout: 10) { after.payloads("\(base)/events").contains { $0.contains("\"type\":\"start\",\"event\":\"siren\"") } })
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 20), 0, p.stderr)
        XCTAssertTrue(eventually(timeout: 10) { after.payloads("\(base)/status").last == "offline" })
        let received = Set(before.payloads("\(base)/events") + after.payloads("\(base)/events"))
        let out = lines(p.stdout)
        XCTAssertGreaterThanOrEqual(out.count, 3, p.stdout)
        for line in out { XCTAssertTrue(received.contains(line), "lost across the restart: \(line)") }
        XCTAssertEqual(count("lost the connection", in: p.stderr), 1, p.stderr)
    }

    /// The will: SIGKILL of a live daemon closes its socket, so the broker publishes `offline` at once; a daemon
    /// frozen with its connection open (SIGSTOP, as a hung host or a cut network) gets it once the keepalive runs out.
    func testWillAfterSIGKILLAndKeepalive() throws {
        let broker = try Broker(in: dir)
        try broker.start()
        let killed = try deviceless(["--config", try mqttConfig(["url": "mqtt://127.0.0.1:\(broker.port)", "node": "killed", "keepalive": 5])])
        let frozen = try deviceless(["--config", try mqttConfig(["url": "mqtt://127.0.0.1:\(broker.port)", "node": "frozen", "keepalive": 5])])
        let sub = try Subscriber(port: broker.port, topics: ["htsatd/+/status"], in: dir)
        for (node, p) in [("killed", killed), ("frozen", frozen)] {
            XCTAssertTrue(eventually(timeout: 30) { sub.payloads("htsatd/\(node)/status").last == "online" }, p.stderr)
        }
        killed.signal(SIGKILL)
        frozen.signal(SIGSTOP)
        let stopped = Date()
        XCTAssertTrue(eventually(timeout: 10) { sub.payloads("htsatd/killed/status").last == "offline" }, broker.log)
        XCTAssertTrue(eventually(timeout: 15) { sub.payloads("htsatd/frozen/status").last == "offline" }, broker.log)
        // 1.5 keepalives without a ping, not at once (nothing else could have published it).
        XCTAssertGreaterThan(Date().timeIntervalSince(stopped), 5)
        frozen.signal(SIGKILL)
        let retained = try Subscriber.retained(port: broker.port, topics: ["htsatd/+/status"], in: dir)
        XCTAssertEqual(retained["htsatd/killed/status"], "offline")
        XCTAssertEqual(retained["htsatd/frozen/status"], "offline")
    }

    /// Home Assistant's birth message (`homeassistant/status` = online) republishes the discovery configs and
    /// states; the periodic stats go to `stats`, not retained.
    func testHomeAssistantBirthRepublishesDiscoveryAndStatsArePublished() throws {
        let broker = try Broker(in: dir)
        try broker.start()
        let sub = try Subscriber(port: broker.port, topics: ["htsatd/#", "homeassistant/#"], in: dir)
        sub.waitUntilSubscribed(port: broker.port, probeTopic: "htsatd/probe")
        let p = try deviceless(["--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "ha", "--ha-discovery",
                                "--stats-interval", "1"], events: "siren")
        let config = "homeassistant/binary_sensor/ha/siren/config"
        XCTAssertTrue(eventually(timeout: 30) { sub.payloads(config).count == 1 }, p.stderr)
        // Home Assistant restarted with an empty broker state: the config is gone until htsatd hears the birth.
        try runChecked("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", config, "-r", "-n"])
        try runChecked("/usr/bin/mosquitto_pub", ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "homeassistant/status", "-m", "online"])
        XCTAssertTrue(eventually(timeout: 10) { sub.payloads(config).filter { !$0.isEmpty }.count == 2 }, "\(sub.payloads(config))\n\(p.stderr)")
        XCTAssertTrue(eventually(timeout: 10) {
            (try? Subscriber.retained(port: broker.port, topics: [config], in: dir))?[config]?.contains("\"unique_id\":\"htsatd_ha_siren\"") ?? false
        })
        XCTAssertGreaterThanOrEqual(sub.payloads("htsatd/ha/audio/siren").filter { $0 == "OFF" }.count, 2, "the state is republished too")
        XCTAssertTrue(eventually(timeout: 10) { sub.payloads("htsatd/ha/stats").contains { $0.hasPrefix("{\"type\":\"stats\"") } }, p.stderr)
        XCTAssertNil(try Subscriber.retained(port: broker.port, topics: ["htsatd/ha/stats"], in: dir)["htsatd/ha/stats"], "stats are not retained")
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 15), 0, p.stderr)
    }

    // MARK: - Authentication and TLS

    /// A mosquitto password file: the right password connects; a wrong one (in the URL, which warns) gives one
    /// clear error line, then retries with backoff.
    func testPasswordFileAuthentication() throws {
        let passwords = dir.appendingPathComponent("passwords")
        try runChecked("/usr/bin/mosquitto_passwd", ["-c", "-b", passwords.path, "htsatd", "s3cret"])
        let broker = try Broker(in: dir, anonymous: false, extra: "password_file \(passwords.path)\n")
        try broker.start()
        let secret = dir.appendingPathComponent("secret")
        try "s3cret\n".write(to: secret, atomically: true, encoding: .utf8)
        let good = try deviceless(["--config", try mqttConfig(["url": "mqtt://127.0.0.1:\(broker.port)", "node": "good",
                                                              "username": "htsatd", "password_file": secret.path])])
        let bad = try deviceless(["--mqtt", "mqtt://htsatd:wrong@127.0.0.1:\(broker.port)", "--mqtt-node", "bad"])
        XCTAssertTrue(eventually(timeout: 30) { good.stderr.contains("MQTT connected") }, good.stderr)
        let retained = try Subscriber.retained(port: broker.port, topics: ["htsatd/#"], in: dir,
                                               extra: ["-u", "htsatd", "-P", "s3cret"])
        XCTAssertEqual(retained["htsatd/good/status"], "online", "\(retained)")
        // Attempts at about 0, 1 and 3 s: the third shows the retries go on.
        XCTAssertTrue(eventually(timeout: 20) { attempts(broker, "htsatd-bad") >= 3 }, broker.log)
        XCTAssertEqual(count("refused the connection", in: bad.stderr), 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("Bad user name or password") || bad.stderr.contains("Not authorized"), bad.stderr)
        XCTAssertTrue(bad.stderr.contains("password is given in the URL"), bad.stderr)
        XCTAssertLessThanOrEqual(attempts(broker, "htsatd-bad"), 6, "backoff, not a storm: \(broker.log)")
        for p in [good, bad] {
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 15), 0, p.stderr)
        }
    }

    /// Refused connection attempts in the broker log.
    private func attempts(_ broker: Broker, _ clientID: String) -> Int {
        // mosquitto logs a refused client as "<unknown>"; the good one is accepted, so refusals are the bad one's.
        broker.log.split(separator: "\n").filter { $0.contains("disconnected, not authorised") }.count
    }

    /// A TLS listener with a CA and server certificate generated by openssl: `mqtts://` with that `ca_file`
    /// connects; another CA fails with one clear error line.
    func testTLSWithTestCA() throws {
        let openssl = "/usr/bin/openssl"
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try runChecked(openssl, ["req", "-x509"] + ec + ["-keyout", path("ca.key"), "-out", path("ca.crt"), "-days", "2", "-subj", "/CN=htsatd test CA"])
        try runChecked(openssl, ["req", "-x509"] + ec + ["-keyout", path("wrong.key"), "-out", path("wrong.crt"), "-days", "2", "-subj", "/CN=another CA"])
        try runChecked(openssl, ["req"] + ec + ["-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=127.0.0.1"])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: path("ext.cnf"), atomically: true, encoding: .utf8)
        try runChecked(openssl, ["x509", "-req", "-in", path("server.csr"), "-CA", path("ca.crt"), "-CAkey", path("ca.key"),
                              "-CAcreateserial", "-out", path("server.crt"), "-days", "2", "-extfile", path("ext.cnf")])
        let tlsPort = freePort()
        let broker = try Broker(in: dir, extra: """
            listener \(tlsPort) 127.0.0.1
            cafile \(path("ca.crt"))
            certfile \(path("server.crt"))
            keyfile \(path("server.key"))

            """)
        try broker.start()
        XCTAssertTrue(eventually(timeout: 10) { canConnect(port: tlsPort) })
        let good = try deviceless(["--config", try mqttConfig(["url": "mqtts://127.0.0.1:\(tlsPort)", "node": "tls", "ca_file": path("ca.crt")])])
        let bad = try deviceless(["--config", try mqttConfig(["url": "mqtts://127.0.0.1:\(tlsPort)", "node": "wrongca", "ca_file": path("wrong.crt")])])
        XCTAssertTrue(eventually(timeout: 30) { good.stderr.contains("MQTT connected to mqtts://127.0.0.1:\(tlsPort)") }, good.stderr)
        XCTAssertTrue(eventually(timeout: 10) {
            (try? Subscriber.retained(port: broker.port, topics: ["htsatd/tls/status"], in: dir))?["htsatd/tls/status"] == "online"
        }, broker.log)
        XCTAssertTrue(eventually(timeout: 20) { bad.stderr.contains("cannot connect to broker mqtts://") }, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("certificate verify failed"), "the reason is named: \(bad.stderr)")
        XCTAssertEqual(count("cannot connect to broker", in: bad.stderr), 1, bad.stderr)
        for p in [good, bad] {
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 15), 0, p.stderr)
        }
    }

    // MARK: - Never in the way of detection

    /// The broker is paused (SIGSTOP: connections open, nothing answered) while a whole file is analysed: every
    /// event still reaches stdout, the run ends on time, and the queue's drops are counted exactly.
    func testQueueBoundWithBrokerPaused() throws {
        let broker = try Broker(in: dir)
        try broker.start()
        broker.signal(SIGSTOP)
        defer { broker.signal(SIGCONT) }
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav")
        let common = try detectorArguments() + ["--input", wav.path, "--events", "dog_bark,siren,speech",
                                                "--threshold", "0.6", "--off-threshold", "0.4"]
        let started = Date()
        let p = try DaemonProcess(common + ["--config", try mqttConfig(["url": "mqtt://127.0.0.1:\(broker.port)", "node": "paused", "queue_size": 4])], in: dir)
        XCTAssertEqual(p.wait(timeout: 120), 0, p.stderr)
        let withBroker = Date().timeIntervalSince(started)
        let baselineStart = Date()
        let baseline = try DaemonProcess(common, in: dir)
        XCTAssertEqual(baseline.wait(timeout: 120), 0, baseline.stderr)
        let without = Date().timeIntervalSince(baselineStart)

        let out = lines(p.stdout)
        XCTAssertEqual(out.map(dropTime), lines(baseline.stdout).map(dropTime), "the same events with the broker paused")
        XCTAssertGreaterThanOrEqual(out.count, 4)
        // Three messages per line (state, attributes, event); four stay queued, the rest were dropped.
        XCTAssertEqual(count("MQTT queue full", in: p.stderr), 1, "logged once per outage: \(p.stderr)")
        XCTAssertTrue(p.stderr.contains("MQTT: \(3 * out.count - 4) message(s) were dropped in total"), p.stderr)
        XCTAssertTrue(p.stderr.contains("MQTT: 4 message(s) not delivered at exit"), p.stderr)
        // Inference was not held up: the run took about as long as without MQTT (plus the bounded stop).
        XCTAssertLessThan(withBroker, without + 6, "with a paused broker \(withBroker) s, without MQTT \(without) s")
    }

    private func dropTime(_ line: String) -> String {
        line.replacingOccurrences(of: #""time":"[^"]*","#, with: "", options: .regularExpression)
    }

    // MARK: - Options

    /// Bad MQTT values fail start-up and name their key.
    func testBadValuesNameTheirKey() throws {
        func error(_ mqtt: String) -> String {
            do {
                try DaemonConfig.parse(data: Data("{\"events\": [\"siren\"], \"mqtt\": \(mqtt)}".utf8)).validate()
                return ""
            } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(error(#"{"url": "ftp://broker"}"#).contains("mqtt.url"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker:99999"}"#).contains("mqtt.url"))
        XCTAssertTrue(error(#"{"url": "mqtt://"}"#).contains("mqtt.url"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker", "qos": 3}"#).contains("mqtt.qos"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker", "keepalive": 1}"#).contains("mqtt.keepalive"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker", "prefix": "a/#"}"#).contains("mqtt.prefix"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker", "password_file": "/nonexistent"}"#).contains("mqtt.password_file"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker", "cert_file": "/etc/hostname"}"#).contains("mqtt.key_file"))
        XCTAssertTrue(error(#"{"url": "mqtt://broker", "nonsense": 1}"#).contains("nonsense"))
        XCTAssertEqual(error(#"{"url": "mqtts://user:pw@[::1]:8884", "qos": 0, "ha_discovery": true}"#), "")
        XCTAssertEqual(error(#"{"qos": 7}"#), "", "values are checked only when MQTT is on")
        // Through the command line too.
        let p = try DaemonProcess(try detectorArguments() + ["--input", "/dev/null", "--events", "siren", "--mqtt", "mqtt://h:0"], in: dir)
        XCTAssertNotEqual(p.wait(timeout: 30), 0)
        XCTAssertTrue(p.stderr.contains("mqtt.url"), p.stderr)
    }
}

import Foundation
import Logging

/// What the MQTT sink publishes where: `<prefix>/<node>/…`, and Home Assistant discovery when `discoveryPrefix` is set.
public struct MQTTSinkOptions: Sendable, Equatable {
    public var connection: MQTTConnectionOptions
    public var prefix: String
    public var node: String
    /// The selected events' names as event lines spell them (one `audio/<event>` state each).
    public var events: [String]
    /// Home Assistant's discovery prefix (`homeassistant`); nil: no discovery.
    public var discoveryPrefix: String?
    /// `sw_version` of the discovery device and origin blocks.
    public var softwareVersion: String

    /// Options for `node` under `prefix`; the connection's status topic is set to `<prefix>/<node>/status`, and its
    /// resync topic to `<discoveryPrefix>/status` when discovery is on.
    public init(connection: MQTTConnectionOptions, prefix: String, node: String, events: [String],
                discoveryPrefix: String?, softwareVersion: String) {
        (self.connection, self.prefix, self.node, self.events) = (connection, prefix, node, events)
        (self.discoveryPrefix, self.softwareVersion) = (discoveryPrefix, softwareVersion)
        self.connection.statusTopic = "\(prefix)/\(node)/status"
        self.connection.resyncTopic = discoveryPrefix.map { "\($0)/status" }
    }

    /// `<prefix>/<node>`.
    public var base: String { "\(prefix)/\(node)" }
    public func stateTopic(_ event: String) -> String { "\(base)/audio/\(event)" }
    public func attributesTopic(_ event: String) -> String { "\(base)/audio/\(event)/attributes" }
    public func discoveryTopic(_ event: String) -> String? { discoveryPrefix.map { "\($0)/binary_sensor/\(node)/\(event)/config" } }
}

/// Publishes to an MQTT broker: every event line on `events` (exactly as stdout writes it), `ON`/`OFF` per event
/// on `audio/<event>` (retained, republished on every connect), its attributes, the device status (retained), the
/// stats, availability on `status`, and optionally Home Assistant discovery. `publish` only queues.
public final class MQTTSink: Sink, @unchecked Sendable {
    public let accepts: Set<OutputMessage.Kind> = [.event, .status, .stats]
    public let options: MQTTSinkOptions
    /// The connection (for its counters).
    public let client: MQTTClient
    private let lock = NSLock()
    /// Open event ids per event name: the state is ON while any is open.
    private var open: [String: Set<Int>] = [:]

    /// Starts connecting at once; an unreachable broker is retried in the background, never an error here.
    public init(options: MQTTSinkOptions, logger: Logger) throws {
        self.options = options
        var seed: [MQTTMessage] = []
        for event in options.events {
            if let topic = options.discoveryTopic(event) {
                seed.append(MQTTMessage(topic: topic, payload: Self.discoveryConfig(event, options), retain: true))
            }
            seed.append(MQTTMessage(topic: options.stateTopic(event), payload: "OFF", retain: true))
        }
        client = try MQTTClient(options: options.connection, retained: seed, logger: logger)
        client.start()
    }

    public func publish(_ message: EncodedMessage) {
        switch message.message {
        case .event(let line):
            let e = line.event
            lock.lock()
            if e.kind == .start { open[e.event, default: []].insert(e.id) } else { open[e.event]?.remove(e.id) }
            let on = !(open[e.event]?.isEmpty ?? true)
            lock.unlock()
            let attributes = Attributes(id: e.id, start: LineEncoder.rounded(e.start), end: e.end.map(LineEncoder.rounded),
                                        time: line.time, score: LineEncoder.rounded(Double(e.score)),
                                        labels: e.labels.map { .init(label: $0.label, score: LineEncoder.rounded(Double($0.score))) })
            client.enqueue([
                MQTTMessage(topic: options.stateTopic(e.event), payload: on ? "ON" : "OFF", retain: true),
                MQTTMessage(topic: options.attributesTopic(e.event), payload: LineEncoder.encode(attributes), retain: true),
                MQTTMessage(topic: "\(options.base)/events", payload: message.line, retain: false),
            ])
        case .status:
            client.enqueue([MQTTMessage(topic: "\(options.base)/device", payload: message.line, retain: true)])
        case .stats:
            client.enqueue([MQTTMessage(topic: "\(options.base)/stats", payload: message.line, retain: false)])
        }
    }

    /// Flushes, waits a few seconds for acknowledgements, publishes `offline` and disconnects.
    public func close() { client.stop() }

    /// The `json_attributes_topic` payload: the current or last event's id, start (and end), score and labels.
    private struct Attributes: Encodable {
        struct Label: Encodable { let label: String; let score: Double }
        let id: Int
        let start: Double
        let end: Double?
        let time: String
        let score: Double
        let labels: [Label]
    }

    /// A Home Assistant MQTT discovery config, its keys spelled as Home Assistant reads them.
    private struct Discovery: Encodable {
        struct Device: Encodable { let identifiers: [String]; let name, manufacturer, model, sw_version: String }
        struct Origin: Encodable { let name, sw_version: String }
        let name, object_id, unique_id, state_topic, payload_on, payload_off, device_class: String
        let availability_topic, payload_available, payload_not_available, json_attributes_topic: String
        let device: Device
        let origin: Origin
    }

    static func discoveryConfig(_ event: String, _ o: MQTTSinkOptions) -> String {
        let words = event.replacingOccurrences(of: "_", with: " ")
        let id = "htsatd_\(o.node)_\(event)".replacingOccurrences(of: "-", with: "_")
        return LineEncoder.encode(Discovery(
            name: words.prefix(1).uppercased() + words.dropFirst(), object_id: id, unique_id: "htsatd_\(o.node)_\(event)",
            state_topic: o.stateTopic(event), payload_on: "ON", payload_off: "OFF", device_class: "sound",
            availability_topic: o.connection.statusTopic, payload_available: "online", payload_not_available: "offline",
            json_attributes_topic: o.attributesTopic(event),
            device: .init(identifiers: ["htsatd_\(o.node)"], name: "htsatd \(o.node)", manufacturer: "htsatd",
                          model: "HTS-AT sound event detector", sw_version: o.softwareVersion),
            origin: .init(name: "htsatd", sw_version: o.softwareVersion)))
    }
}

import Foundation
import Logging
import Sinks

extension DaemonConfig {
    /// Keys of `mqtt`, in documentation order.
    public static let mqttKeys = [
        "url", "node", "prefix", "client_id", "username", "password_file", "ca_file", "cert_file", "key_file",
        "qos", "keepalive", "queue_size", "ha_discovery", "discovery_prefix",
    ]
    public static let mqttQoSRange = 0...2
    public static let mqttKeepaliveRange = 5...65535
    public static let mqttQueueSizeRange = 1...1_000_000

    /// The `mqtt` object: publishing to a broker (off while `url` is nil).
    public struct MQTT: Equatable, Sendable, Decodable {
        /// `mqtt://[user[:password]@]host[:port]` or `mqtts://…`; nil: no MQTT.
        public var url: String?
        /// Topic level of this daemon (`<prefix>/<node>/…`); nil: $HTSATD_MQTT_NODE, else the host name, reduced to [a-z0-9_-].
        public var node: String?
        public var prefix = "htsatd"
        /// nil: `htsatd-<node>`.
        public var clientID: String?
        public var username: String?, passwordFile: String?
        /// TLS: CA bundle (nil: the system store), client certificate and key.
        public var caFile: String?, certFile: String?, keyFile: String?
        public var qos = 1, keepalive = 30, queueSize = 1000
        /// Home Assistant discovery, and its topic prefix.
        public var haDiscovery = false, discoveryPrefix = "homeassistant"

        public init() {}

        /// Decodes the `mqtt` object.
        public init(from decoder: Decoder) throws {
            let o = try ConfigValue(decoder).object(allowed: DaemonConfig.mqttKeys)
            url = try o["url"].nullable { try $0.string() } ?? url
            node = try o["node"].nullable { try $0.string() } ?? node
            prefix = try o["prefix"]?.string() ?? prefix
            clientID = try o["client_id"].nullable { try $0.string() } ?? clientID
            username = try o["username"].nullable { try $0.string() } ?? username
            passwordFile = try o["password_file"].nullable { try $0.path() } ?? passwordFile
            caFile = try o["ca_file"].nullable { try $0.path() } ?? caFile
            certFile = try o["cert_file"].nullable { try $0.path() } ?? certFile
            keyFile = try o["key_file"].nullable { try $0.path() } ?? keyFile
            qos = try o["qos"]?.integer() ?? qos
            keepalive = try o["keepalive"]?.integer() ?? keepalive
            queueSize = try o["queue_size"]?.integer() ?? queueSize
            haDiscovery = try o["ha_discovery"]?.bool() ?? haDiscovery
            discoveryPrefix = try o["discovery_prefix"]?.string() ?? discoveryPrefix
        }

        mutating func resolvePaths(_ resolve: (String) -> String) {
            passwordFile = passwordFile.map(resolve)
            caFile = caFile.map(resolve)
            certFile = certFile.map(resolve)
            keyFile = keyFile.map(resolve)
        }

        /// Checks every value (only when `url` is set: MQTT is off otherwise); errors name the key.
        func check() throws {
            guard let url else { return }
            _ = try MQTTURL(url)
            func require(_ ok: Bool, _ key: String, _ message: String) throws {
                if !ok { throw ConfigError(key: "mqtt.\(key)", message: message) }
            }
            if let node { try require(!MQTTURL.reduceNode(node).isEmpty, "node", "\(quote(node)) has no letter or digit; expected a name such as \"kitchen\"") }
            for (key, value) in [("prefix", prefix), ("discovery_prefix", discoveryPrefix)] {
                try require(!value.isEmpty && !value.contains(where: { "+#".contains($0) }) && !value.hasPrefix("/") && !value.hasSuffix("/"),
                            key, "\(quote(value)) is not allowed; expected a topic prefix such as \"htsatd\" (no + or #, no leading or trailing /)")
            }
            if let clientID { try require(!clientID.isEmpty, "client_id", "must not be empty; omit it for htsatd-<node>") }
            try require(DaemonConfig.mqttQoSRange.contains(qos), "qos", "\(qos) is not allowed; expected 0, 1 or 2")
            let k = DaemonConfig.mqttKeepaliveRange, q = DaemonConfig.mqttQueueSizeRange
            try require(k.contains(keepalive), "keepalive", "\(keepalive) is not allowed; expected \(k.lowerBound) to \(k.upperBound) seconds")
            try require(q.contains(queueSize), "queue_size", "\(queueSize) is not allowed; expected \(q.lowerBound) to \(q.upperBound) messages")
            try require((certFile == nil) == (keyFile == nil), certFile == nil ? "cert_file" : "key_file",
                        "cert_file and key_file go together: give both for a client certificate, or neither")
            for (key, path) in [("password_file", passwordFile), ("ca_file", caFile), ("cert_file", certFile), ("key_file", keyFile)] {
                guard let path else { continue }
                try require(FileManager.default.isReadableFile(atPath: path), key, "\(quote(path)) does not exist or is not readable by the daemon")
            }
        }

        /// The sink's options for these `events`: reads the password file, picks the node, warns about a password
        /// in the URL. Nil when MQTT is off.
        func sinkOptions(events: [String], logger: Logger) throws -> MQTTSinkOptions? {
            guard let url else { return nil }
            let parsed = try MQTTURL(url)
            let node = MQTTURL.reduceNode(self.node ?? ProcessInfo.processInfo.environment["HTSATD_MQTT_NODE"] ?? hostName())
            guard !node.isEmpty else { throw ConfigError(key: "mqtt.node", message: "the host name gives no node name; set mqtt.node or --mqtt-node") }
            var c = MQTTConnectionOptions(host: parsed.host, port: parsed.port, clientID: clientID ?? "htsatd-\(node)", statusTopic: "")
            c.tls = parsed.tls
            (c.caFile, c.certFile, c.keyFile) = (caFile, certFile, keyFile)
            c.username = username ?? parsed.username
            c.password = parsed.password
            if parsed.password != nil {
                logger.warning("the MQTT password is given in the URL, where ps and the journal can show it; put it in a file and set mqtt.password_file instead")
            }
            if let passwordFile {
                do {
                    let text = try String(contentsOfFile: passwordFile, encoding: .utf8)
                    c.password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
                } catch {
                    throw ConfigError(key: "mqtt.password_file", message: "cannot read \(quote(passwordFile)): \((error as NSError).localizedDescription)")
                }
            }
            (c.qos, c.keepalive, c.queueLimit) = (qos, keepalive, queueSize)
            return MQTTSinkOptions(connection: c, prefix: prefix, node: node, events: events,
                                   discoveryPrefix: haDiscovery ? discoveryPrefix : nil, softwareVersion: HTSATDVersion.number)
        }
    }
}

/// gethostname(2): the short host name systemd's %H also gives (Foundation's hostName may be a resolved FQDN).
private func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    return gethostname(&buffer, buffer.count) == 0 ? String(cString: buffer) : "localhost"
}

/// A broker URL: `mqtt://[user[:password]@]host[:port]` (1883) or `mqtts://…` (8883); user and password may be
/// percent-encoded; IPv6 hosts in brackets.
struct MQTTURL: Equatable {
    var tls: Bool, host: String, port: Int, username: String?, password: String?

    init(_ text: String) throws {
        func bad(_ why: String) -> ConfigError {
            ConfigError(key: "mqtt.url", message: "\(quote(text)): \(why); expected mqtt://[user[:password]@]host[:port] or mqtts://…")
        }
        if text.hasPrefix("mqtt://") { tls = false } else if text.hasPrefix("mqtts://") { tls = true } else { throw bad("unknown scheme") }
        var rest = Substring(text.drop(while: { $0 != "/" }).dropFirst(2))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/") else { throw bad("a broker URL has no path") }
        if let at = rest.lastIndex(of: "@") {
            let info = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let parts = info.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            username = String(parts[0]).removingPercentEncoding
            password = parts.count > 1 ? String(parts[1]).removingPercentEncoding : nil
            guard username != nil, parts.count == 1 || password != nil else { throw bad("invalid percent-encoding in the user or password") }
        }
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw bad("unterminated [IPv6] host") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw bad("unexpected text after the host") }
                portText = after.dropFirst()
            }
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw bad("IPv6 addresses go in brackets, e.g. mqtt://[::1]:1883") }
            host = String(parts[0])
            portText = parts.count == 2 ? parts[1] : nil
        }
        guard !host.isEmpty else { throw bad("no host") }
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw bad("port \(quote(String(portText))) is not 1 to 65535") }
            port = p
        } else {
            port = tls ? 8883 : 1883
        }
    }

    /// A node name as topics and Home Assistant ids take it: lowercase, anything but [a-z0-9_-] becomes `_`.
    static func reduceNode(_ name: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_-")
        let reduced = String(name.lowercased().map { allowed.contains($0) ? $0 : "_" })
        return reduced.contains(where: { $0.isLetter || $0.isNumber }) ? reduced : ""
    }
}

import CMosquitto
import Dispatch
import Foundation
import Glibc
import Logging
import SystemSupport

/// One MQTT publication.
public struct MQTTMessage: Sendable, Equatable {
    public var topic: String
    public var payload: String
    public var retain: Bool

    public init(topic: String, payload: String, retain: Bool) {
        (self.topic, self.payload, self.retain) = (topic, payload, retain)
    }
}

/// Counters of an `MQTTClient`.
public struct MQTTStats: Sendable, Equatable {
    /// Messages the broker acknowledged (at QoS 0: sent), the availability and retained-state messages included.
    public var published = 0
    /// Messages dropped from the full queue.
    public var dropped = 0
    /// Messages waiting to be handed to the broker.
    public var queued = 0
    /// Whether a CONNACK-accepted connection is up, and how many there have been (after the first: reconnects).
    public var connected = false
    public var connections = 0
}

/// Where and how an `MQTTClient` connects.
public struct MQTTConnectionOptions: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// TLS, checked against `caFile` or else the system CA store; `certFile`/`keyFile` for a client certificate.
    public var tls = false
    public var caFile: String?, certFile: String?, keyFile: String?
    public var username: String?, password: String?
    public var clientID: String
    /// Seconds between keep-alive pings; the broker publishes the will after 1.5 times this without traffic.
    public var keepalive = 30
    /// QoS of queued messages (events, stats, states); the availability topic always uses QoS 1.
    public var qos = 1
    /// Messages waiting for the broker; when full the oldest are dropped.
    public var queueLimit = 1000
    /// Availability: `offline` is the will and is published on a clean stop, `online` on every connect (retained).
    public var statusTopic: String
    /// When a message with payload "online" arrives here, the retained state is republished (Home Assistant's
    /// birth message, `homeassistant/status`).
    public var resyncTopic: String?

    public init(host: String, port: Int, clientID: String, statusTopic: String) {
        (self.host, self.port, self.clientID, self.statusTopic) = (host, port, clientID, statusTopic)
    }

    /// `mqtt://host:port` or `mqtts://host:port`, for log lines (never the password).
    public var address: String { "\(tls ? "mqtts" : "mqtt")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// A supervised MQTT 5 connection over libmosquitto, on a thread of its own: publishing never blocks the caller.
///
/// libmosquitto 2.0.11 (Debian 12) does not reconnect if the broker was down at the first connect (#1903), hangs in
/// `loop_stop` while its thread is stuck in connect() (#2331), and does not call `on_connect` again when an instance
/// is reused (#2974). So this client never uses `loop_start` or `reconnect`: its own thread connects with
/// `mosquitto_connect`, drives the socket with `mosquitto_loop`, and destroys the instance after every lost
/// connection, or when no CONNACK came within a bound, creating a fresh one after a backoff of 1 s doubling to 60 s.
///
/// Messages wait in a bounded queue (oldest dropped when full) and are handed to libmosquitto only while connected
/// and fewer than a few dozen are unacknowledged, so a broker that stops reading cannot grow memory. Unacknowledged
/// messages of a lost connection are queued again (at least once). Retained messages also update the retained
/// state, which is republished after every connect (and on `resyncTopic` = online), so states dropped from the queue
/// are corrected. Each outage is logged once, not each retry.
public final class MQTTClient: @unchecked Sendable {
    public let options: MQTTConnectionOptions
    private let logger: Logger
    private let wake: WakePipe
    private let finished = DispatchSemaphore(value: 0)
    private var thread: Thread?

    // Shared with publishers, under `lock`.
    private let lock = NSLock()
    private var queue: [(seq: UInt64, message: MQTTMessage)] = []
    private var nextSeq: UInt64 = 0
    private var retained: [String: String] = [:], retainedOrder: [String] = []
    private var stopRequested = false
    private var published = 0, dropped = 0, droppedInOutage = 0, dropLogged = false
    private var connectedNow = false, connections = 0

    /// Upper bounds: unacknowledged messages at once, the wait for a CONNACK, and the clean stop's wait for acks.
    static let maxInflight = 32
    var connackTimeout = 10.0
    static let backoffRange = 1.0...60.0
    /// A connection that lasts less than this after its CONNACK counts as flapping (a client id collision).
    static let stableSeconds = 10.0
    /// The clean stop's budget: acknowledgements for `ackWait`, `offline` by `offlineWait`, all within the
    /// service group's 5-s stop bound.
    static let ackWait = 2.5, offlineWait = 3.5

    /// `retained` seeds the retained state (republished on every connect, in this order).
    public init(options: MQTTConnectionOptions, retained: [MQTTMessage], logger: Logger) throws {
        self.options = options
        self.logger = logger
        wake = try WakePipe()
        for m in retained { setRetained(m) }
        _ = Self.libraryInitialised
    }

    private static let libraryInitialised: Bool = { mosquitto_lib_init() == MOSQ_ERR_SUCCESS.rawValue }()

    /// Starts the connection thread.
    public func start() {
        thread = startThread(named: "htsatd-mqtt", signalling: finished) { [self] in run() }
    }

    /// Queues `messages` for the broker and returns at once. Drops the oldest queued messages beyond the limit.
    public func enqueue(_ messages: [MQTTMessage]) {
        lock.lock()
        guard !stopRequested else { lock.unlock(); return }
        for m in messages {
            queue.append((nextSeq, m))
            nextSeq += 1
        }
        var logDrop = false
        let excess = queue.count - options.queueLimit
        if excess > 0 {
            for (_, m) in queue.prefix(excess) where m.retain { setRetained(m) }
            queue.removeFirst(excess)
            dropped += excess
            droppedInOutage += excess
            logDrop = !dropLogged
            dropLogged = true
        }
        lock.unlock()
        if logDrop {
            logger.warning("MQTT queue full (\(options.queueLimit) messages, broker \(options.address) not taking them): dropping the oldest until it does; retained states are corrected on reconnect")
        }
        wake.wake()
    }

    /// A snapshot of the counters.
    public var stats: MQTTStats {
        lock.lock(); defer { lock.unlock() }
        return MQTTStats(published: published, dropped: dropped, queued: queue.count, connected: connectedNow, connections: connections)
    }

    /// Flushes the queue, waits up to a few seconds for acknowledgements, publishes `offline`, disconnects. Returns
    /// within `offlineWait` + 0.5 s even if the thread is stuck in connect().
    public func stop() {
        lock.lock()
        let first = !stopRequested
        stopRequested = true
        lock.unlock()
        guard first, thread != nil else { return }
        wake.wake()
        if finished.wait(timeout: .now() + Self.offlineWait + 0.5) == .timedOut {
            logger.warning("MQTT client did not stop in time (stuck connecting to \(options.address)); exiting without a clean disconnect")
        }
        lock.lock()
        let left = queue.count, lost = dropped
        lock.unlock()
        if left > 0 { logger.warning("MQTT: \(left) message(s) not delivered at exit (broker \(options.address) unreachable)") }
        if lost > 0 { logger.warning("MQTT: \(lost) message(s) were dropped in total because the broker was unreachable or too slow") }
    }

    // MARK: - The connection thread

    private var stopping: Bool { lock.lock(); defer { lock.unlock() }; return stopRequested }

    /// Must hold `lock` (or be called before start).
    private func setRetained(_ m: MQTTMessage) {
        if retained.updateValue(m.payload, forKey: m.topic) == nil { retainedOrder.append(m.topic) }
    }

    /// What ended a connection attempt.
    private struct Failure { var message: String; var takenOver = false; var afterConnack = false; var lasted = 0.0 }

    // The connection thread's own state.
    private var backoff = MQTTClient.backoffRange.lowerBound
    /// This outage has been logged; later retries are quiet until a connection holds.
    private var quiet = false
    /// Recent connections ended soon after their CONNACK, so a new one is not announced until it holds.
    private var flapping = false
    /// Consecutive connections that ended soon after their CONNACK.
    private var shortSessions = 0
    /// Another client with our id keeps taking the session over: stays set until a connection outlasts both backoffs.
    private var takeoverStreak = false
    private var lastTakeoverWarning: Date?

    private func run() {
        while !stopping {
            let failure = session()
            guard let failure, !stopping else { break }
            // A connection that held resets the backoff; one dropped soon after its CONNACK does not. Two clients with
            // one client id take the session from each other in turns (mosquitto 2.0 just closes the old connection;
            // other brokers send reason 142), so repeated short sessions mean a collision, and both slow down.
            if failure.afterConnack {
                if failure.takenOver || failure.lasted < Self.stableSeconds {
                    shortSessions += 1
                    flapping = true
                } else {
                    shortSessions = 0
                    if !takeoverStreak { backoff = Self.backoffRange.lowerBound }
                }
            }
            let collision = failure.takenOver || shortSessions >= 2
            if collision {
                takeoverStreak = true
                if lastTakeoverWarning.map({ Date().timeIntervalSince($0) > 3600 }) ?? true {
                    let what = failure.takenOver
                        ? "dropped this connection because another client connected with the same client id \(options.clientID)"
                        : "keeps closing this connection right after accepting it (\(shortSessions) times): most likely another client uses the same client id \(options.clientID)"
                    logger.warning("MQTT broker \(options.address) \(what). Is a second htsatd running with the same node? Give each its own --mqtt-node (or mqtt.client_id). Retrying with backoff up to \(Int(Self.backoffRange.upperBound)) s")
                    lastTakeoverWarning = Date()
                } else {
                    logger.debug("MQTT session lost again right after connecting (client id \(options.clientID))")
                }
                quiet = true
            } else if !quiet {
                let what = failure.afterConnack ? "lost the connection to" : "cannot connect to"
                logger.error("MQTT: \(what) broker \(options.address): \(failure.message); retrying with backoff (\(Int(Self.backoffRange.lowerBound)) s to \(Int(Self.backoffRange.upperBound)) s), events wait in a queue of \(options.queueLimit)")
                quiet = true
            } else {
                logger.debug("MQTT retry failed: \(failure.message)", metadata: ["retry_in": "\(backoff)"])
            }
            let delay = backoff
            backoff = min(backoff * 2, Self.backoffRange.upperBound)
            // Sleeps until the retry, or until stop() wakes it.
            let deadline = Date().addingTimeInterval(delay)
            while !stopping, Date() < deadline {
                _ = wake.wait(milliseconds: Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
                wake.drain()
            }
        }
    }

    /// Callback state of one libmosquitto instance (its callbacks run on this thread, inside libmosquitto calls).
    private final class Callbacks {
        var connack: Int32?
        var disconnect: Int32?
        var acked: [Int32] = []
        var lastError: String?
        var incoming: [(topic: String, payload: String)] = []
    }

    /// One instance from creation to destruction: connect, run until the connection ends or stop is requested.
    /// Returns nil after a clean stop.
    private func session() -> Failure? {
        let cb = Callbacks()
        guard let m = mosquitto_new(options.clientID, true, Unmanaged.passUnretained(cb).toOpaque()) else {
            return Failure(message: "cannot create a libmosquitto client: \(Errno.current)")
        }
        var inflight: [Int32: (seq: UInt64, message: MQTTMessage)?] = [:]
        defer {
            mosquitto_destroy(m)
            lock.lock()
            connectedNow = false
            // Unacknowledged queue messages go back to the front, in order: delivered at least once.
            let back = inflight.values.compactMap { $0 }.sorted { $0.seq < $1.seq }
            queue.insert(contentsOf: back, at: 0)
            lock.unlock()
        }
        if let error = configure(m) { return Failure(message: error) }

        let rc = mosquitto_connect(m, options.host, Int32(options.port), Int32(options.keepalive))
        if rc != MOSQ_ERR_SUCCESS.rawValue { return Failure(message: describe(rc, cb)) }
        let connectStarted = Date()
        var connectedAt: Date?
        var resync = false

        func publish(_ msg: MQTTMessage, qos: Int, seq: UInt64?) -> Bool {
            var mid: Int32 = 0
            let bytes = Array(msg.payload.utf8)
            let rc = mosquitto_publish(m, &mid, msg.topic, Int32(bytes.count), bytes, Int32(qos), msg.retain)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { return false }
            inflight[mid] = seq.map { ($0, msg) }
            return true
        }
        func publishRetainedState() -> Bool {
            lock.lock()
            let state = retainedOrder.map { MQTTMessage(topic: $0, payload: retained[$0]!, retain: true) }
            lock.unlock()
            return state.allSatisfy { publish($0, qos: options.qos, seq: nil) }
        }
        /// Counts the acknowledgements (of queued, availability and retained-state messages alike) and forgets them.
        func settle() {
            guard !cb.acked.isEmpty else { return }
            lock.lock()
            published += cb.acked.count
            for mid in cb.acked {
                guard let removed = inflight.removeValue(forKey: mid), let item = removed, item.message.retain else { continue }
                setRetained(item.message)
            }
            lock.unlock()
            cb.acked.removeAll()
        }
        /// Hands queued messages over while few are unacknowledged; false if libmosquitto refused (connection gone).
        func handOver() -> Bool {
            while inflight.count < Self.maxInflight {
                lock.lock()
                guard !queue.isEmpty else { lock.unlock(); return true }
                let next = queue.removeFirst()
                lock.unlock()
                if !publish(next.message, qos: options.qos, seq: next.seq) {
                    lock.lock(); queue.insert(next, at: 0); lock.unlock()
                    return false
                }
            }
            return true
        }
        func ended() -> Failure? {
            if let reason = cb.disconnect {
                let lasted = connectedAt.map { Date().timeIntervalSince($0) } ?? 0
                return Failure(message: describe(reason, cb), takenOver: reason == Int32(MQTT_RC_SESSION_TAKEN_OVER.rawValue),
                               afterConnack: connectedAt != nil, lasted: lasted)
            }
            return nil
        }

        /// The clean stop of a connected session: flush, wait for acks, `offline`, disconnect (within `offlineWait`).
        func finish() {
            let begun = Date(), deadline = begun.addingTimeInterval(Self.ackWait)
            func idle() -> Bool { lock.lock(); defer { lock.unlock() }; return queue.isEmpty && inflight.isEmpty }
            while Date() < deadline, !idle() {
                guard handOver(), step(m, timeoutMs: 50) == MOSQ_ERR_SUCCESS.rawValue, cb.disconnect == nil else { return }
                settle()
            }
            var mid: Int32 = 0
            let offline = Array("offline".utf8)
            guard mosquitto_publish(m, &mid, options.statusTopic, Int32(offline.count), offline, 1, true) == MOSQ_ERR_SUCCESS.rawValue else { return }
            let offlineDeadline = begun.addingTimeInterval(Self.offlineWait)
            while Date() < offlineDeadline, !cb.acked.contains(mid) {
                guard step(m, timeoutMs: 50) == MOSQ_ERR_SUCCESS.rawValue, cb.disconnect == nil else { return }
            }
            settle()
            _ = mosquitto_disconnect(m)
            _ = mosquitto_loop(m, 0, 1)
        }

        while true {
            if stopping {
                if connectedAt != nil { finish() }
                return nil
            }
            let rc = step(m)
            settle()
            if connectedAt == nil, let code = cb.connack {
                guard code == 0 else {
                    return Failure(message: "the broker refused the connection: \(String(cString: mosquitto_reason_string(code))) (reason code \(code))")
                }
                connectedAt = Date()
                lock.lock()
                connectedNow = true
                connections += 1
                let lost = droppedInOutage
                droppedInOutage = 0
                dropLogged = false
                lock.unlock()
                if !flapping, quiet || connections == 1 {
                    logger.info("MQTT connected to \(options.address) as \(options.clientID)")
                    quiet = false
                }
                if lost > 0 { logger.warning("MQTT: \(lost) message(s) were dropped while the broker was unreachable") }
                if let topic = options.resyncTopic { _ = mosquitto_subscribe(m, nil, topic, 1) }
                _ = publish(MQTTMessage(topic: options.statusTopic, payload: "online", retain: true), qos: 1, seq: nil)
                    && publishRetainedState()
            }
            if let failure = ended() { return failure }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                return Failure(message: describe(rc, cb), afterConnack: connectedAt != nil,
                               lasted: connectedAt.map { Date().timeIntervalSince($0) } ?? 0)
            }
            guard let since = connectedAt else {
                if Date().timeIntervalSince(connectStarted) > connackTimeout {
                    return Failure(message: "no CONNACK within \(Int(connackTimeout)) s (is the broker stalled?)")
                }
                continue
            }
            let up = Date().timeIntervalSince(since)
            if takeoverStreak, up >= 2 * Self.backoffRange.upperBound + Self.stableSeconds { takeoverStreak = false }
            if flapping, !takeoverStreak, up >= Self.stableSeconds {
                flapping = false
                if quiet { logger.info("MQTT connection to \(options.address) as \(options.clientID) holds again") }
                quiet = false
            }
            for (topic, payload) in cb.incoming where topic == options.resyncTopic && payload == "online" { resync = true }
            cb.incoming.removeAll()
            if resync {
                resync = false
                logger.info("Home Assistant came online: republishing discovery and states")
                _ = publishRetainedState()
            }
            _ = handOver()
        }
    }

    /// Waits for the socket or a wake-up (at most `timeoutMs`), then lets libmosquitto read, write and keep alive.
    private func step(_ m: OpaquePointer, timeoutMs: Int32 = 1000) -> Int32 {
        let sock = mosquitto_socket(m)
        var fds = [pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0)]
        if sock >= 0 {
            let events = Int16(POLLIN) | (mosquitto_want_write(m) ? Int16(POLLOUT) : 0)
            fds.append(pollfd(fd: sock, events: events, revents: 0))
        }
        // TLS may hold decrypted bytes that poll cannot see: wake up often enough to let libmosquitto read them.
        let timeout = options.tls ? min(timeoutMs, 100) : timeoutMs
        _ = posixCall { poll(&fds, nfds_t(fds.count), timeout) }
        if fds[0].revents != 0 { wake.drain() }
        return mosquitto_loop(m, 0, 1)
    }

    /// Sets protocol, will, credentials, TLS and callbacks; an error message if libmosquitto rejects one.
    private func configure(_ m: OpaquePointer) -> String? {
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5)
        let offline = Array("offline".utf8)
        var rc = mosquitto_will_set(m, options.statusTopic, Int32(offline.count), offline, 1, true)
        if rc != MOSQ_ERR_SUCCESS.rawValue { return "invalid status topic \(options.statusTopic): \(String(cString: mosquitto_strerror(rc)))" }
        if options.username != nil || options.password != nil {
            rc = mosquitto_username_pw_set(m, options.username, options.password)
            if rc != MOSQ_ERR_SUCCESS.rawValue { return "cannot set the user name: \(String(cString: mosquitto_strerror(rc)))" }
        }
        if options.tls {
            if let ca = options.caFile {
                rc = mosquitto_tls_set(m, ca, nil, options.certFile, options.keyFile, nil)
            } else {
                rc = mosquitto_int_option(m, MOSQ_OPT_TLS_USE_OS_CERTS, 1)
                if rc == MOSQ_ERR_SUCCESS.rawValue, options.certFile != nil {
                    rc = mosquitto_tls_set(m, nil, "/etc/ssl/certs", options.certFile, options.keyFile, nil)
                }
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue { return "TLS setup failed (ca_file, cert_file, key_file): \(String(cString: mosquitto_strerror(rc)))" }
        }
        mosquitto_connect_callback_set(m) { _, obj, rc in MQTTClient.callbacks(obj).connack = rc }
        // The first report counts: the broker's reason (e.g. 142, session taken over) comes before "connection lost".
        mosquitto_disconnect_callback_set(m) { _, obj, rc in
            let cb = MQTTClient.callbacks(obj)
            if cb.disconnect == nil { cb.disconnect = rc }
        }
        mosquitto_publish_callback_set(m) { _, obj, mid in MQTTClient.callbacks(obj).acked.append(mid) }
        mosquitto_message_callback_set(m) { _, obj, message in
            guard let message = message?.pointee, let topic = message.topic else { return }
            let payload = message.payload.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: Int(message.payloadlen)), as: UTF8.self) } ?? ""
            MQTTClient.callbacks(obj).incoming.append((String(cString: topic), payload))
        }
        mosquitto_log_callback_set(m) { _, obj, level, text in
            guard level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING) != 0, let text else { return }
            MQTTClient.callbacks(obj).lastError = String(cString: text)
        }
        return nil
    }

    private static func callbacks(_ obj: UnsafeMutableRawPointer?) -> Callbacks {
        Unmanaged<Callbacks>.fromOpaque(obj!).takeUnretainedValue()
    }

    /// A libmosquitto error or MQTT reason code in words, with libmosquitto's own last error line (OpenSSL's reason).
    private func describe(_ rc: Int32, _ cb: Callbacks) -> String {
        var text: String
        if rc == MOSQ_ERR_ERRNO.rawValue {
            text = "\(Errno.current)"
        } else if rc >= 128 {
            text = "\(String(cString: mosquitto_reason_string(rc))) (reason code \(rc))"
        } else {
            text = String(cString: mosquitto_strerror(rc))
        }
        if text.hasSuffix(".") { text.removeLast() }
        if let detail = cb.lastError, !detail.isEmpty { text += " (\(detail))" }
        cb.lastError = nil
        return text
    }
}

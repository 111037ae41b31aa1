import Foundation
import Glibc
import Logging
import SystemSupport

/// Serves event lines to any number of clients on a Unix stream socket.
///
/// A new client first receives the replay state: the latest status line, then the start lines of the events still
/// open (in the order they opened); then every later line. One thread runs a poll(2) loop and does all socket I/O; `publish`
/// only appends to per-client backlogs under a lock and wakes that thread through a pipe, so it
/// never blocks on the network. A client whose backlog exceeds `maxClientBacklog` bytes (it stopped
/// reading) is dropped. Data sent by clients is read and ignored; a client may shut down its
/// write side and keep reading. `close()` must be called: it sends what is queued to the clients still reading (for
/// `closeDrainSeconds` at most), stops the thread and removes the socket file.
public final class UnixSocketSink: Sink, @unchecked Sendable {
    /// Events and device status.
    public let accepts: Set<OutputMessage.Kind> = [.event, .status]
    /// The socket file path.
    public let path: String
    /// Bytes a client may fall behind before it is dropped.
    public let maxClientBacklog: Int
    /// Seconds `close()` keeps writing the last lines to clients that are still reading.
    public let closeDrainSeconds: Double
    /// Cap on remembered open events; past it the oldest is forgotten (only a runaway producer gets there).
    public static let maxOpenEvents = 4096

    /// One connected client; touched only under `lock` (its fd is closed only by the poll thread).
    private final class Client {
        let fd: Int32
        let pid: Int32
        /// Bytes queued for the client; `pending[sent...]` is still to be written.
        var pending: [UInt8] = []
        var sent = 0
        /// Set once the client sent EOF (shut down its write side); it is then not polled for input.
        var readClosed = false
        /// Set when the client must go; the poll thread closes it and logs the reason.
        var dropReason: String?
        var dropIsTrouble = false

        var backlog: Int { pending.count - sent }

        init(fd: Int32, pid: Int32) {
            self.fd = fd
            self.pid = pid
        }
    }

    private let logger: Logger
    private let lock = NSLock()
    private let listenFD: Int32
    private let wake: WakePipe
    private let socketDevice: UInt64
    private let socketInode: UInt64
    private var clients: [Client] = []
    /// Replay state for clients that connect later.
    private var latestStatus: String?
    private var openEvents: [(id: Int, line: String)] = []
    private var warnedOpenEventOverflow = false
    private let dropWarnings = LogThrottle()
    private var wakePending = false
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    /// Serves `path` with file `mode`; `group` (a group id) becomes the socket file's group, so its members may
    /// connect under a mode like 0660 (a systemd DynamicUser's own group has no members).
    public init(path: String, mode: mode_t = 0o660, group: gid_t? = nil, maxClientBacklog: Int = 256 * 1024,
                closeDrainSeconds: Double = 2, logger: Logger) throws {
        self.path = path
        self.maxClientBacklog = max(1, maxClientBacklog)
        self.closeDrainSeconds = max(0, closeDrainSeconds)
        self.logger = logger
        let (listenFD, device, inode) = try Self.listen(at: path, mode: mode, group: group)
        do {
            wake = try WakePipe()
        } catch {
            Glibc.close(listenFD)
            unlink(path)
            throw SinkError.system(path: path, call: "pipe", errno: error as? Errno ?? Errno(EIO))
        }
        self.listenFD = listenFD
        self.socketDevice = device
        self.socketInode = inode
        startThread(named: "htsatd-events-socket") { [self] in self.run() }
        logger.info("serving events on Unix socket", metadata: ["path": "\(path)"])
    }

    /// Connected clients (not counting ones already marked to be dropped).
    public var clientCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return clients.reduce(0) { $0 + ($1.dropReason == nil ? 1 : 0) }
    }

    public func publish(_ message: EncodedMessage) {
        lock.lock()
        guard !stopping else {
            lock.unlock()
            return
        }
        remember(message)
        for client in clients where client.dropReason == nil {
            enqueue(message.line, to: client)
        }
        let wake = !clients.isEmpty && !wakePending
        if wake { wakePending = true }
        lock.unlock()
        if wake { self.wake.wake() }
    }

    public func close() {
        lock.lock()
        let alreadyStopping = stopping
        stopping = true
        lock.unlock()
        guard !alreadyStopping else { return }
        wake.wake()
        finished.wait()
        // The poll thread has exited; the lock still guards `clients` against clientCount readers.
        lock.lock()
        for client in clients { Glibc.close(client.fd) }
        clients.removeAll()
        lock.unlock()
        Glibc.close(listenFD)
        // Remove the file only if it is still ours (not one a newer instance created).
        var st = stat()
        if lstat(path, &st) == 0 && UInt64(st.st_dev) == socketDevice && UInt64(st.st_ino) == socketInode {
            unlink(path)
        }
        logger.info("closed event socket", metadata: ["path": "\(path)"])
    }

    // MARK: - Publishing (under lock)

    /// Keeps the replay state: the latest status, and the start lines of open events.
    private func remember(_ message: EncodedMessage) {
        switch message.message {
        case .status:
            latestStatus = message.line
        case .event(let e) where e.event.kind == .start:
            if openEvents.count >= Self.maxOpenEvents {
                openEvents.removeFirst()
                if !warnedOpenEventOverflow {
                    warnedOpenEventOverflow = true
                    logger.warning("too many open events; forgetting the oldest for late socket clients", metadata: ["limit": "\(Self.maxOpenEvents)"])
                }
            }
            openEvents.append((e.event.id, message.line))
        case .event(let e):
            openEvents.removeAll { $0.id == e.event.id }
        case .stats:
            break
        }
    }

    private func enqueue(_ line: String, to client: Client) {
        let size = line.utf8.count + 1
        guard client.backlog + size <= maxClientBacklog else {
            client.dropReason = "it fell more than \(maxClientBacklog) bytes behind (stopped reading)"
            client.dropIsTrouble = true
            return
        }
        client.pending.append(contentsOf: line.utf8)
        client.pending.append(0x0A)
    }

    // MARK: - Poll thread

    private func run() {
        var fds: [pollfd] = []
        var polled: [Client] = []
        var scratch = [UInt8](repeating: 0, count: 4096)
        while true {
            lock.lock()
            if stopping {
                lock.unlock()
                break
            }
            reapDroppedClients()
            wakePending = false
            fds.removeAll(keepingCapacity: true)
            polled.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0))
            for client in clients {
                var events: Int32 = client.readClosed ? 0 : POLLIN
                if client.backlog > 0 { events |= POLLOUT }
                fds.append(pollfd(fd: client.fd, events: Int16(events), revents: 0))
                polled.append(client)
            }
            lock.unlock()

            if case .failure(let error) = posixCall({ poll(&fds, nfds_t(fds.count), -1) }) {
                logger.error("poll on event socket failed", metadata: ["error": "\(error)"])
                usleep(100_000)
                continue
            }
            if fds[0].revents != 0 { wake.drain() }
            if fds[1].revents != 0 { acceptClients() }

            lock.lock()
            for (index, client) in polled.enumerated() where client.dropReason == nil {
                let events = Int32(fds[index + 2].revents)
                if events & POLLHUP != 0 {
                    client.dropReason = "it hung up"
                } else if events & (POLLIN | POLLERR) != 0 {
                    readAndIgnore(client, &scratch)
                }
            }
            // Publishes may have queued data since poll() was set up, so flush everything pending.
            flushPending()
            lock.unlock()
        }
        drainBeforeClose()
        finished.signal()
    }

    /// Lines published just before close (the final stop events, a burst of up to ~90 kB) outgrow a client's socket
    /// buffer: keep writing to the clients still reading until every backlog is sent or `closeDrainSeconds` pass,
    /// so that a slow but healthy reader loses nothing, and a stalled one delays shutdown by that bound at most.
    private func drainBeforeClose() {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(closeDrainSeconds * 1e9)
        while true {
            lock.lock()
            flushPending()
            let polled = clients.filter { $0.dropReason == nil && $0.backlog > 0 }
            lock.unlock()
            let now = DispatchTime.now().uptimeNanoseconds
            if polled.isEmpty { return }
            if now >= deadline {
                let bytes = polled.reduce(0) { $0 + $1.backlog }
                logger.warning("closing event socket with lines unsent: clients stopped reading during shutdown",
                               metadata: ["clients": "\(polled.count)", "bytes": "\(bytes)",
                                          "bound_s": "\(closeDrainSeconds)"])
                return
            }
            var fds = polled.map { pollfd(fd: $0.fd, events: Int16(POLLOUT), revents: 0) }
            let ms = Int32(min(100, max(1, (deadline - now) / 1_000_000)))
            _ = posixCall { poll(&fds, nfds_t(fds.count), ms) }
            lock.lock()
            for (index, client) in polled.enumerated() where fds[index].revents & Int16(POLLHUP | POLLERR) != 0 {
                client.dropReason = "it hung up"
            }
            lock.unlock()
        }
    }

    private func acceptClients() {
        while true {
            let accepted = posixCall { accept(listenFD, nil, nil) }
            guard case .success(let n) = accepted else {
                guard case .failure(let error) = accepted else { return }
                let code = error.code
                if code == EAGAIN || code == EWOULDBLOCK { return }
                if code == ECONNABORTED { continue }
                logger.error("accepting an event socket client failed", metadata: ["path": "\(path)", "error": "\(error)"])
                // Out of fds: the listener stays readable, so back off instead of spinning.
                if code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM { usleep(100_000) }
                return
            }
            let fd = Int32(n)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            addStatusFlags(fd, O_NONBLOCK)
            let client = Client(fd: fd, pid: Self.peerPID(fd))
            lock.lock()
            if let latestStatus { enqueue(latestStatus, to: client) }
            for event in openEvents { enqueue(event.line, to: client) }
            clients.append(client)
            let total = clients.count
            lock.unlock()
            logger.info("event socket client connected", metadata: ["fd": "\(fd)", "pid": "\(client.pid)", "clients": "\(total)"])
        }
    }

    /// Closes and forgets clients marked for dropping (under lock).
    private func reapDroppedClients() {
        clients.removeAll { client in
            guard let reason = client.dropReason else { return false }
            Glibc.close(client.fd)
            let metadata: Logger.Metadata = ["fd": "\(client.fd)", "pid": "\(client.pid)", "reason": "\(reason)"]
            if client.dropIsTrouble {
                dropWarnings.record { folded in logger.warning("dropping event socket client\(LogThrottle.suffix(folded))", metadata: metadata) }
            } else {
                logger.info("event socket client disconnected", metadata: metadata)
            }
            return true
        }
    }

    /// Reads and discards what a client sent (under lock); notes EOF and errors.
    private func readAndIgnore(_ client: Client, _ scratch: inout [UInt8]) {
        switch posixCall({ scratch.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } }) {
        case .success(0):
            client.readClosed = true  // half-closed: it may still be reading; POLLHUP will tell when it is gone
        case .success:
            break
        case .failure(let error):
            if error.code != EAGAIN && error.code != EWOULDBLOCK { client.dropReason = "reading from it failed: \(error)" }
        }
    }

    /// Flushes every client that has lines queued and is not being dropped (under lock).
    private func flushPending() {
        for client in clients where client.dropReason == nil && client.backlog > 0 { flush(client) }
    }

    /// Writes as much of a client's backlog as the socket takes without blocking (under lock).
    private func flush(_ client: Client) {
        while client.backlog > 0 {
            let sent = posixCall {
                client.pending.withUnsafeBytes {
                    send(client.fd, $0.baseAddress! + client.sent, client.backlog, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
            }
            if case .success(let n) = sent, n > 0 {
                client.sent += n
                continue
            }
            let error = { if case .failure(let e) = sent { return e }; return Errno(EIO) }()
            if error.code == EAGAIN || error.code == EWOULDBLOCK { break }
            if error.code == EPIPE || error.code == ECONNRESET {
                client.dropReason = "it hung up"
            } else {
                client.dropReason = "writing to it failed: \(error)"
                client.dropIsTrouble = true
            }
            return
        }
        // Keep the buffer (and its capacity) small: the unsent part is at most maxClientBacklog.
        if client.sent == client.pending.count {
            client.pending.removeAll(keepingCapacity: true)
            client.sent = 0
        } else if client.sent >= client.pending.count / 2 {
            client.pending.removeFirst(client.sent)
            client.sent = 0
        }
    }

    // MARK: - Setup

    /// The connecting process's pid (SO_PEERCRED), or -1 when unavailable.
    private static func peerPID(_ fd: Int32) -> Int32 {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (not exported to Swift by Glibc).
        var cred: [Int32] = [-1, 0, 0]
        var length = socklen_t(MemoryLayout<Int32>.size * 3)
        let result = cred.withUnsafeMutableBytes { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, $0.baseAddress, &length) }
        return result == 0 ? cred[0] : -1
    }

    private static func address(_ path: String) throws -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let limit = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, !bytes.contains(0) else { throw SinkError.invalidSocketPath(path: path) }
        guard bytes.count < limit else { throw SinkError.socketPathTooLong(path: path, limit: limit) }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return (addr, socklen_t(MemoryLayout<sockaddr_un>.size))
    }

    private static func newSocket(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw SinkError.system(path: path, call: "socket", errno: .current) }
        return fd
    }

    /// Clears the way for binding: removes a stale socket file, refuses a live one or a non-socket.
    private static func removeStaleSocket(_ path: String, _ addr: sockaddr_un, _ length: socklen_t) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            let code = errno
            if code == ENOENT { return }
            if code == ENOTDIR { throw SinkError.socketDirectoryMissing(path: path) }
            throw SinkError.system(path: path, call: "lstat", errno: Errno(code))
        }
        guard st.st_mode & S_IFMT == S_IFSOCK else { throw SinkError.notASocket(path: path) }
        let probe = try newSocket(path)
        defer { Glibc.close(probe) }
        var probeAddr = addr
        let result = posixCall {
            withUnsafePointer(to: &probeAddr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, length) }
            }
        }
        let code: Int32 = { if case .failure(let e) = result { return e.code }; return 0 }()
        // A non-blocking connect to a listener with a full queue gives EAGAIN: still somebody there.
        if code == 0 || code == EAGAIN || code == EINPROGRESS { throw SinkError.alreadyServing(path: path) }
        guard code == ECONNREFUSED else { throw SinkError.system(path: path, call: "connect (probing the existing socket)", errno: Errno(code)) }
        guard unlink(path) == 0 || errno == ENOENT else { throw SinkError.system(path: path, call: "unlink (stale socket)", errno: .current) }
    }

    /// Creates, binds, chmods and listens; returns the listening fd and the socket file's identity.
    private static func listen(at path: String, mode: mode_t, group: gid_t?) throws -> (Int32, UInt64, UInt64) {
        var (addr, length) = try address(path)
        try removeStaleSocket(path, addr, length)
        let fd = try newSocket(path)
        var bound = false
        do {
            let result = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            guard result == 0 else {
                let code = errno
                switch code {
                case ENOENT, ENOTDIR: throw SinkError.socketDirectoryMissing(path: path)
                case EADDRINUSE: throw SinkError.alreadyServing(path: path)  // someone bound it between our check and now
                default: throw SinkError.system(path: path, call: "bind", errno: Errno(code))
                }
            }
            bound = true
            // chmod before listen(): nobody can connect until then, so no window with the wrong mode.
            guard chmod(path, mode) == 0 else { throw SinkError.system(path: path, call: "chmod", errno: .current) }
            if let group, chown(path, uid_t.max, group) != 0 {
                throw SinkError.system(path: path, call: "chown to group \(group)", errno: .current)
            }
            var st = stat()
            guard lstat(path, &st) == 0 else { throw SinkError.system(path: path, call: "lstat", errno: .current) }
            guard Glibc.listen(fd, 64) == 0 else { throw SinkError.system(path: path, call: "listen", errno: .current) }
            return (fd, UInt64(st.st_dev), UInt64(st.st_ino))
        } catch {
            Glibc.close(fd)
            if bound { unlink(path) }
            throw error
        }
    }
}

import Foundation
import Logging
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// Serves `GET /metrics` over HTTP/1.0-style one-shot connections on a loopback TCP port or a Unix socket
/// (`--metrics-listen 127.0.0.1:9464` or `unix:/run/htsatd/metrics.sock`). One thread; each request is answered and
/// the connection closed, so a scraper that stalls costs at most the 2-s read timeout.
final class MetricsListener: Service, @unchecked Sendable {
    let name = "metrics listener"
    private let address: String
    private let metrics: DaemonMetrics
    private let refresh: () -> Void
    private let logger: Logger
    private let wake: WakePipe
    private var fd: Int32 = -1
    private var unixPath: String?
    private let finished = DispatchSemaphore(value: 0)

    init(address: String, metrics: DaemonMetrics, logger: Logger, refresh: @escaping () -> Void) throws {
        (self.address, self.metrics, self.logger, self.refresh) = (address, metrics, logger, refresh)
        wake = try WakePipe()
    }

    /// Parses `host:port` (IPv4) or `unix:PATH`; nil when it is neither.
    static func parse(_ address: String) -> (host: String, port: UInt16)?? {
        if address.hasPrefix("unix:") { return .some(nil) }
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]), port > 0, inet_addr(String(parts[0])) != INADDR_NONE else { return nil }
        return .some((String(parts[0]), port))
    }

    func start() throws {
        guard let parsed = Self.parse(address) else {
            throw DaemonError("--metrics-listen \(address): expected HOST:PORT (e.g. 127.0.0.1:9464) or unix:PATH")
        }
        if let (host, port) = parsed {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr(host)
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            try check(bound == 0, "bind")
        } else {
            let path = String(address.dropFirst(5))
            unixPath = path
            unlink(path)
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            try check(bytes.count < MemoryLayout.size(ofValue: addr.sun_path), "bind (path too long)")
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in raw.copyBytes(from: bytes); raw[bytes.count] = 0 }
            let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            try check(bound == 0, "bind")
        }
        try check(listen(fd, 16) == 0, "listen")
        logger.info("serving metrics", metadata: ["address": "\(address)"])
        startThread(named: "htsatd-metrics-http", signalling: finished) { [self] in serve() }
    }

    func stop() {
        guard fd >= 0 else { return }
        wake.wake()
        finished.wait()
        close(fd)
        if let unixPath { unlink(unixPath) }
    }

    private func check(_ ok: Bool, _ call: String) throws {
        guard ok else {
            let error = Errno.current
            if fd >= 0 { close(fd); fd = -1 }
            throw DaemonError("--metrics-listen \(address): \(call) failed: \(error)")
        }
    }

    private func serve() {
        var request = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0)]
            _ = posixCall { poll(&fds, 2, -1) }
            if fds[1].revents != 0 { break }
            guard case .success(let n) = posixCall({ accept(fd, nil, nil) }) else { continue }
            let client = Int32(n)
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let got = request.withUnsafeMutableBytes { raw in posixCall { recv(client, raw.baseAddress, raw.count, 0) } }
            let head = (try? got.get()).map { String(decoding: request[0..<$0], as: UTF8.self) } ?? ""
            let response: String
            if head.hasPrefix("GET /metrics") {
                refresh()
                let body = metrics.render()
                response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                    + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
            } else {
                response = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            _ = Array(response.utf8).withUnsafeBytes { writeAll(client, $0) }
            close(client)
        }
    }
}

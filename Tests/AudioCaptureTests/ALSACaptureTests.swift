import AudioCapture
import Foundation
import Logging
import TestSupport
import XCTest

/// Records capture statuses and lets a test wait for one.
private final class StatusLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [CaptureStatus] = []

    func append(_ status: CaptureStatus) {
        condition.lock()
        items.append(status)
        condition.broadcast()
        condition.unlock()
    }

    var all: [CaptureStatus] {
        condition.lock()
        defer { condition.unlock() }
        return items
    }

    /// Waits until `predicate` holds for the statuses so far.
    func wait(timeout: Double, _ predicate: ([CaptureStatus]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !predicate(items) {
            if !condition.wait(until: deadline) { return predicate(items) }
        }
        return true
    }
}

private func isRunning(_ status: CaptureStatus) -> Bool {
    if case .running = status { return true }
    return false
}

private func unavailableError(_ status: CaptureStatus) -> ALSAError? {
    if case let .deviceUnavailable(_, error, _) = status { return error }
    return nil
}

/// Real alsa-lib, no hardware: the `file` plugin reads raw audio from `infile` while its
/// `null` slave supplies the (unpaced) clock. PCMs are defined in a private configuration
/// file that ALSA_CONFIG_PATH points at for the duration of each test.
final class ALSACaptureTests: XCTestCase {
    private var dir: URL!
    private var configFile: URL!
    private var savedConfigPath: String?

    override func setUpWithError() throws {
        dir = try Fixtures.temporaryDirectory("alsa")
        configFile = dir.appendingPathComponent("asound.conf")
        try defineALSA("")
        savedConfigPath = ProcessInfo.processInfo.environment["ALSA_CONFIG_PATH"]
        setenv("ALSA_CONFIG_PATH", configFile.path, 1)
    }

    override func tearDown() {
        if let savedConfigPath { setenv("ALSA_CONFIG_PATH", savedConfigPath, 1) } else { unsetenv("ALSA_CONFIG_PATH") }
        try? FileManager.default.removeItem(at: dir)
    }

    /// Replaces the configuration atomically (new inode, so alsa-lib sees the change on its next
    /// snd_pcm_open even within the same second).
    private func defineALSA(_ pcms: String) throws {
        let temp = dir.appendingPathComponent("asound.conf.new")
        try ("</usr/share/alsa/alsa.conf>\n" + pcms).write(to: temp, atomically: false, encoding: .utf8)
        XCTAssertEqual(rename(temp.path, configFile.path), 0)
    }

    /// A capture PCM named `name` reading raw samples from `infile`.
    /// A started, real-time-paced capture of `name`, a `file` PCM of a 4-s sine whose copy of the captured audio goes
    /// to /dev/full, so that snd_pcm_readi fails with -EIO once the plugin's write buffer fills: a device failing
    /// mid-stream. Redefining `name` with `filePCM(name, infile: raw)` makes it work again.
    private func failingCapture(_ name: String, retryInitial: Double, retryMax: Double) throws
        -> (raw: URL, ring: AudioRing, log: StatusLog, capture: ALSACapture) {
        let raw = dir.appendingPathComponent("\(name).raw")
        try Signals.float32Bytes(Signals.sine(frequency: 440, amplitude: 0.5, rate: 32000, count: 32000 * 4)).write(to: raw)
        try defineALSA(filePCM(name, infile: raw).replacingOccurrences(of: "\"/dev/null\"", with: "\"/dev/full\""))
        let ring = AudioRing(capacity: 32000 * 10)
        let log = StatusLog()
        var config = CaptureConfig(device: name, targetRate: 32000)
        config.retryInitial = retryInitial
        config.retryMax = retryMax
        config.paceToRealTime = true
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: log.append)
        capture.start()
        return (raw, ring, log, capture)
    }

    private func filePCM(_ name: String, infile: URL) -> String {
        """
        pcm.\(name) {
            type file
            slave.pcm "null"
            file "/dev/null"
            infile "\(infile.path)"
            format "raw"
        }

        """
    }

    private var logger: Logger {
        var logger = Logger(label: "test.alsa")
        logger.logLevel = .info
        return logger
    }

    /// Captures until the ring holds `samples`, then stops; returns the first `samples`.
    private func capture(_ config: CaptureConfig, samples: Int, ringCapacity: Int = 32000 * 20,
                         file: StaticString = #filePath, line: UInt = #line) throws -> (samples: [Float], stats: CaptureStats, statuses: [CaptureStatus]) {
        let ring = AudioRing(capacity: ringCapacity)
        let log = StatusLog()
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: log.append)
        capture.start()
        let result = ring.waitForSamples(Int64(samples), timeout: 15)
        let stats = capture.stats
        capture.stop()
        XCTAssertEqual(result, .ready, "statuses: \(log.all)", file: file, line: line)
        var out = [Float](repeating: 0, count: samples)
        XCTAssertTrue(ring.read(endingAt: Int64(samples), count: samples, into: &out),
                      "the first samples must still be in the ring (written \(ring.totalWritten))", file: file, line: line)
        return (out, stats, log.all)
    }

    func testStereoS16At48kArrivesDownmixedAndResampledTo32k() throws {
        // Left 0.6, right 0.2 at 1 kHz: the mono mean is 0.4.
        let n = 48000 * 3
        let raw = dir.appendingPathComponent("s16-48k-stereo.raw")
        try Signals.s16Bytes(Signals.interleave([
            Signals.sine(frequency: 1000, amplitude: 0.6, rate: 48000, count: n),
            Signals.sine(frequency: 1000, amplitude: 0.2, rate: 48000, count: n),
        ])).write(to: raw)
        try defineALSA(filePCM("s16in", infile: raw))

        var config = CaptureConfig(device: "s16in", targetRate: 32000)
        config.captureRate = 48000  // the null slave accepts anything: pin what the file holds
        config.channels = 2
        config.format = .s16
        config.paceToRealTime = true
        let (samples, stats, statuses) = try capture(config, samples: 48000)

        XCTAssertEqual(stats.deviceRate, 48000)
        XCTAssertEqual(stats.format, "S16_LE")
        XCTAssertEqual(stats.channels, 2)
        XCTAssertTrue(stats.isRunning)
        XCTAssertEqual(stats.overruns, 0)
        guard case let .running(device, rate, format, channels)? = statuses.first else {
            return XCTFail("first status should be running: \(statuses)")
        }
        XCTAssertEqual(device, "s16in")
        XCTAssertEqual(rate, 48000)
        XCTAssertEqual(format, "S16_LE")
        XCTAssertEqual(channels, 2)
        guard case .stopped? = statuses.last else { return XCTFail("last status should be stopped: \(statuses)") }

        let fit = Signals.fitSine(samples[1000..<47000], frequency: 1000, rate: 32000)
        XCTAssertEqual(fit.amplitude, 0.4, accuracy: 0.002)
        XCTAssertLessThan(fit.residual, 1e-3)
        // soxr keeps the timeline: the first output sample is time 0 (sin = 0), rising.
        XCTAssertEqual(Double(samples[8]), 0.4 * sin(2 * Double.pi * 1000 * 8 / 32000), accuracy: 0.01)
    }

    func testFloatMono32kIsDeliveredBitExact() throws {
        let signal = Signals.sine(frequency: 440, amplitude: 0.8, rate: 32000, count: 32000 * 2)
        let raw = dir.appendingPathComponent("f32-32k-mono.raw")
        try Signals.float32Bytes(signal).write(to: raw)
        try defineALSA(filePCM("floatin", infile: raw))

        var config = CaptureConfig(device: "floatin", targetRate: 32000)
        config.paceToRealTime = true
        let (samples, stats, _) = try capture(config, samples: 40000)
        // Nothing forced: the preferred FLOAT_LE, the model rate and mono are all offered.
        XCTAssertEqual(stats.format, "FLOAT_LE")
        XCTAssertEqual(stats.deviceRate, 32000)
        XCTAssertEqual(stats.channels, 1)
        XCTAssertEqual(stats.resamplerDelaySamples, 0)
        XCTAssertEqual(samples, Array(signal[0..<40000]))
    }

    func testPlugDeviceIsCapturedAtItsOwnRateAndResampledBySoxr() throws {
        // `plug` may convert format and channels, but alsa-lib resampling is disabled, so the
        // device's fixed 48 kHz is captured and soxr converts to 32 kHz.
        let n = 48000 * 3
        let raw = dir.appendingPathComponent("s16-48k-stereo.raw")
        try Signals.s16Bytes(Signals.interleave([
            Signals.sine(frequency: 2000, amplitude: 0.5, rate: 48000, count: n),
            Signals.sine(frequency: 2000, amplitude: 0.5, rate: 48000, count: n),
        ])).write(to: raw)
        try defineALSA(filePCM("raw48", infile: raw) + """
            pcm.plug48 {
                type plug
                slave { pcm "raw48"; rate 48000; channels 2; format S16_LE }
            }

            """)
        var config = CaptureConfig(device: "plug48", targetRate: 32000)
        config.paceToRealTime = true
        let (samples, stats, _) = try capture(config, samples: 32000)
        XCTAssertEqual(stats.deviceRate, 48000)
        XCTAssertEqual(stats.format, "FLOAT_LE")
        XCTAssertEqual(stats.channels, 1)
        let fit = Signals.fitSine(samples[1000..<31000], frequency: 2000, rate: 32000)
        XCTAssertEqual(fit.amplitude, 0.5, accuracy: 0.003)
        XCTAssertLessThan(fit.residual, 2e-3)
    }

    func testAfterInfileEndsCaptureDeliversSilenceNotStaleAudio() throws {
        let signal = Signals.sine(frequency: 440, amplitude: 0.8, rate: 32000, count: 5000)  // shorter than a period multiple
        let raw = dir.appendingPathComponent("short.raw")
        try Signals.float32Bytes(signal).write(to: raw)
        try defineALSA(filePCM("shortin", infile: raw))
        let config = CaptureConfig(device: "shortin", targetRate: 32000)  // unpaced: as fast as possible
        let (samples, _, _) = try capture(config, samples: 20000, ringCapacity: 32000 * 600)
        XCTAssertEqual(Array(samples[0..<5000]), signal)
        XCTAssertEqual(samples[5000...].map { abs($0) }.max(), 0, "after EOF the file plugin supplies no data")
    }

    func testUnpacedThroughput() throws {
        let raw = dir.appendingPathComponent("noise.raw")
        try Signals.s16Bytes(Signals.interleave([
            Signals.sine(frequency: 1000, amplitude: 0.5, rate: 48000, count: 48000 * 5),
            Signals.sine(frequency: 1000, amplitude: 0.5, rate: 48000, count: 48000 * 5),
        ])).write(to: raw)
        try defineALSA(filePCM("fast", infile: raw))
        var config = CaptureConfig(device: "fast", targetRate: 32000)
        config.captureRate = 48000
        config.channels = 2
        config.format = .s16
        let ring = AudioRing(capacity: 32000)
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: { _ in })
        capture.start()
        XCTAssertEqual(ring.waitForSamples(1, timeout: 10), .ready)
        // Three seconds of audio (at the 32 kHz ring rate) must arrive well within 1.5 s of wall time.
        let start = Date()
        let before = capture.stats.framesCaptured
        XCTAssertEqual(ring.waitForSamples(ring.totalWritten + 3 * 32000, timeout: 1.5), .ready, "capture is not faster than real time")
        let frames = capture.stats.framesCaptured - before
        let elapsed = Date().timeIntervalSince(start)
        capture.stop()
        let speed = Double(frames) / 48000 / elapsed
        print("unpaced capture (file+null, S16 stereo 48 kHz -> mono 32 kHz via soxr): \(String(format: "%.0f", speed))x real time")
        XCTAssertGreaterThan(speed, 2, "the null slave does not pace capture")
    }

    func testAbsentDeviceIsRetriedUntilItIsDefined() throws {
        let signal = Signals.sine(frequency: 440, amplitude: 0.5, rate: 32000, count: 32000)
        let raw = dir.appendingPathComponent("late.raw")
        try Signals.float32Bytes(signal).write(to: raw)

        let ring = AudioRing(capacity: 32000 * 4)
        let log = StatusLog()
        var config = CaptureConfig(device: "late", targetRate: 32000)
        config.retryInitial = 0.05
        config.retryMax = 0.2
        config.paceToRealTime = true
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: log.append)
        capture.start()
        defer { capture.stop() }

        XCTAssertTrue(log.wait(timeout: 10) { $0.compactMap(unavailableError).count >= 3 }, "\(log.all)")
        XCTAssertFalse(capture.stats.isRunning)
        let error = try XCTUnwrap(log.all.compactMap(unavailableError).first)
        XCTAssertEqual(error.device, "late")
        XCTAssertEqual(error.function, "snd_pcm_open")
        XCTAssertEqual(error.code, -ENOENT)
        XCTAssertTrue(error.description.contains("'late'"), error.description)
        XCTAssertTrue(error.description.contains("Unknown PCM late"), "alsa-lib's own message is attached: \(error.description)")
        let delays = log.all.compactMap { status -> Double? in
            if case let .deviceUnavailable(_, _, retryIn) = status { return retryIn }
            return nil
        }
        XCTAssertEqual(Array(delays.prefix(3)), [0.05, 0.1, 0.2], "exponential backoff")
        XCTAssertEqual(delays.max(), 0.2, "capped at retryMax")

        try defineALSA(filePCM("late", infile: raw))
        XCTAssertTrue(log.wait(timeout: 10) { $0.contains(where: isRunning) }, "\(log.all)")
        XCTAssertEqual(ring.waitForSamples(16000, timeout: 10), .ready)
        var out = [Float](repeating: 0, count: 16000)
        XCTAssertTrue(ring.read(endingAt: 16000, count: 16000, into: &out))
        XCTAssertEqual(out, Array(signal[0..<16000]))
        XCTAssertEqual(capture.stats.reconnects, 0, "the first successful open is not a reconnect")
    }

    func testDeviceFailingMidStreamIsReopenedWhenItWorksAgain() throws {
        let (raw, ring, log, capture) = try failingCapture("flaky", retryInitial: 0.05, retryMax: 0.1)
        defer { capture.stop() }

        XCTAssertTrue(log.wait(timeout: 10) { statuses in
            guard let first = statuses.firstIndex(where: isRunning) else { return false }
            return statuses[first...].contains { unavailableError($0) != nil }
        }, "runs, then fails: \(log.all)")
        let error = try XCTUnwrap(log.all.compactMap(unavailableError).first)
        XCTAssertEqual(error.function, "snd_pcm_readi")
        XCTAssertEqual(error.code, -EIO)
        XCTAssertEqual(error.device, "flaky")

        try defineALSA(filePCM("flaky", infile: raw))
        let resumed = ring.totalWritten
        XCTAssertEqual(ring.waitForSamples(resumed + 32000, timeout: 10), .ready, "capture resumes: \(log.all)")
        XCTAssertGreaterThanOrEqual(capture.stats.reconnects, 1)
        XCTAssertTrue(capture.stats.isRunning)
    }

    /// Audio lost to a reconnect is filled with silence: afterwards the stream clock (samples written) is the wall
    /// clock since the first sample again, and the gap is counted.
    func testAudioLostToAReconnectIsFilledSoStreamTimeStaysWallTime() throws {
        let (raw, ring, log, capture) = try failingCapture("gappy", retryInitial: 1.0, retryMax: 1.0)
        defer { capture.stop() }
        XCTAssertEqual(ring.waitForSamples(1, timeout: 10), .ready)
        let first = Date()
        XCTAssertTrue(log.wait(timeout: 10) { $0.contains { unavailableError($0) != nil } }, "fails: \(log.all)")
        try defineALSA(filePCM("gappy", infile: raw))
        XCTAssertTrue(log.wait(timeout: 10) { $0.filter(isRunning).count >= 2 }, "reopened: \(log.all)")
        let resumed = ring.totalWritten
        XCTAssertEqual(ring.waitForSamples(resumed + 16000, timeout: 10), .ready)
        let streamSeconds = Double(ring.totalWritten) / 32000, wall = Date().timeIntervalSince(first)
        print("after a reconnect: stream \(streamSeconds) s, wall \(wall) s, gap filled \(capture.stats.gapSeconds) s")
        XCTAssertGreaterThan(capture.stats.gapSeconds, 0.5, "the retry wait (1 s) was lost audio")
        XCTAssertEqual(streamSeconds, wall, accuracy: 0.3, "stream time is wall time again")
    }

    /// Real device faults from the fault-injecting plugin (Tests/ALSAFaultPlugin): two overruns, a suspend, short
    /// reads, a stall and an unplug are each recovered from and counted, and every sample still lands at its
    /// wall-clock position, the lost stretches filled with silence. Each source sample names its own frame, so
    /// misplaced, repeated or dropped audio cannot pass.
    func testInjectedDeviceFaultsAreRecoveredCountedAndKeepWallClockPositions() throws {
        let rate = 32000
        let pcm = try FaultPCM("faulty", samples: (0..<(rate * 10)).map { Float($0 + 1) },
                               faults: "xrun@1:0.3,xrun@1.6,suspend@2.2:0.5,short@3:0.6,stall@4:1,unplug@5.5:0.6", in: dir)
        setenv("ALSA_CONFIG_PATH", pcm.config.path, 1)
        var config = CaptureConfig(device: "faulty", targetRate: rate)
        config.retryInitial = 0.2
        let ring = AudioRing(capacity: rate * 10)
        let log = StatusLog()
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: log.append)
        capture.start()
        let count = 8 * rate
        XCTAssertEqual(ring.waitForSamples(Int64(count), timeout: 20), .ready, "\(log.all)")
        let stats = capture.stats
        capture.stop()
        let plugin = pcm.counters
        var samples = [Float](repeating: 0, count: count)
        XCTAssertTrue(ring.read(endingAt: Int64(count), count: count, into: &samples))

        // Silence only where audio was lost; the audio itself in order, each sample within 0.1 s of where the wall
        // clock puts it (the device's first start is sample 0). Except: what a stalled or suspended device captured
        // just before (under a period) comes in one read with the first audio after, so it lands after the filled gap.
        var last: Float = 0, lost: [String] = [], disorder = 0, misplaced = 0
        for (i, value) in samples.enumerated() where value != 0 {
            if value < last + 1 { disorder += 1 }
            if value != last + 1 { lost.append(String(format: "%.3f-%.3f", Double(last) / Double(rate), Double(value - 1) / Double(rate))) }
            if abs(i - Int(value - 1)) > rate / 10 { misplaced += 1 }
            last = value
        }
        let silence = Double(samples.filter { $0 == 0 }.count) / Double(rate)
        print("""
            injected faults: audio lost (s) \(lost.joined(separator: ", ")); filled \(String(format: "%.3f", stats.gapSeconds)) s, \
            the plugin lost \(plugin["lost_seconds"] ?? -1) s; \(misplaced) samples misplaced; \
            overruns \(stats.overruns), suspends \(stats.suspends), reconnects \(stats.reconnects); plugin \(plugin)
            """)
        XCTAssertEqual(disorder, 0, "audio repeated or out of order")
        XCTAssertLessThanOrEqual(misplaced, 2 * (stats.periodFrames ?? 0), "audio after a fault is not at its wall-clock position")
        XCTAssertEqual(lost.count, 5 + Int(plugin["natural_xruns"] ?? 0), "lost audio only at the lossy faults: \(lost)")
        XCTAssertEqual(silence, stats.gapSeconds, accuracy: 1e-6, "silence is exactly the filled gaps")
        XCTAssertEqual(stats.gapSeconds, plugin["lost_seconds"] ?? 0, accuracy: 0.15, "the lost audio is filled")

        XCTAssertEqual(plugin["xrun"], 2)
        XCTAssertEqual(plugin["suspend"], 1)
        XCTAssertEqual(plugin["short"], 1)
        XCTAssertEqual(plugin["stall"], 1)
        XCTAssertEqual(plugin["unplug"], 1)
        XCTAssertGreaterThan(plugin["short_reads"] ?? 0, 10, "reads returned fewer frames than asked")
        XCTAssertEqual(Double(stats.overruns), (plugin["xrun"] ?? 0) + (plugin["natural_xruns"] ?? 0))
        XCTAssertEqual(stats.suspends, 1)
        XCTAssertEqual(stats.reconnects, 1, "the unplugged device was reopened")
        let unavailable = log.all.compactMap(unavailableError)
        XCTAssertTrue(unavailable.contains { $0.code == -ENODEV }, "the unplug is reported: \(log.all)")
    }

    func testExitOnDeviceErrorReportsFatalNamingTheDevice() throws {
        let ring = AudioRing(capacity: 1000)
        let log = StatusLog()
        var config = CaptureConfig(device: "nosuchpcm", targetRate: 32000)
        config.exitOnDeviceError = true
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: log.append)
        capture.start()
        XCTAssertTrue(log.wait(timeout: 10) { !$0.isEmpty }, "a status arrives")
        guard case let .fatal(error)? = log.all.first else { return XCTFail("expected fatal: \(log.all)") }
        XCTAssertEqual(error.device, "nosuchpcm")
        XCTAssertTrue(error.description.contains("nosuchpcm"), error.description)
        XCTAssertNotNil(error.hint)
        let start = Date()
        capture.stop()
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
        XCTAssertEqual(log.all.count, 1, "no retries after fatal: \(log.all)")
    }

    func testStopIsPromptWhileStreamingAndWhileWaitingToRetry() throws {
        let raw = dir.appendingPathComponent("stop.raw")
        try Signals.float32Bytes(Signals.sine(frequency: 440, amplitude: 0.5, rate: 32000, count: 32000 * 5)).write(to: raw)
        try defineALSA(filePCM("stopin", infile: raw))

        for (device, paced, retry) in [("stopin", true, 30.0), ("stopin", false, 30.0), ("absent", false, 30.0)] {
            let ring = AudioRing(capacity: 32000)
            let log = StatusLog()
            var config = CaptureConfig(device: device, targetRate: 32000)
            config.paceToRealTime = paced
            config.periodMilliseconds = 50
            config.retryInitial = retry
            let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: log.append)
            capture.start()
            XCTAssertTrue(log.wait(timeout: 10) { !$0.isEmpty }, "\(device)")
            // Mid-stream (audio flowing) or already waiting to retry the absent device.
            if device != "absent" { XCTAssertEqual(ring.waitForSamples(3200, timeout: 10), .ready, device) }
            let start = Date()
            capture.stop()
            let took = Date().timeIntervalSince(start)
            XCTAssertLessThan(took, 0.5, "\(device) paced=\(paced): stop took \(took) s")
            XCTAssertTrue(log.wait(timeout: 1) { statuses in
                if case .stopped? = statuses.last { return true }
                return false
            }, "\(log.all)")
            capture.stop()  // idempotent
        }
    }

    func testRestartAfterStopCapturesAgain() throws {
        let raw = dir.appendingPathComponent("again.raw")
        try Signals.float32Bytes(Signals.sine(frequency: 440, amplitude: 0.5, rate: 32000, count: 32000 * 5)).write(to: raw)
        try defineALSA(filePCM("again", infile: raw))
        let ring = AudioRing(capacity: 32000)
        var config = CaptureConfig(device: "again", targetRate: 32000)
        config.paceToRealTime = true
        let capture = ALSACapture(config: config, ring: ring, logger: logger, onStatus: { _ in })
        capture.start()
        XCTAssertEqual(ring.waitForSamples(3200, timeout: 10), .ready)
        capture.stop()
        XCTAssertFalse(capture.stats.isRunning)
        let after = ring.totalWritten
        capture.start()
        XCTAssertEqual(ring.waitForSamples(after + 3200, timeout: 10), .ready)
        capture.stop()
    }

    func testSampleFormatsConvertToScaledMono() {
        func bytes<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }
        func mono(_ format: SampleFormat, _ raw: [UInt8], channels: Int) -> [Float] {
            let frames = raw.count / (format.bytesPerSample * channels)
            var out = [Float](repeating: .nan, count: frames)
            raw.withUnsafeBytes { format.downmix($0.baseAddress!, frames: frames, channels: channels, into: &out) }
            return out
        }
        // Stereo frames (0.5, -0.25) and (-1, 0): means 0.125 and -0.5.
        XCTAssertEqual(mono(.float32, bytes([Float(0.5), -0.25, -1, 0]), channels: 2), [0.125, -0.5])
        XCTAssertEqual(mono(.float64, bytes([0.5, -0.25, -1.0, 0]), channels: 2), [0.125, -0.5])
        XCTAssertEqual(mono(.s16, bytes([Int16(16384), -8192, -32768, 0]), channels: 2), [0.125, -0.5])
        XCTAssertEqual(mono(.s32, bytes([Int32(1 << 30), -(1 << 29), Int32.min, 0]), channels: 2), [0.125, -0.5])
        // S24_LE: the top byte is padding and must be ignored (0xAB here).
        let s24: [UInt32] = [0xAB40_0000, 0xABE0_0000, 0x0080_0000, 0xAB00_0000]
        XCTAssertEqual(mono(.s24, bytes(s24), channels: 2), [0.125, -0.5])
        let packed: [UInt8] = [0x00, 0x00, 0x40, 0x00, 0x00, 0xE0, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00]
        XCTAssertEqual(mono(.s24packed, packed, channels: 2), [0.125, -0.5])
        XCTAssertEqual(mono(.s8, bytes([Int8(64), -32, -128, 0]), channels: 2), [0.125, -0.5])
        XCTAssertEqual(mono(.u8, [192, 96, 0, 128], channels: 2), [0.125, -0.5])
        XCTAssertEqual(mono(.s16, bytes([Int16(16384), -16384, 8192]), channels: 3)[0], 0.25 / 3, accuracy: 1e-7)
    }

    func testALSAErrorNamesCallDeviceAndHint() {
        let error = ALSAError(code: -EBUSY, function: "snd_pcm_open", device: "hw:1", detail: nil)
        XCTAssertTrue(error.description.contains("hw:1"))
        XCTAssertTrue(error.description.contains("snd_pcm_open"))
        XCTAssertTrue(error.description.contains("busy"), error.description)
        XCTAssertTrue(error.description.contains("dsnoop"), error.description)
    }
}

import CALSA
import Dispatch
import Foundation
import Logging
import Synchronization
import SystemSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Captures from an ALSA PCM on its own thread into an `AudioRing` at the target rate:
/// mono (mean of channels), resampled with soxr when the device rate differs.
///
/// The thread survives device failures: it reports `.deviceUnavailable`, retries with
/// exponential backoff and resumes when the device returns (or reports `.fatal` and ends when
/// `exitOnDeviceError` is set). All buffers are allocated when the device is opened; the read
/// loop only waits in poll(2) on the PCM and a stop pipe, so `stop()` is prompt.
public final class ALSACapture: @unchecked Sendable {
    /// The configuration this capture was created with.
    public let config: CaptureConfig
    private let ring: AudioRing
    private let logger: Logger
    private let onStatus: (CaptureStatus) -> Void

    // Shared with other threads.
    private let stopRequested = Atomic<Bool>(false)
    private let overruns = Atomic<Int>(0)
    private let suspends = Atomic<Int>(0)
    private let framesCaptured = Atomic<Int64>(0)
    private let reconnects = Atomic<Int>(0)
    private let gapSamples = Atomic<Int64>(0)
    private let resamplerDelayBits = Atomic<UInt64>(0)
    private let device = Mutex<CaptureStats>(CaptureStats())  // only the setup fields are used
    private let lifecycle = Mutex<Thread?>(nil)
    private let finished = DispatchSemaphore(value: 0)
    private let stopPipe: WakePipe?

    // Capture thread only.
    private var backoff: Double
    /// Monotonic time of the first delivered block, and whether the next block follows lost audio.
    private var epoch: UInt64?
    private var resync = false
    private var opens = 0
    // Suspends have their own throttle: folded behind an overrun warning, a suspend would go unreported.
    private let overrunWarnings = LogThrottle(), suspendWarnings = LogThrottle(), retryErrors = LogThrottle()

    /// Prepares a capture; nothing is opened until `start()`. `onStatus` runs on the capture
    /// thread and must return quickly.
    public init(config: CaptureConfig, ring: AudioRing, logger: Logger, onStatus: @escaping (CaptureStatus) -> Void) {
        self.config = config
        self.ring = ring
        self.logger = logger
        self.onStatus = onStatus
        backoff = config.retryInitial
        do {
            stopPipe = try WakePipe()
        } catch {
            // Without the pipe stop() still works, only less promptly (poll timeouts).
            Logger(label: logger.label).error("audio capture: pipe failed: \(error); stop() may take up to 1 s")
            stopPipe = nil
        }
    }

    deinit { stop() }

    /// Counters and the negotiated device setup.
    public var stats: CaptureStats {
        var stats = device.withLock { $0 }
        stats.overruns = overruns.load(ordering: .relaxed)
        stats.suspends = suspends.load(ordering: .relaxed)
        stats.framesCaptured = framesCaptured.load(ordering: .relaxed)
        stats.reconnects = reconnects.load(ordering: .relaxed)
        stats.gapSeconds = Double(gapSamples.load(ordering: .relaxed)) / Double(config.targetRate)
        stats.resamplerDelaySamples = Double(bitPattern: resamplerDelayBits.load(ordering: .relaxed))
        return stats
    }

    /// Starts the capture thread; does nothing if it is already started (call `stop()` first,
    /// also after a `.fatal` status).
    public func start() {
        lifecycle.withLock { thread in
            guard thread == nil else { return }
            drainStopPipe()
            stopRequested.store(false, ordering: .sequentiallyConsistent)
            backoff = config.retryInitial
            opens = 0
            epoch = nil
            thread = startThread(named: "alsa-capture", signalling: finished) { [self] in run() }
        }
    }

    /// Stops capture and joins the thread (promptly, even mid-read). Emits `.stopped`.
    /// Safe to call repeatedly; from the status callback it only requests the stop.
    public func stop() {
        let thread: Thread? = lifecycle.withLock { thread in
            defer { if Thread.current != thread { thread = nil } }
            return thread
        }
        guard let thread else { return }
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        stopPipe?.wake()
        if Thread.current != thread { finished.wait() }
    }

    // MARK: Capture thread

    private var shouldStop: Bool { stopRequested.load(ordering: .relaxed) }

    private func run() {
        // alsa-lib's messages on this thread go to our log and into error details, not stderr.
        _ = snd_lib_error_set_local(alsaMessageHandler)
        defer { _ = snd_lib_error_set_local(nil) }

        while !shouldStop {
            do {
                let stream = try PCMStream(config: config, stopFD: stopPipe?.readFD ?? -1)
                defer { publish(nil) }
                opens += 1
                if opens > 1 {
                    reconnects.add(1, ordering: .relaxed)
                    resync = true
                }
                publish(stream)
                logger.info("audio capture: \(stream.summary)")
                onStatus(.running(device: config.device, rate: stream.rate, format: stream.format.rawValue, channels: stream.channels))
                try pump(stream)
            } catch let error as ALSAError {
                if shouldStop { break }
                if config.exitOnDeviceError {
                    logger.critical("audio capture: \(error); exiting as configured (exitOnDeviceError)")
                    onStatus(.fatal(error))
                    return
                }
                let delay = backoff
                retryErrors.record { folded in logger.error("audio capture: \(error); retrying in \(delay) s\(LogThrottle.suffix(folded))") }
                onStatus(.deviceUnavailable(device: config.device, error: error, retryIn: delay))
                backoff = min(backoff * 2, config.retryMax)
                if waitForStop(seconds: delay) { break }
            } catch {
                // PCMStream and pump only throw ALSAError.
                preconditionFailure("unexpected capture error \(error)")
            }
        }
        logger.info("audio capture: stopped")
        onStatus(.stopped)
    }

    /// Reads periods until stop (returns) or a device error (throws).
    private func pump(_ stream: PCMStream) throws {
        let pcm = stream.pcm
        var pacedFrames: Int64 = 0
        var streamFrames = 0
        let paceStart = DispatchTime.now().uptimeNanoseconds
        let bufferNanoseconds = UInt64(stream.bufferFrames) * 1_000_000_000 / UInt64(max(1, stream.rate))
        while !shouldStop {
            let waitStart = DispatchTime.now().uptimeNanoseconds
            guard try stream.waitUntilReadable() else { return }  // stop pipe fired
            // A device that stalls and then carries on reports no error, yet the stall's audio is lost all the same:
            // no audio for longer than the whole buffer means a stall, so check for a gap as after an overrun.
            if DispatchTime.now().uptimeNanoseconds - waitStart > bufferNanoseconds { resync = true }
            // Plugins such as `file` may report frames they never wrote (infile EOF or short
            // read): zero first so those read as silence, not as a repeat of older audio.
            stream.raw.initializeMemory(as: UInt8.self, repeating: 0, count: stream.rawBytes)
            let got = retryingEINTR { Int(snd_pcm_readi(pcm, stream.raw, snd_pcm_uframes_t(stream.periodFrames))) }
            if got == -Int(EAGAIN) { continue }
            if got < 0 {
                try recover(stream, code: Int32(got))
                continue
            }
            if got == 0 { continue }
            deliver(stream, frames: got)
            streamFrames += got
            if streamFrames >= stream.rate * 10 {
                backoff = config.retryInitial  // worked for 10 s: the next failure retries quickly again
            }

            if config.paceToRealTime {
                pacedFrames += Int64(got)
                let due = paceStart + UInt64(Double(pacedFrames) * 1e9 / Double(stream.rate))
                let now = DispatchTime.now().uptimeNanoseconds
                if due > now, waitForStop(seconds: Double(due - now) / 1e9) { return }
            }
        }
    }

    /// Converts, resamples and writes one block to the ring. No allocation.
    private func deliver(_ stream: PCMStream, frames: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        if epoch == nil { epoch = now }
        if resync {
            resync = false
            fillGap(now: now, pending: Double(frames) * Double(config.targetRate) / Double(stream.rate) + (stream.resampler?.delay ?? 0))
        }
        stream.format.downmix(stream.raw, frames: frames, channels: stream.channels, into: stream.mono)
        framesCaptured.add(Int64(frames), ordering: .relaxed)
        let mono = UnsafeBufferPointer(start: stream.mono, count: frames)
        guard let resampler = stream.resampler else {
            ring.write(mono)
            return
        }
        let output = UnsafeMutableBufferPointer(start: stream.resampled, count: stream.resampledCapacity)
        var offset = 0
        while offset < frames {  // one pass in practice (output sized by maxOutputCount)
            // soxr_process fails only on invalid arguments, which these are not.
            guard let result = try? resampler.process(input: UnsafeBufferPointer(rebasing: mono[offset...]), output: output),
                  result.consumed + result.produced > 0 else { break }
            ring.write(UnsafeBufferPointer(rebasing: output[0..<result.produced]))
            offset += result.consumed
        }
        resamplerDelayBits.store(resampler.delay.bitPattern, ordering: .relaxed)
    }

    /// After lost audio (an overrun, a suspend, a reconnect), writes the missing stretch as silence, so that the
    /// stream clock (samples written) stays the wall clock since the first sample. Silence rather than skipping the
    /// windows across the gap: the scheduler's windows stay hop-aligned, `start`/`end` stay true seconds, and a model
    /// window over silence reports nothing. `pending` is what this block will add.
    private func fillGap(now: UInt64, pending: Double) {
        guard let epoch else { return }
        let rate = Double(config.targetRate)
        let expected = Int64(Double(now - epoch) / 1e9 * rate)
        let gap = expected - ring.totalWritten - Int64(pending)
        guard Double(gap) > 0.05 * rate else { return }  // under a period or two is scheduling jitter, not loss
        ring.writeSilence(count: gap)
        gapSamples.add(gap, ordering: .relaxed)
        logger.info("audio capture: filled a \(String(format: "%.2f", Double(gap) / rate)) s gap with silence after lost audio")
    }

    /// Recovers from overrun and suspend; throws for anything else (the device is reopened).
    private func recover(_ stream: PCMStream, code: Int32) throws {
        resync = true
        switch -code {
        case EPIPE:
            let count = overruns.add(1, ordering: .relaxed).newValue
            overrunWarnings.record { folded in
                logger.warning("audio capture: overrun on '\(config.device)' (\(count) so far): audio was lost; is the system overloaded?\(LogThrottle.suffix(folded))")
            }
            try stream.check(snd_pcm_prepare(stream.pcm), "snd_pcm_prepare")
            try stream.check(snd_pcm_start(stream.pcm), "snd_pcm_start")
        case ESTRPIPE:
            suspends.add(1, ordering: .relaxed)
            suspendWarnings.record { folded in logger.warning("audio capture: '\(config.device)' was suspended; resuming\(LogThrottle.suffix(folded))") }
            while true {
                let result = snd_pcm_resume(stream.pcm)
                if result == -EAGAIN {
                    if waitForStop(seconds: 0.1) { return }
                    continue
                }
                if result < 0 { try stream.check(snd_pcm_prepare(stream.pcm), "snd_pcm_prepare") }
                break
            }
            if snd_pcm_state(stream.pcm) != SND_PCM_STATE_RUNNING {
                try stream.check(snd_pcm_start(stream.pcm), "snd_pcm_start")
            }
        default:
            throw stream.error(code, "snd_pcm_readi")
        }
    }

    /// Sleeps up to `seconds`; true if stop was requested meanwhile.
    private func waitForStop(seconds: Double) -> Bool {
        guard let stopPipe else {
            usleep(UInt32(min(seconds, 1) * 1e6))
            return shouldStop
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1e9)
        while !shouldStop {
            let now = DispatchTime.now().uptimeNanoseconds
            if now >= deadline { break }
            let ms = Int32(min((deadline - now + 999_999) / 1_000_000, 1000))
            _ = stopPipe.wait(milliseconds: ms)
        }
        return shouldStop
    }

    private func drainStopPipe() { stopPipe?.drain() }

    private func publish(_ stream: PCMStream?) {
        device.withLock { stats in
            stats.isRunning = stream != nil
            stats.deviceRate = stream?.rate
            stats.format = stream?.format.rawValue
            stats.channels = stream?.channels
            stats.periodFrames = stream?.periodFrames
            stats.bufferFrames = stream?.bufferFrames
        }
        if stream == nil { resamplerDelayBits.store(0, ordering: .relaxed) }
    }
}

// MARK: - One open PCM

/// An open, configured capture PCM with every buffer its read loop needs (allocated once here).
private final class PCMStream {
    let pcm: OpaquePointer
    let name: String
    let format: SampleFormat
    let channels: Int
    let rate: Int
    let periodFrames: Int
    let bufferFrames: Int
    let raw: UnsafeMutableRawPointer
    let rawBytes: Int
    let mono: UnsafeMutablePointer<Float>
    let resampler: Resampler?
    let resampled: UnsafeMutablePointer<Float>
    let resampledCapacity: Int
    private let pollFDs: UnsafeMutablePointer<pollfd>
    private let pcmFDCount: Int
    private let pollTimeoutMs: Int32

    /// Opens and configures `config.device`, then starts the stream.
    init(config: CaptureConfig, stopFD: Int32) throws {
        name = config.device
        var handle: OpaquePointer?
        let opened = snd_pcm_open(&handle, config.device, SND_PCM_STREAM_CAPTURE, SND_PCM_NONBLOCK)
        guard opened >= 0, let handle else {
            throw ALSAError(code: opened, function: "snd_pcm_open", device: config.device, detail: takeALSAMessage())
        }
        pcm = handle
        do {
            (format, channels, rate, periodFrames, bufferFrames) = try Self.configure(handle, config)
        } catch {
            snd_pcm_close(handle)
            throw error
        }

        rawBytes = periodFrames * channels * format.bytesPerSample
        raw = .allocate(byteCount: rawBytes, alignment: 16)
        mono = .allocate(capacity: periodFrames)
        if rate != config.targetRate, let converter = try? Resampler(inputRate: rate, outputRate: config.targetRate) {
            resampler = converter
            resampledCapacity = converter.maxOutputCount(forInput: periodFrames)
        } else {
            resampler = nil
            resampledCapacity = 1
        }
        resampled = .allocate(capacity: resampledCapacity)

        pcmFDCount = Int(max(0, snd_pcm_poll_descriptors_count(handle)))
        pollFDs = .allocate(capacity: pcmFDCount + 1)
        pollFDs.initialize(repeating: pollfd(fd: -1, events: 0, revents: 0), count: pcmFDCount + 1)
        pollFDs[pcmFDCount] = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
        // No audio for this long means the device stalled: reopen it.
        pollTimeoutMs = Int32(max(5000, 4 * bufferFrames * 1000 / max(1, rate)))

        if rate != config.targetRate && resampler == nil {
            throw error(-EINVAL, "soxr_create", detail: "cannot resample \(rate) Hz to \(config.targetRate) Hz")
        }
        try check(snd_pcm_poll_descriptors(handle, pollFDs, UInt32(pcmFDCount)), "snd_pcm_poll_descriptors")
        try check(snd_pcm_start(handle), "snd_pcm_start")
    }

    deinit {
        snd_pcm_close(pcm)
        raw.deallocate()
        mono.deallocate()
        resampled.deallocate()
        pollFDs.deallocate()
    }

    var summary: String {
        var text = "'\(name)' at \(rate) Hz, \(format.rawValue), \(channels) channel(s), period \(periodFrames) frames"
        text += " (\(periodFrames * 1000 / max(1, rate)) ms), buffer \(bufferFrames) frames"
        if let resampler {
            text += "; resampling to \(resampler.outputRate) Hz with soxr HQ"
        }
        return text
    }

    func error(_ code: Int32, _ function: String, detail: String? = nil) -> ALSAError {
        ALSAError(code: code, function: function, device: name, detail: detail ?? takeALSAMessage())
    }

    func check(_ result: Int32, _ function: String) throws {
        if result < 0 { throw error(result, function) }
    }

    /// Waits until the PCM has a period to read. False when the stop pipe fired.
    /// Handles device states reported through poll; throws when the device is gone or stalled.
    func waitUntilReadable() throws -> Bool {
        while true {
            let ready = retryingEINTR { negativeErrno(Int(poll(pollFDs, nfds_t(pcmFDCount + 1), pollTimeoutMs))) }
            if ready < 0 { throw error(Int32(ready), "poll") }
            if pollFDs[pcmFDCount].revents != 0 { return false }
            if ready == 0 {
                throw error(-EIO, "poll", detail: "no audio for \(pollTimeoutMs) ms: the device stalled")
            }
            var revents: UInt16 = 0
            try check(snd_pcm_poll_descriptors_revents(pcm, pollFDs, UInt32(pcmFDCount), &revents), "snd_pcm_poll_descriptors_revents")
            if revents & UInt16(POLLERR) != 0 {
                // Let readi report the state as an error code (-EPIPE, -ESTRPIPE, -ENODEV).
                switch snd_pcm_state(pcm) {
                case SND_PCM_STATE_DISCONNECTED: throw error(-ENODEV, "snd_pcm_state")
                default: return true
                }
            }
            if revents & UInt16(POLLIN) != 0 { return true }
        }
    }

    /// Negotiates access, format, channels, rate, period and buffer; returns the result.
    private static func configure(_ pcm: OpaquePointer, _ config: CaptureConfig) throws
        -> (SampleFormat, Int, Int, Int, Int) {
        let device = config.device
        func check(_ result: Int32, _ function: String, _ detail: String? = nil) throws {
            if result < 0 {
                throw ALSAError(code: result, function: function, device: device, detail: detail ?? takeALSAMessage())
            }
        }
        var hwOptional: OpaquePointer?
        try check(snd_pcm_hw_params_malloc(&hwOptional), "snd_pcm_hw_params_malloc")
        guard let hw = hwOptional else { throw ALSAError(code: -ENOMEM, function: "snd_pcm_hw_params_malloc", device: device) }
        defer { snd_pcm_hw_params_free(hw) }

        try check(snd_pcm_hw_params_any(pcm, hw), "snd_pcm_hw_params_any")
        try check(snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED), "snd_pcm_hw_params_set_access")
        // We resample with soxr; alsa-lib's plug resampler is lower quality.
        _ = snd_pcm_hw_params_set_rate_resample(pcm, hw, 0)

        let candidates = config.format.map { [$0] } ?? SampleFormat.allCases
        guard let format = candidates.first(where: { snd_pcm_hw_params_test_format(pcm, hw, $0.alsaFormat) == 0 }) else {
            let names = candidates.map(\.rawValue).joined(separator: ", ")
            throw ALSAError(code: -EINVAL, function: "snd_pcm_hw_params_set_format", device: device,
                            detail: "the device offers none of \(names)")
        }
        try check(snd_pcm_hw_params_set_format(pcm, hw, format.alsaFormat), "snd_pcm_hw_params_set_format")

        var channels: UInt32 = 0
        if let wanted = config.channels {
            channels = UInt32(max(1, wanted))
            try check(snd_pcm_hw_params_set_channels(pcm, hw, channels), "snd_pcm_hw_params_set_channels",
                      "\(channels) channel(s) not supported")
        } else {
            try check(snd_pcm_hw_params_get_channels_min(hw, &channels), "snd_pcm_hw_params_get_channels_min")
            try check(snd_pcm_hw_params_set_channels(pcm, hw, channels), "snd_pcm_hw_params_set_channels")
        }

        var rate = UInt32(config.captureRate ?? config.targetRate)
        var dir: Int32 = 0
        if config.captureRate == nil, snd_pcm_hw_params_test_rate(pcm, hw, rate, 0) == 0 {
            try check(snd_pcm_hw_params_set_rate(pcm, hw, rate, 0), "snd_pcm_hw_params_set_rate")
        } else {
            try check(snd_pcm_hw_params_set_rate_near(pcm, hw, &rate, &dir), "snd_pcm_hw_params_set_rate_near")
        }

        var periodTime = UInt32(max(1, config.periodMilliseconds) * 1000)
        try check(snd_pcm_hw_params_set_period_time_near(pcm, hw, &periodTime, &dir), "snd_pcm_hw_params_set_period_time_near")
        var bufferTime = periodTime * UInt32(max(2, config.periodsPerBuffer))
        try check(snd_pcm_hw_params_set_buffer_time_near(pcm, hw, &bufferTime, &dir), "snd_pcm_hw_params_set_buffer_time_near")
        try check(snd_pcm_hw_params(pcm, hw), "snd_pcm_hw_params")

        var periodFrames: snd_pcm_uframes_t = 0
        var bufferFrames: snd_pcm_uframes_t = 0
        try check(snd_pcm_hw_params_get_rate(hw, &rate, &dir), "snd_pcm_hw_params_get_rate")
        try check(snd_pcm_hw_params_get_period_size(hw, &periodFrames, &dir), "snd_pcm_hw_params_get_period_size")
        try check(snd_pcm_hw_params_get_buffer_size(hw, &bufferFrames), "snd_pcm_hw_params_get_buffer_size")

        var swOptional: OpaquePointer?
        try check(snd_pcm_sw_params_malloc(&swOptional), "snd_pcm_sw_params_malloc")
        guard let sw = swOptional else { throw ALSAError(code: -ENOMEM, function: "snd_pcm_sw_params_malloc", device: device) }
        defer { snd_pcm_sw_params_free(sw) }
        try check(snd_pcm_sw_params_current(pcm, sw), "snd_pcm_sw_params_current")
        try check(snd_pcm_sw_params_set_avail_min(pcm, sw, periodFrames), "snd_pcm_sw_params_set_avail_min")
        try check(snd_pcm_sw_params(pcm, sw), "snd_pcm_sw_params")

        return (format, Int(channels), Int(rate), Int(periodFrames), Int(bufferFrames))
    }
}

// MARK: - alsa-lib messages

/// Key of the last alsa-lib message in the capture thread's dictionary.
private let alsaMessageKey = "htsatd.audio.lastALSAMessage"

/// Receives alsa-lib's error messages for the capture thread (instead of stderr) and keeps
/// the last one to attach to the next `ALSAError`.
private let alsaMessageHandler: snd_local_error_handler_t = { _, _, function, err, format, args in
    guard let format else { return }
    var buffer = [CChar](repeating: 0, count: 512)
    guard let args else { return }
    _ = vsnprintf(&buffer, buffer.count, format, args)
    var text = String(cString: buffer)
    if let function { text = "\(String(cString: function)): \(text)" }
    if err != 0 { text += ": \(String(cString: snd_strerror(err)))" }
    Thread.current.threadDictionary[alsaMessageKey] = text
}

/// The last alsa-lib message on this thread, cleared.
private func takeALSAMessage() -> String? {
    let dictionary = Thread.current.threadDictionary
    let text = dictionary[alsaMessageKey] as? String
    dictionary.removeObject(forKey: alsaMessageKey)
    return text
}

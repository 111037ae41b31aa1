import Clips
import Detection
import Foundation
import HTSAT
import Logging
import Sinks

/// Event clips: the writer thread, started before the engine and stopped after it, so that the final stop lines'
/// clips are written (within the shutdown bound: the audio they need is already buffered).
final class ClipService: Service {
    let name = "clips"
    let writer: ClipWriter

    /// Nil when clips are off; throws when the clip directory is unusable.
    init?(config: DaemonConfig, loaded: LoadedModel, logger: Logger) throws {
        guard let settings = config.clips.settings else { return nil }
        let signal = loaded.model.config.signal
        let clipSeconds = Double(signal.clipSamples) / Double(signal.sampleRate)
        let settle = config.settleSeconds ?? Detector.defaultSettle(clipSeconds: clipSeconds, hopSeconds: config.hopSeconds)
        let lag = ClipWriter.lagSeconds(settle: settle, hop: config.hopSeconds, events: loaded.specs.map(\.settings))
        var logMel: ClipLogMel?
        if settings.spectrogram {
            let extractor = try LogMelExtractor(model: loaded.model)
            logMel = { samples in (extractor.mels, extractor(samples)) }
        }
        writer = try ClipWriter(settings: settings, sampleRate: signal.sampleRate, lagSeconds: lag,
                                hopSeconds: config.hopSeconds, logMel: logMel, logger: logger)
    }

    /// The audio tap for the scheduler; file mode waits for the writer instead of losing clips.
    func tap(fileMode: Bool) -> (UnsafeBufferPointer<Float>, Int64) -> Void {
        { [writer] samples, at in writer.feed(samples, at: at, wait: fileMode) }
    }

    /// The event's line, telling the writer about it; a stop line names its clip.
    func line(_ event: DetectionEvent, clock: (Double) -> Date) -> EventLine {
        var line = EventLine(event, clock: clock)
        switch event.kind {
        case .start: writer.started(event, at: clock(LineEncoder.rounded(event.start)))
        case .stop:
            if let ref = writer.stopped(event) { (line.clip, line.clipTruncated) = (ref.path, ref.truncated) }
        }
        return line
    }

    func start() { writer.start() }
    func stop() { writer.finish() }
}

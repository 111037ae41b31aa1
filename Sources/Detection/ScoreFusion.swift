/// Where an inference window's framewise outputs sit in the stream.
public struct WindowGeometry: Equatable, Sendable {
    /// Stream sample rate (Hz).
    public var sampleRate: Int
    /// Samples per inference window (the model's clip).
    public var clipSamples: Int
    /// STFT hop of the model's front end, in samples.
    public var stftHop: Int
    /// Frames in the framewise output (1024 for HTS-AT).
    public var frames: Int

    /// Creates a geometry.
    public init(sampleRate: Int, clipSamples: Int, stftHop: Int, frames: Int) {
        self.sampleRate = sampleRate
        self.clipSamples = clipSamples
        self.stftHop = stftHop
        self.frames = frames
    }

    /// STFT frames of one clip (centred STFT): T = clip / hop + 1.
    public var stftFrames: Int { clipSamples / stftHop + 1 }

    /// Samples from the window start to framewise frame `i` (fractional allowed).
    ///
    /// The model bicubic-stretches its T STFT frames onto F frames with align_corners=True, so frame i
    /// is STFT frame i (T-1)/(F-1), and STFT frame j is centred on sample j * hop.
    public func frameOffset(_ i: Double) -> Double {
        i * Double(stftFrames - 1) * Double(stftHop) / Double(frames - 1)
    }

    /// Why this geometry cannot be used, or nil.
    func problem() -> String? {
        if sampleRate <= 0 { return "sample rate \(sampleRate) must be positive" }
        if stftHop <= 0 || clipSamples < stftHop { return "clip \(clipSamples) and STFT hop \(stftHop) must be positive with clip >= hop" }
        if frames < 2 { return "framewise output needs at least 2 frames, got \(frames)" }
        return nil
    }
}

/// Averages the framewise scores of overlapping windows on a fixed global time grid, for the classes in use.
///
/// Cell k covers stream samples [k c, (k+1) c), c = `cellSamples`. A window contributes to every cell whose centre lies
/// inside it, by linear interpolation of its framewise scores at that centre, so each window counts once per cell.
/// Cells are handed out (in order, exactly once) when they lie `settle` behind the newest window end, averaged over the
/// windows seen until then; windows arriving later no longer change them. With `settle >= clip - hop` every cell gets
/// all the windows that will ever cover it (full averaging, about a clip of latency); see `Detector.defaultSettle(clipSeconds:hopSeconds:)`.
///
/// Start-up: a window ending before the first full clip (`end < clip`) is left-zero-padded by the scheduler. Its padded
/// part lies at negative stream time, where there are no cells, so it never contributes to fusion.
///
/// Memory is a ring of about clip / c cells; nothing allocates after `init`.
public final class ScoreFusion {
    /// The window geometry.
    public let geometry: WindowGeometry
    /// Model output rows fused, in this order.
    public let classIndices: [Int]
    /// Number of model outputs per frame.
    public let classes: Int
    /// Grid cell length in samples.
    public let cellSamples: Int
    /// Samples a cell must lie behind the newest window end before it is handed out.
    public let settleSamples: Int
    /// Samples a cell must lie behind the newest window end before its provisional average is read out for early
    /// onsets (at most `settleSamples`).
    public let onsetSettleSamples: Int

    private let capacity: Int
    private var sums: [Float]
    private var counts: [Int32]
    private var averaged: [Float]
    /// The next cell to hand out; cells before it are gone.
    public private(set) var nextCell: Int64 = 0
    /// The next cell to read out early.
    private var nextEarlyCell: Int64 = 0
    /// End sample of the newest window added, or nil before the first.
    public private(set) var newestEnd: Int64? = nil

    /// Creates a fusion grid; `cellSeconds`, `settleSeconds` and `onsetSettleSeconds` (default: `settleSeconds`,
    /// i.e. no early read-out) are rounded to samples.
    public init(geometry: WindowGeometry, classes: Int, classIndices: [Int], cellSeconds: Double, settleSeconds: Double,
                onsetSettleSeconds: Double? = nil) throws {
        if let problem = geometry.problem() { throw DetectorError.badGeometry(problem) }
        guard cellSeconds.isFinite, cellSeconds > 0, cellSeconds * Double(geometry.sampleRate) >= 1,
              cellSeconds * Double(geometry.sampleRate) <= Double(geometry.clipSamples) else {
            throw DetectorError.badCell(cellSeconds)
        }
        let clipSeconds = Double(geometry.clipSamples) / Double(geometry.sampleRate)
        guard settleSeconds.isFinite, settleSeconds >= 0, settleSeconds <= clipSeconds else {
            throw DetectorError.badSettle(settleSeconds, clipSeconds: clipSeconds)
        }
        let onsetSettle = onsetSettleSeconds ?? settleSeconds
        guard onsetSettle.isFinite, onsetSettle >= 0, onsetSettle <= settleSeconds else {
            throw DetectorError.badOnsetSettle(onsetSettle, settle: settleSeconds)
        }
        for index in classIndices where index < 0 || index >= classes {
            throw DetectorError.classOutOfRange(index: index, classes: classes)
        }
        self.geometry = geometry
        self.classes = classes
        self.classIndices = classIndices
        self.cellSamples = Int((cellSeconds * Double(geometry.sampleRate)).rounded())
        self.settleSamples = Int((settleSeconds * Double(geometry.sampleRate)).rounded())
        self.onsetSettleSamples = min(settleSamples, Int((onsetSettle * Double(geometry.sampleRate)).rounded()))
        // Pending cells span at most one clip (plus rounding at both ends).
        self.capacity = geometry.clipSamples / cellSamples + 4
        self.sums = [Float](repeating: 0, count: capacity * classIndices.count)
        self.counts = [Int32](repeating: 0, count: capacity)
        self.averaged = [Float](repeating: 0, count: classIndices.count)
    }

    /// Stream seconds at the start of cell `k`.
    public func cellStartSeconds(_ k: Int64) -> Double {
        Double(k) * Double(cellSamples) / Double(geometry.sampleRate)
    }

    /// Adds a window ending at stream sample `windowEnd` (exclusive) with its frame-major `frames x classes` scores, and
    /// hands out the cells that are now settled: `emit(k, scores)` with scores parallel to `classIndices` (valid only
    /// during the call) and the number of windows averaged (0 for a gap no window covered). Window ends must increase;
    /// others are ignored and false is returned.
    /// `early(k, scores)`, when given, receives each cell once as soon as it lies `onsetSettle` behind the newest end,
    /// with the average of the windows seen so far (before `emit` hands it out for good).
    @discardableResult
    public func add(windowEnd: Int64, framewise: UnsafeBufferPointer<Float>,
                    early: (Int64, UnsafeBufferPointer<Float>) -> Void = { _, _ in },
                    emit: (Int64, UnsafeBufferPointer<Float>, Int) -> Void) -> Bool {
        precondition(framewise.count == geometry.frames * classes, "framewise must be frames x classes")
        if let newestEnd, windowEnd <= newestEnd { return false }
        newestEnd = windowEnd
        let cell = Double(cellSamples)
        let windowStart = Double(windowEnd - Int64(geometry.clipSamples))

        // Cells whose centre precedes this window can get nothing more from it or any later window.
        while Double(nextCell) * cell + cell / 2 < windowStart {
            emitNext(emit)
        }

        // Add this window at every pending cell centre it covers (never at negative time: the zero padding).
        let framesPerSample = Double(geometry.frames - 1) / geometry.frameOffset(Double(geometry.frames - 1))
        let lastFrame = geometry.frames - 1
        var k = nextCell
        let used = classIndices.count
        while Double(k) * cell + cell / 2 <= Double(windowEnd) {
            let position = (Double(k) * cell + cell / 2 - windowStart) * framesPerSample
            if position >= 0 && position <= Double(lastFrame) {
                let i0 = min(Int(position), lastFrame)
                let i1 = min(i0 + 1, lastFrame)
                let w1 = Float(position - Double(i0))
                let w0 = 1 - w1
                let slot = Int(k % Int64(capacity))
                let row0 = i0 * classes, row1 = i1 * classes
                for (j, c) in classIndices.enumerated() {
                    sums[slot * used + j] += w0 * framewise[row0 + c] + w1 * framewise[row1 + c]
                }
                counts[slot] += 1
            }
            k += 1
        }

        // Provisional read-out for early onsets, then hand out what lies `settle` behind the newest end.
        nextEarlyCell = max(nextEarlyCell, nextCell)
        while (nextEarlyCell + 1) * Int64(cellSamples) <= windowEnd - Int64(onsetSettleSamples) {
            // Without a lag between the read-outs the early one would only repeat the settled one.
            if onsetSettleSamples < settleSamples {
                fillAverage(nextEarlyCell)
                averaged.withUnsafeBufferPointer { early(nextEarlyCell, $0) }
            }
            nextEarlyCell += 1
        }
        while (nextCell + 1) * Int64(cellSamples) <= windowEnd - Int64(settleSamples) {
            emitNext(emit)
        }
        return true
    }

    /// Hands out every remaining cell that starts before the newest window end (end of input or shutdown).
    public func flush(emit: (Int64, UnsafeBufferPointer<Float>, Int) -> Void) {
        guard let newestEnd else { return }
        while nextCell * Int64(cellSamples) < newestEnd {
            emitNext(emit)
        }
    }

    /// Puts cell `k`'s average so far into `averaged`; returns how many windows it averages.
    @discardableResult
    private func fillAverage(_ k: Int64) -> Int32 {
        let slot = Int(k % Int64(capacity))
        let used = classIndices.count
        let n = counts[slot]
        let scale: Float = n > 0 ? 1 / Float(n) : 0
        for j in 0..<used { averaged[j] = sums[slot * used + j] * scale }
        return n
    }

    private func emitNext(_ emit: (Int64, UnsafeBufferPointer<Float>, Int) -> Void) {
        let slot = Int(nextCell % Int64(capacity))
        let used = classIndices.count
        let n = fillAverage(nextCell)
        // The slot is reused for cell nextCell + capacity.
        for j in 0..<used { sums[slot * used + j] = 0 }
        counts[slot] = 0
        let cell = nextCell
        nextCell += 1
        averaged.withUnsafeBufferPointer { emit(cell, $0, Int(n)) }
    }
}

import Dispatch
import Synchronization

/// Fixed-capacity ring of mono samples carrying audio from one capture thread to its readers.
///
/// Samples are addressed by absolute index (0 = first sample ever written). The single writer
/// never blocks and never allocates: when the ring is full it overwrites the oldest samples.
/// Readers copy a span ending at an absolute index and learn whether it was still intact.
///
/// Lock-free by a seqlock scheme: the writer announces how far it is about to write
/// (`reserved`), copies, then publishes (`written`). A reader copies and afterwards checks
/// against `reserved` that the writer did not reach into the span meanwhile; if it did, the
/// copy is discarded and `read` returns false. (The copy itself races benignly with the
/// writer; the check rejects any torn result.)
public final class AudioRing: @unchecked Sendable {
    /// Result of `waitForSamples`.
    public enum WaitResult: Equatable, Sendable {
        case ready, timedOut, closed
    }

    /// How many of the most recent samples the ring retains.
    public let capacity: Int

    private let storage: UnsafeMutablePointer<Float>
    private let written = Atomic<Int64>(0)   // published: samples [0, written) have been stored
    private let reserved = Atomic<Int64>(0)  // the writer may be storing samples below this
    private let closedFlag = Atomic<Bool>(false)
    private let silenceEnd = Atomic<Int64>(0)
    private let waiters = Atomic<Int>(0)
    private let wakeup = DispatchSemaphore(value: 0)

    /// Creates a ring that keeps the last `capacity` samples (must be > 0).
    public init(capacity: Int) {
        precondition(capacity > 0, "AudioRing capacity must be positive")
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0, count: capacity)
    }

    deinit {
        storage.deallocate()
    }

    /// Absolute count of samples ever written.
    public var totalWritten: Int64 { written.load(ordering: .acquiring) }

    /// Oldest absolute index still held (equals `totalWritten` when nothing is held yet).
    public var oldestAvailable: Int64 { max(0, totalWritten - Int64(capacity)) }

    /// Where the latest `writeSilence` ended (absolute index; 0 if none): audio before it may be filled-in silence.
    public var silenceFilledUpTo: Int64 { silenceEnd.load(ordering: .acquiring) }

    /// True once `close()` was called.
    public var isClosed: Bool { closedFlag.load(ordering: .acquiring) }

    // MARK: Writer (one thread only)

    /// Appends samples, overwriting the oldest when full. Never blocks, never allocates.
    public func write(_ samples: UnsafeBufferPointer<Float>) {
        guard let base = samples.baseAddress, !samples.isEmpty else { return }
        let start = written.load(ordering: .relaxed)  // only this thread writes it
        let end = start + Int64(samples.count)
        reserved.store(end, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)  // readers that see our stores also see `reserved`

        // Only the last `capacity` samples of a long write can survive.
        let keep = min(samples.count, capacity)
        var src = base + (samples.count - keep)
        var pos = Int((end - Int64(keep)) % Int64(capacity))
        var left = keep
        while left > 0 {
            let n = min(left, capacity - pos)
            (storage + pos).update(from: src, count: n)
            src += n
            left -= n
            pos = 0
        }
        written.store(end, ordering: .sequentiallyConsistent)
        if waiters.load(ordering: .sequentiallyConsistent) > 0 {
            wakeup.signal()
        }
    }

    /// Appends `count` zeros (a capture gap filled with silence), zeroing at most one ring's worth.
    public func writeSilence(count: Int64) {
        guard count > 0 else { return }
        let start = written.load(ordering: .relaxed)
        let end = start + count
        reserved.store(end, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        let keep = Int(min(count, Int64(capacity)))
        var pos = Int((end - Int64(keep)) % Int64(capacity))
        var left = keep
        while left > 0 {
            let n = min(left, capacity - pos)
            (storage + pos).update(repeating: 0, count: n)
            left -= n
            pos = 0
        }
        silenceEnd.store(end, ordering: .releasing)  // before `written`: a reader that sees the samples sees this
        written.store(end, ordering: .sequentiallyConsistent)
        if waiters.load(ordering: .sequentiallyConsistent) > 0 { wakeup.signal() }
    }

    /// Convenience for tests and offline use.
    public func write(_ samples: [Float]) {
        samples.withUnsafeBufferPointer { write($0) }
    }

    /// Wakes any waiting reader for good: waits return `.closed` from now on.
    public func close() {
        closedFlag.store(true, ordering: .sequentiallyConsistent)
        // One signal per current waiter; extra signals only cause harmless re-checks.
        for _ in 0..<max(1, waiters.load(ordering: .sequentiallyConsistent)) {
            wakeup.signal()
        }
    }

    // MARK: Readers

    /// Copies the `count` samples ending at absolute index `end` (exclusive) into `buffer`.
    /// Returns false, leaving the caller to decide, when they are not yet written, already
    /// overwritten, or `count` exceeds `capacity` or `buffer`.
    public func read(endingAt end: Int64, count: Int, into buffer: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard count > 0 else { return count == 0 && end >= 0 && end <= totalWritten }
        guard count <= capacity, count <= buffer.count, let dst = buffer.baseAddress else { return false }
        let start = end - Int64(count)
        guard start >= 0, end <= written.load(ordering: .acquiring) else { return false }
        guard start >= reserved.load(ordering: .acquiring) - Int64(capacity) else { return false }

        var pos = Int(start % Int64(capacity))
        var out = dst
        var left = count
        while left > 0 {
            let n = min(left, capacity - pos)
            out.update(from: storage + pos, count: n)
            out += n
            left -= n
            pos = 0
        }
        atomicMemoryFence(ordering: .acquiring)  // the copy above happens before the re-check
        return start >= reserved.load(ordering: .relaxed) - Int64(capacity)
    }

    /// Array form of `read(endingAt:count:into:)`; `buffer` must hold at least `count` samples.
    public func read(endingAt end: Int64, count: Int, into buffer: inout [Float]) -> Bool {
        buffer.withUnsafeMutableBufferPointer { read(endingAt: end, count: count, into: $0) }
    }

    /// Blocks until at least `count` samples have ever been written, the timeout passes, or the
    /// ring is closed.
    public func waitForSamples(_ count: Int64, timeout: Double) -> WaitResult {
        let deadline = DispatchTime.now() + max(0, timeout)
        waiters.add(1, ordering: .sequentiallyConsistent)
        defer { waiters.subtract(1, ordering: .sequentiallyConsistent) }
        while true {
            // Checked after registering as a waiter, so a write between the check and the wait
            // still signals the semaphore (no lost wakeup).
            if closedFlag.load(ordering: .sequentiallyConsistent) { return .closed }
            if written.load(ordering: .sequentiallyConsistent) >= count { return .ready }
            if wakeup.wait(timeout: deadline) == .timedOut {
                if closedFlag.load(ordering: .sequentiallyConsistent) { return .closed }
                return written.load(ordering: .sequentiallyConsistent) >= count ? .ready : .timedOut
            }
        }
    }
}

import CFFTW
import Foundation

/// FFTW's planner is not thread-safe; plans are only made and destroyed under this lock.
private let fftwPlannerLock = NSLock()

/// Power spectrogram of a centred STFT with a periodic Hann window and reflect padding,
/// as torchlibrosa's `Spectrogram(center=True, pad_mode="reflect", power=2)` computes it.
///
/// The official model stores this STFT as Conv1d kernels (DFT x window); an r2c FFT gives the same
/// values. One `power` call at a time per instance (it reuses its FFT buffers).
public final class STFT {
    /// FFT size, also the window length.
    public let nFFT: Int
    /// Hop between frames, in samples.
    public let hopLength: Int
    /// Output bins per frame, `nFFT / 2 + 1`.
    public var bins: Int { nFFT / 2 + 1 }

    private let window: UnsafeMutablePointer<Float>
    private let frame: UnsafeMutablePointer<Float>
    private let spectrum: UnsafeMutablePointer<fftwf_complex>
    private let plan: fftwf_plan

    /// Builds the window and the FFT plan for `nFFT` (even, >= 2) and `hopLength` (>= 1).
    public init(nFFT: Int, hopLength: Int) throws {
        guard nFFT >= 2, nFFT % 2 == 0 else {
            throw FrontEndError.invalidParameter(name: "nFFT", value: nFFT, requirement: "even and at least 2")
        }
        guard hopLength >= 1 else {
            throw FrontEndError.invalidParameter(name: "hopLength", value: hopLength, requirement: "at least 1")
        }
        self.nFFT = nFFT
        self.hopLength = hopLength
        window = .allocate(capacity: nFFT)
        // Periodic Hann (librosa get_window('hann', fftbins=True)), computed in double like numpy.
        for n in 0..<nFFT {
            window[n] = Float(0.5 - 0.5 * cos(2.0 * Double.pi * Double(n) / Double(nFFT)))
        }
        fftwPlannerLock.lock()
        defer { fftwPlannerLock.unlock() }
        frame = fftwf_malloc(MemoryLayout<Float>.stride * nFFT)!.bindMemory(to: Float.self, capacity: nFFT)
        spectrum = fftwf_malloc(MemoryLayout<fftwf_complex>.stride * (nFFT / 2 + 1))!
            .bindMemory(to: fftwf_complex.self, capacity: nFFT / 2 + 1)
        // FFTW_ESTIMATE: deterministic plans, and the input buffer is not overwritten while planning.
        plan = fftwf_plan_dft_r2c_1d(Int32(nFFT), frame, spectrum, UInt32(FFTW_ESTIMATE))!
    }

    deinit {
        fftwPlannerLock.lock()
        fftwf_destroy_plan(plan)
        fftwPlannerLock.unlock()
        fftwf_free(frame)
        fftwf_free(spectrum)
        window.deallocate()
    }

    /// Number of frames for `sampleCount` samples: `sampleCount / hopLength + 1` (centred frames).
    public func frameCount(sampleCount: Int) -> Int { max(sampleCount, 0) / hopLength + 1 }

    /// Writes `frameCount(samples.count) x bins` power values (frame-major) to `out`.
    /// Inputs shorter than half a window are mirrored repeatedly instead of failing like torch's reflect pad.
    public func power(_ samples: UnsafeBufferPointer<Float>, into out: UnsafeMutablePointer<Float>) {
        power(samples, frames: 0..<frameCount(sampleCount: samples.count), into: out)
    }

    /// Like `power(_:into:)` for the frames in `frames` only (row f still at `out + f * bins`), so that
    /// several instances can share one clip's frames.
    public func power(_ samples: UnsafeBufferPointer<Float>, frames: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let n = samples.count
        let half = nFFT / 2
        let bins = self.bins
        for f in frames {
            let start = f * hopLength - half
            if start >= 0 && start + nFFT <= n {
                let src = samples.baseAddress! + start
                for k in 0..<nFFT { frame[k] = src[k] * window[k] }
            } else {
                for k in 0..<nFFT {
                    let i = STFT.reflect(start + k, count: n)
                    frame[k] = (i < 0 ? 0 : samples[i]) * window[k]
                }
            }
            fftwf_execute_dft_r2c(plan, frame, spectrum)
            let row = out + f * bins
            for k in 0..<bins {
                let re = spectrum[k].0, im = spectrum[k].1
                row[k] = re * re + im * im
            }
        }
    }

    /// Index into a signal of `count` samples after reflect padding (edge not repeated): -1 -> 1, count -> count-2.
    /// Returns -1 for an empty signal (read as zero).
    public static func reflect(_ index: Int, count: Int) -> Int {
        if count <= 0 { return -1 }
        if count == 1 { return 0 }
        let period = 2 * (count - 1)
        var i = index % period
        if i < 0 { i += period }
        return i < count ? i : period - i
    }
}

import Detection
import HTSAT

extension WindowScheduler {
    /// An inference closure over an HTS-AT model, reusing one output buffer (nothing allocates per window).
    public static func inference(model: HTSATModel) -> WindowInference {
        final class Box { var output: HTSATOutput; init(_ o: HTSATOutput) { output = o } }
        let box = Box(HTSATOutput(config: model.config))
        return { samples, body in
            model.infer(samples, into: &box.output, tap: nil)
            box.output.frameScores.withUnsafeBufferPointer(body)  // softmax per frame for ESC-50, else framewise
        }
    }
}

extension WindowGeometry {
    /// Where an HTS-AT model's framewise outputs sit: the one place the model's signal becomes window geometry.
    public init(config: HTSATConfig) {
        self.init(sampleRate: config.signal.sampleRate, clipSamples: config.signal.clipSamples,
                  stftHop: config.signal.hopSize, frames: config.framewiseFrames)
    }
}

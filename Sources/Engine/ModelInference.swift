import Detection
import HTSAT

extension WindowScheduler {
    /// An inference closure over an HTS-AT model, reusing its buffers (nothing allocates per window).
    ///
    /// With `custom` events, each frame carries `classes + custom.count` scores: the model's, then each custom
    /// event's, scored from the same pass's frame embeddings and spread over the frames like `framewise` (each
    /// time step repeated `framewiseRepeat` times), so fusion and tracking treat them as any other output.
    public static func inference(model: HTSATModel, custom: [CustomEventScorer] = []) -> WindowInference {
        final class Box {
            var output: HTSATOutput
            var frames: [Float]
            init(_ o: HTSATOutput, frames: Int) { output = o; self.frames = [Float](repeating: 0, count: frames) }
        }
        let c = model.config
        let width = c.classes + custom.count
        let box = Box(HTSATOutput(config: c, embeddings: !custom.isEmpty), frames: custom.isEmpty ? 0 : c.framewiseFrames * width)
        return { samples, body in
            model.infer(samples, into: &box.output, tap: nil)
            guard !custom.isEmpty else {
                box.output.frameScores.withUnsafeBufferPointer(body)  // softmax per frame for ESC-50, else framewise
                return
            }
            box.output.frameScores.withUnsafeBufferPointer { scores in
                box.output.embeddings.withUnsafeBufferPointer { embeddings in
                    box.frames.withUnsafeMutableBufferPointer { out in
                        let o = out.baseAddress!, s = scores.baseAddress!, e = embeddings.baseAddress!
                        for t in 0..<c.tokenSteps {
                            let first = t * c.framewiseRepeat
                            for (j, scorer) in custom.enumerated() {
                                let value = scorer.score(e + t * c.numFeatures)
                                for f in first..<first + c.framewiseRepeat { o[f * width + c.classes + j] = value }
                            }
                        }
                        for f in 0..<c.framewiseFrames { (o + f * width).update(from: s + f * c.classes, count: c.classes) }
                    }
                }
            }
            box.frames.withUnsafeBufferPointer(body)
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

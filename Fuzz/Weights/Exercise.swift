import Foundation
import FrontEnd
import FuzzSupport
import HTSAT

/// The errors a bad checkpoint may give: the loader's, the model's, the front end's (an impossible FFT size).
public func isCheckpointError(_ error: Error) -> Bool { error is WeightsError || error is ModelError || error is FrontEndError }

/// `bytes` as a weights file, through `file`: it must load and run (`exercise`) or fail with a checkpoint error.
public func loadAndExercise(_ bytes: UnsafeRawBufferPointer, in file: ScratchFile) {
    file.write(bytes)
    expectClearErrors(isCheckpointError) { try exercise(StateDict.load(contentsOf: file.path)) }
}

/// What the daemon does with a loaded checkpoint: every tensor read, then the model built (profile and
/// architecture inferred from the shapes, every weight checked) and run once, on 0.1 s of a tone, since whatever
/// the loader accepts must be safe to run.
public func exercise(_ sd: StateDict) throws {
    var sum: Float = 0
    for key in sd.keys {
        if let values = try? sd.floats(key) { sum += values.reduce(0, +) }
        if let values = try? sd.integers(key) { sum += Float(values.count) }
    }
    withExtendedLifetime(sum) {}
    let model = try HTSATModel(stateDict: sd)
    var output = HTSATOutput(config: model.config)
    tone.withUnsafeBufferPointer { model.infer($0, into: &output) }
}

private let tone = (0..<3200).map { Float(sin(Double($0) * 0.3)) }

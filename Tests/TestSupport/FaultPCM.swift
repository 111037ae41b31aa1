import Foundation

/// A capture PCM that injects real device faults: the ALSA ioplug plugin in Tests/ALSAFaultPlugin/pcm_fault.c,
/// compiled here and loaded by alsa-lib from a private asound.conf. It delivers float32 mono audio in real time (so
/// do not also pace capture) and, on the `faults` schedule, overruns, suspends, unplugs, short reads and stalls; see
/// the C file for the schedule syntax and what each fault does.
public struct FaultPCM {
    /// The asound.conf that defines the PCM, for ALSA_CONFIG_PATH.
    public let config: URL
    /// The plugin's state file (survives reopens); `counters` reads it.
    public let state: URL

    /// The plugin's C source.
    public static let source = Fixtures.packageRoot.appendingPathComponent("Tests/ALSAFaultPlugin/pcm_fault.c")

    /// Compiles the plugin into `directory` and defines PCM `name` there, playing `samples` at `rate` Hz.
    public init(_ name: String, samples: [Float], rate: Int = 32000, faults: String, in directory: URL) throws {
        let library = directory.appendingPathComponent("libasound_module_pcm_fault.so")
        let (status, output) = try runTool("/usr/bin/cc", ["-shared", "-fPIC", "-O2", "-Wall", "-o", library.path,
                                                           Self.source.path, "-lasound"])
        guard status == 0 else { throw CompileError(output: output) }
        let audio = directory.appendingPathComponent("\(name).f32")
        try samples.withUnsafeBytes { try Data($0).write(to: audio) }
        state = directory.appendingPathComponent("\(name).state")
        config = directory.appendingPathComponent("fault-asound.conf")
        try """
            </usr/share/alsa/alsa.conf>
            pcm_type.fault { lib "\(library.path)" }
            pcm.\(name) {
                type fault
                file "\(audio.path)"
                format "FLOAT_LE"
                rate \(rate)
                channels 1
                state "\(state.path)"
                faults "\(faults)"
            }

            """.write(to: config, atomically: true, encoding: .utf8)
    }

    /// The state file's numbers by key: faults applied by kind (`xrun`, `suspend`, `unplug`, `short`, `stall`),
    /// `natural_xruns`, `short_reads`, `opens`, `delivered` (frames), `lost_seconds`, `epoch_real` (ns since 1970 of
    /// stream second 0).
    public var counters: [String: Double] {
        let text = (try? String(contentsOf: state, encoding: .utf8)) ?? ""
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        return values
    }

    /// The plugin did not compile (gcc and libasound2-dev come from scripts/install-deps.sh).
    public struct CompileError: Error, CustomStringConvertible {
        public let output: String
        public var description: String { "cc failed on \(FaultPCM.source.path) (install gcc and libasound2-dev):\n\(output)" }
    }
}

import ArgumentParser

/// The `htsatd` command: the daemon by default, plus tools around the model.
public struct HTSATD: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "htsatd",
        abstract: "Real-time sound event detection with HTS-AT on Linux.",
        version: HTSATDVersion.line,
        subcommands: [Run.self, Scores.self, Tag.self, Events.self, Enroll.self, Bench.self, Plot.self],
        defaultSubcommand: Run.self
    )
    public init() {}
}

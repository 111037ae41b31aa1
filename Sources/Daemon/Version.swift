import HTSAT

/// htsatd's version: the one place it is written. `htsatd --version` prints it; scripts/package-deb.sh reads it back
/// from the built binary's `--version` (so the package can never disagree with the binary), and MQTT discovery's
/// MQTT discovery's `sw_version` uses `HTSATDVersion.number` too.
public enum HTSATDVersion {
    public static let number = "0.3.0"

    /// `htsatd 0.3.0 (avx512 kernels)`: the version and the kernel ISA this machine would run (runtime dispatch,
    /// `HTSAT_KERNELS=avx2|generic` forces one), since the ISA decides the speed a bug report is about.
    public static var line: String { "htsatd \(number) (\(HTSATModel.kernelISA) kernels)" }
}

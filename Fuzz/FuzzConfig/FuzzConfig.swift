import Daemon
import Foundation
import FuzzSupport

/// A configuration file: syntax, decoding, every value check, and the documentation reader (`htsatd config`).
/// Every error must be a ConfigError that says where (line:column or key path): the fallback for an error the
/// syntax checker let through to JSONDecoder has neither, so it counts as a finding.
enum FuzzConfig: FuzzTarget {
    static let corpus = "config"

    static func test(_ bytes: UnsafeRawBufferPointer) {
        let data = Data(bytes)
        func located(_ error: Error) -> Bool {
            guard let e = error as? ConfigError else { return false }
            return e.line != nil || e.key != nil
        }
        expectClearErrors(located) { try DaemonConfig.parse(data: data).validate() }
        expectClearErrors(located) { _ = try DaemonConfig.documentation(data: data) }
    }
}

#if !FUZZING
@main extension FuzzConfig {}
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 { FuzzConfig.run(data, size) }

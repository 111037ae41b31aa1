import Foundation
import HTSAT
import TestSupport
import XCTest

/// Every kernel variant this CPU runs, not only the best one, checked against the parity fixtures: the
/// instruction set is chosen once per process (`HTSAT_KERNELS` forces a lesser one), so each other variant
/// re-runs the parity tests and the thread-count check in a child of this test binary with the variable set.
final class KernelVariantTests: XCTestCase {
    /// What a child runs: the parity fixtures, bit-identical outputs across thread counts, and that the forced
    /// variant is the one in effect.
    static let childTests = "HTSATTests.ParityTests,HTSATTests.KernelVariantTests/testForcedVariantIsInEffect,"
        + "DaemonTests.BenchmarkTests/testThreadsGiveBitIdenticalOutputs"

    /// The variants below the default that this CPU supports (from /proc/cpuinfo's flags).
    static func lesserVariants() -> [String] {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?
            .split(separator: " ").map(String.init) ?? [])
        var variants = ["generic"]
        if flags.contains("avx2") && flags.contains("fma") { variants.insert("avx2", at: 0) }
        return variants.filter { $0 != HTSATModel.kernelISA }
    }

    func testEveryVariantPassesParity() throws {
        #if !os(Linux)
        throw XCTSkip("re-runs this test binary through /proc/self/exe")
        #else
        if ProcessInfo.processInfo.environment["HTSAT_KERNELS"] != nil { throw XCTSkip("inside a variant's child run") }
        let variants = KernelVariantTests.lesserVariants()
        if variants.isEmpty { throw XCTSkip("only one kernel variant on this CPU") }
        for variant in variants {
            let (status, output) = try runTool(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
                                               [KernelVariantTests.childTests], environment: ["HTSAT_KERNELS": variant])
            XCTAssertEqual(status, 0, "HTSAT_KERNELS=\(variant):\n\(output)")
            // The parity suite, the variant check and the thread check all ran and passed (by name, so that a new
            // parity test does not need a count changed here).
            for passed in ["Test Suite 'ParityTests' passed", "testForcedVariantIsInEffect' passed", "testThreadsGiveBitIdenticalOutputs' passed"] {
                XCTAssertTrue(output.contains(passed), "HTSAT_KERNELS=\(variant): no \"\(passed)\" in\n\(output)")
            }
            for line in output.split(separator: "\n") where line.hasPrefix("parity ") { print("\(variant): \(line)") }
        }
        #endif
    }

    /// In a child run the variable was honoured; otherwise the best variant the CPU supports is the one in effect.
    func testForcedVariantIsInEffect() throws {
        if let forced = ProcessInfo.processInfo.environment["HTSAT_KERNELS"] {
            XCTAssertEqual(HTSATModel.kernelISA, forced)
            return
        }
        #if arch(arm64)
        XCTAssertEqual(HTSATModel.kernelISA, "neon", "every arm64 CPU has NEON")
        #else
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = Set(cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }?.split(separator: " ").map(String.init) ?? [])
        let best = ["avx512f", "avx512vl", "avx512bw", "avx512dq"].allSatisfy(flags.contains) ? "avx512"
            : flags.contains("avx2") && flags.contains("fma") ? "avx2" : "generic"
        XCTAssertEqual(HTSATModel.kernelISA, best, "runtime dispatch picks the widest variant the CPU has")
        #endif
    }

    /// The kernels block for this CPU's caches: 3/4 of cpu0's L1 data cache and L2 as sysfs reports them, an
    /// independent reading of what glibc's sysconf gives the kernels.
    func testCacheBudgetsFollowTheCPU() throws {
        func sysfs(_ index: Int, _ name: String) -> String? {
            (try? String(contentsOfFile: "/sys/devices/system/cpu/cpu0/cache/index\(index)/\(name)", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func size(level: Int, type: String) -> Int? {
            for i in 0..<8 where sysfs(i, "level") == String(level) && sysfs(i, "type") == type {
                guard let text = sysfs(i, "size"), let n = Int(text.filter(\.isNumber)) else { return nil }
                return text.hasSuffix("M") ? n << 20 : text.hasSuffix("K") ? n << 10 : n
            }
            return nil
        }
        let shares = HTSATModel.kernelCacheShares
        guard let l1 = size(level: 1, type: "Data"), let l2 = size(level: 2, type: "Unified") else {
            throw XCTSkip("this machine's sysfs names no L1 data cache or L2")
        }
        XCTAssertEqual(shares.l1, l1 / 4 * 3, "L1d of \(l1) bytes")
        XCTAssertEqual(shares.l2, l2 / 4 * 3, "L2 of \(l2) bytes")
    }
}

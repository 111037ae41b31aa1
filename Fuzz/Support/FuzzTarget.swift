import Foundation
import SystemSupport

/// One fuzz target: a function that must survive any bytes. Built by scripts/fuzz.sh (`-sanitize=fuzzer,address
/// -DFUZZING`), libFuzzer's `main` drives `LLVMFuzzerTestOneInput`; in the normal build the executable's `main`
/// (`FuzzTarget.main`) runs every file of its corpus once instead, a regression run the test suite does.
public protocol FuzzTarget {
    /// The corpus directory name under `Fuzz/corpus`.
    static var corpus: String { get }
    /// Feeds `bytes` to the reader; returns normally for a load or a clear error, traps for anything else.
    static func test(_ bytes: UnsafeRawBufferPointer)
}

extension FuzzTarget {
    /// The `LLVMFuzzerTestOneInput` body.
    public static func run(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        test(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }

    /// The regression run: each file named on the command line (directories: each file in them), by default the
    /// target's corpus in the source tree. `-v` prints what each input gave (to check new seeds reach deep).
    public static func main() {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        var arguments = CommandLine.arguments.dropFirst()
        setvbuf(stdout, nil, _IOLBF, 0)  // so that -v has named the input a crash happens on
        if arguments.first == "-v" {
            arguments.removeFirst()
            outcome = { print("  \($0)") }
        }
        let files = (arguments.isEmpty ? [root.appendingPathComponent("corpus/\(corpus)").path] : Array(arguments)).flatMap(files(at:))
        guard !files.isEmpty else {
            FileHandle.standardError.write(Data("\(corpus): no inputs found in \(arguments.isEmpty ? "the corpus" : arguments.joined(separator: " "))\n".utf8))
            exit(1)
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("\(corpus): cannot read \(file)\n".utf8))
                exit(1)
            }
            if outcome != nil { print(file) }
            data.withUnsafeBytes { test($0) }
        }
        print("\(corpus): \(files.count) inputs, no crash")
    }

    private static func files(at path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { return [path] }
        let names = (try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []
        return names.sorted().map { path + "/" + $0 }.filter {
            FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
    }
}

/// Runs `body`; an error that `isClear` rejects (a type the caller does not promise) is a finding, so it traps
/// with the error, as a crash would. Every accepted error's message is rendered too, to exercise that code.
public func expectClearErrors(_ isClear: (Error) -> Bool, _ body: () throws -> Void) {
    do {
        try body()
        outcome?("no error")
    } catch {
        let message = "\(error)"
        if !isClear(error) || message.isEmpty { fatalError("not a clear error: \(type(of: error)): \(message)") }
        outcome?(message)
    }
}

/// Where the regression run's `-v` prints each outcome.
nonisolated(unsafe) private var outcome: ((String) -> Void)?

/// A scratch file holding the current input, opened by path (`/proc/self/fd/N`) so the readers run their real
/// open-by-path code. Unlinked at once; /dev/shm keeps it in memory.
public final class ScratchFile {
    public let fd: Int32
    public var path: String { "/proc/self/fd/\(fd)" }

    public init() {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        var template = Array("\(dir)/htsatd-fuzz-XXXXXX".utf8CString)
        fd = mkstemp(&template)
        guard fd >= 0 else { fatalError("mkstemp in \(dir): \(Errno.current)") }
        unlink(template)
    }

    /// Replaces the contents with `bytes`, the offset back at 0.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0, writeAll(fd, bytes) == nil, lseek(fd, 0, SEEK_SET) == 0 else {
            fatalError("scratch file: \(Errno.current)")
        }
    }
}

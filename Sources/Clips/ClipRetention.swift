import Foundation
import Logging

/// Limits of the clip directory; nil means no limit.
public struct ClipBudget: Equatable, Sendable {
    public var maxAgeDays: Double?
    public var maxBytes: Int64?
    public var minFreePercent: Double?

    public init(maxAgeDays: Double? = nil, maxBytes: Int64? = nil, minFreePercent: Double? = nil) {
        (self.maxAgeDays, self.maxBytes, self.minFreePercent) = (maxAgeDays, maxBytes, minFreePercent)
    }
}

/// Enforces a `ClipBudget` on a clip directory: deletes htsatd's own files (names `ClipName` parses, in
/// `YYYY-MM-DD` directories), oldest first, and nothing else.
public struct ClipRetention {
    /// One of our files.
    public struct Entry: Equatable {
        public var name: ClipName
        public var path: String
        public var bytes: Int64
    }

    /// What one `enforce` pass did.
    public struct Outcome: Equatable {
        /// The deleted paths, oldest first, and their bytes.
        public var deleted: [String] = []
        public var deletedBytes: Int64 = 0
        /// How many of them went for `max_bytes` or `min_free_percent` rather than age.
        public var budgetEvictions = 0
        /// Bytes of our finished files left.
        public var bytes: Int64 = 0
    }

    public let dir: String
    public let budget: ClipBudget

    public init(dir: String, budget: ClipBudget) {
        (self.dir, self.budget) = (dir, budget)
    }

    /// Our files, oldest first; with `staleTemporaries`, also deletes leftover `.NAME.tmp` files of a previous run.
    public func scan(removingStaleTemporaries staleTemporaries: Bool = false, logger: Logger? = nil) -> [Entry] {
        let fm = FileManager.default
        var out: [Entry] = []
        for day in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []) where ClipName.isDay(day) {
            let dayPath = dir + "/" + day
            for file in (try? fm.contentsOfDirectory(atPath: dayPath)) ?? [] {
                let path = dayPath + "/" + file
                if staleTemporaries, file.hasPrefix("."), file.hasSuffix(".tmp"), ClipName(file: String(file.dropFirst().dropLast(4))) != nil {
                    if unlink(path) == 0 { logger?.info("removed an unfinished clip of an earlier run: \(path)") }
                    continue
                }
                guard let name = ClipName(file: file) else { continue }
                var st = stat()
                guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
                out.append(Entry(name: name, path: path, bytes: Int64(st.st_size)))
            }
        }
        return out.sorted { $0.name < $1.name }
    }

    /// Percent of the file system holding `dir` that is free for unprivileged users.
    public func freePercent() -> Double? {
        var s = statvfs()
        guard statvfs(dir, &s) == 0, s.f_blocks > 0 else { return nil }
        return 100 * Double(s.f_bavail) / Double(s.f_blocks)
    }

    /// Deletes the oldest files while any limit is exceeded (`extraBytes`: bytes of clips being written, counted
    /// against `max_bytes`).
    @discardableResult
    public func enforce(now: Date = Date(), extraBytes: Int64 = 0, logger: Logger? = nil) -> Outcome {
        var entries = scan()
        var total = entries.reduce(0) { $0 + $1.bytes }
        var outcome = Outcome()
        let cutoff = budget.maxAgeDays.map { Int64(now.timeIntervalSince1970 - $0 * 86400) }
        while let oldest = entries.first {
            let tooOld = cutoff.map { oldest.name.time < $0 } ?? false
            let tooBig = budget.maxBytes.map { total + extraBytes > $0 } ?? false
            let tooFull = budget.minFreePercent.map { min in freePercent().map { $0 < min } ?? false } ?? false
            guard tooOld || tooBig || tooFull else { break }
            entries.removeFirst()
            if unlink(oldest.path) == 0 || errno == ENOENT {
                total -= oldest.bytes
                outcome.deleted.append(oldest.path)
                outcome.deletedBytes += oldest.bytes
                if !tooOld { outcome.budgetEvictions += 1 }
                let reason = tooOld ? "older than max_age_days" : tooBig ? "over max_bytes" : "under min_free_percent"
                logger?.debug("retention deleted \(oldest.path) (\(reason))")
            } else {
                logger?.warning("retention cannot delete \(oldest.path): \(String(cString: strerror(errno)))")
            }
        }
        // Empty day directories go too (rmdir fails harmlessly on a non-empty one or someone else's files).
        for day in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []) where ClipName.isDay(day) {
            rmdir(dir + "/" + day)
        }
        if !outcome.deleted.isEmpty {
            logger?.info("clip retention deleted \(outcome.deleted.count) file(s)", metadata: ["dir": "\(dir)", "bytes_left": "\(total)"])
        }
        outcome.bytes = total
        return outcome
    }
}

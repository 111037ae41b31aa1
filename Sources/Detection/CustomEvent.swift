import Foundation

/// A sound taught from examples (`htsatd enroll`): prototypes of the model's frame embeddings, the model they belong
/// to, the calibration that maps a frame's similarity to a 0..1 score, and the enrolment report. Versioned JSON.
public struct CustomEvent: Codable, Equatable, Sendable {
    /// The `format` value of every custom event file.
    public static let formatName = "htsatd-custom-event"
    /// The file version this build writes and reads.
    public static let currentVersion = 1

    /// Always `formatName`: tells this file from other JSON.
    public var format: String
    /// File version (`currentVersion`).
    public var version: Int
    /// The event name, as used in `--events` and in event lines.
    public var name: String
    /// The model whose embeddings the prototypes are.
    public var model: ModelIdentity
    /// Unit-length embeddings of the positive examples, one per example and gain.
    public var prototypes: Vectors
    /// Unit-length embeddings of the background (negatives, and a quiet noise floor), one per 1.25-s segment.
    public var background: Vectors
    /// Maps a frame's raw score (similarity to the nearest prototype minus to the nearest background) to 0..1.
    public var calibration: Calibration
    /// Suggested on/off thresholds on the calibrated score.
    public var thresholds: Thresholds
    /// What enrolment measured, as printed by `htsatd enroll`.
    public var report: EnrollmentReport

    /// The model a custom event was enrolled with.
    public struct ModelIdentity: Codable, Equatable, Sendable {
        /// `HTSATModel.fingerprint()` of the checkpoint.
        public var fingerprint: String
        /// Length of one frame embedding (the model's `num_features`).
        public var features: Int
        /// The checkpoint's path at enrolment, for the error message only.
        public var file: String

        /// Plain memberwise initializer.
        public init(fingerprint: String, features: Int, file: String) {
            self.fingerprint = fingerprint
            self.features = features
            self.file = file
        }
    }

    /// Vectors of one length, stored as little-endian float32 in base64 (exact and compact).
    public struct Vectors: Codable, Equatable, Sendable {
        /// Length of each vector.
        public var dimension: Int
        /// Row-major values, `count x dimension`.
        public var values: [Float]
        /// Number of vectors.
        public var count: Int { dimension > 0 ? values.count / dimension : 0 }

        /// Row-major vectors of `dimension` values each.
        public init(dimension: Int, values: [Float]) {
            self.dimension = dimension
            self.values = values
        }

        enum CodingKeys: String, CodingKey { case dimension, count, float32Base64 = "float32_base64" }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let dimension = try c.decode(Int.self, forKey: .dimension)
            self.dimension = dimension
            let count = try c.decode(Int.self, forKey: .count)
            guard let data = Data(base64Encoded: try c.decode(String.self, forKey: .float32Base64)) else {
                throw DecodingError.dataCorruptedError(forKey: .float32Base64, in: c, debugDescription: "not base64")
            }
            guard dimension > 0, count > 0, data.count == count * dimension * 4 else {
                throw DecodingError.dataCorruptedError(forKey: .float32Base64, in: c, debugDescription:
                    "\(data.count) bytes do not hold \(count) vectors of \(dimension) float32 values")
            }
            values = data.withUnsafeBytes { raw in
                (0..<count * dimension).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            guard values.allSatisfy(\.isFinite) else {
                throw DecodingError.dataCorruptedError(forKey: .float32Base64, in: c, debugDescription: "holds a non-finite value")
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(dimension, forKey: .dimension)
            try c.encode(count, forKey: .count)
            var data = Data(capacity: values.count * 4)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            try c.encode(data.base64EncodedString(), forKey: .float32Base64)
        }
    }

    /// score = 1 / (1 + exp(-scale (raw - center))).
    public struct Calibration: Codable, Equatable, Sendable {
        /// The raw score that maps to 0.5: midway between the background's top and the positives' low end.
        public var center: Float
        /// Steepness: the positives' low end maps to 0.9 and the background's top to 0.1.
        public var scale: Float

        /// The calibrated score of a raw one.
        @inline(__always) public func callAsFunction(_ raw: Float) -> Float { 1 / (1 + expf(-scale * (raw - center))) }
    }

    /// On and off thresholds.
    public struct Thresholds: Codable, Equatable, Sendable {
        /// Score that starts the event.
        public var on: Float
        /// Score below which it ends.
        public var off: Float
    }

    /// Reads and checks a custom event file; errors name the file and what is wrong with it.
    public static func load(contentsOf path: String) throws -> CustomEvent {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CustomEventError.unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        struct Header: Decodable { var format: String?; var version: Int? }
        guard let header = try? JSONDecoder().decode(Header.self, from: data) else {
            throw CustomEventError.corrupt(path: path, reason: "not a JSON object")
        }
        guard header.format == formatName else {
            throw CustomEventError.corrupt(path: path, reason: "\"format\" is not \"\(formatName)\"; is this a custom event file written by 'htsatd enroll'?")
        }
        guard header.version == currentVersion else {
            throw CustomEventError.unsupportedVersion(path: path, version: header.version ?? -1)
        }
        let event: CustomEvent
        do { event = try JSONDecoder().decode(CustomEvent.self, from: data) } catch {
            throw CustomEventError.corrupt(path: path, reason: describe(error))
        }
        if let problem = event.problem() { throw CustomEventError.corrupt(path: path, reason: problem) }
        return event
    }

    /// Writes the file atomically (a reader never sees half of it).
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Why the decoded values cannot be used, or nil.
    func problem() -> String? {
        if !EventCatalog.isValidCustomName(name) { return "name \"\(name)\" is not a valid event name (lowercase letters, digits and _)" }
        if prototypes.dimension != model.features || background.dimension != model.features {
            return "prototypes have \(prototypes.dimension) and \(background.dimension) values, the model's embeddings \(model.features)"
        }
        if !(calibration.center.isFinite && calibration.scale.isFinite && calibration.scale > 0) { return "the calibration is not finite and positive" }
        if !(thresholds.off >= 0 && thresholds.off <= thresholds.on && thresholds.on <= 1) { return "thresholds need 0 <= off <= on <= 1" }
        return nil
    }

    /// The first useful line of a decoding error.
    private static func describe(_ error: Error) -> String {
        switch error {
        case let DecodingError.keyNotFound(key, _): return "missing key \"\(key.stringValue)\""
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
             let DecodingError.dataCorrupted(context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
        default: return "\(error)"
        }
    }
}

/// What `htsatd enroll` measured: leave-one-out scores of the positives and the background's score distribution.
public struct EnrollmentReport: Codable, Equatable, Sendable {
    /// One positive example.
    public struct Positive: Codable, Equatable, Sendable {
        /// The file it came from.
        public var file: String
        /// Median calibrated score of its sounding frames, scored without its own prototypes (leave-one-out).
        public var score: Float
        /// Lowest calibrated leave-one-out score over its frames at any enrolled gain.
        public var lowest: Float
    }

    /// The positives, in the order given.
    public var positives: [Positive]
    /// Files of the background: the negatives given, or none (then only the synthetic noise floor).
    public var negatives: [String]
    /// Number of background frames scored.
    public var backgroundFrames: Int
    /// Calibrated background scores: median, 95th and 99th percentile, maximum (each frame scored leave-one-out).
    public var backgroundMedian: Float, background95: Float, background99: Float, backgroundMax: Float
    /// Whether the positives separate from the background: "good", "weak" or "none".
    public var separation: String
    /// Plain advice, when there is any.
    public var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case positives, negatives, separation, warnings
        case backgroundFrames = "background_frames", backgroundMedian = "background_median"
        case background95 = "background_p95", background99 = "background_p99", backgroundMax = "background_max"
    }

    /// The report as `htsatd enroll` prints it.
    public func text(name: String, thresholds: CustomEvent.Thresholds) -> String {
        func f(_ x: Float) -> String { String(format: "%.2f", x) }
        var out = "enrolled \"\(name)\" from \(positives.count) examples; scores are 0..1, the suggested thresholds on \(f(thresholds.on)) off \(f(thresholds.off))\n"
        out += "leave-one-out score of each example (scored by the other examples alone; median and lowest over its frames):\n"
        let width = positives.map(\.file.count).max() ?? 0
        for p in positives { out += "  \(p.file.padding(toLength: width, withPad: " ", startingAt: 0))  \(f(p.score))  (lowest \(f(p.lowest)))\n" }
        let source = negatives.isEmpty ? "a synthetic noise floor only (no --negative given)" : "\(negatives.count) negative file(s) and a noise floor"
        out += "background: \(backgroundFrames) frames from \(source): median \(f(backgroundMedian)), p95 \(f(background95)), p99 \(f(background99)), max \(f(backgroundMax))\n"
        out += "separation: \(separation)\n"
        for w in warnings { out += "warning: \(w)\n" }
        return out
    }
}

/// A custom event file that cannot be used, with what to do about it.
public enum CustomEventError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case corrupt(path: String, reason: String)
    case unsupportedVersion(path: String, version: Int)
    case wrongModel(path: String, name: String, enrolled: String, enrolledFile: String, current: String)
    case nameCollides(name: String, with: String)
    case badName(name: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "custom event file \(path) cannot be read: \(reason)"
        case let .corrupt(path, reason):
            return "custom event file \(path) is damaged or not a custom event file (\(reason)); enroll the event again with 'htsatd enroll'"
        case let .unsupportedVersion(path, version):
            return "custom event file \(path) has version \(version); this htsatd reads version \(CustomEvent.currentVersion): enroll the event again with this htsatd"
        case let .wrongModel(path, name, enrolled, enrolledFile, current):
            return "custom event \"\(name)\" (\(path)) was enrolled with another model (\(enrolledFile), fingerprint \(enrolled)); this model's fingerprint is \(current): use that model, or run 'htsatd enroll' again with this one"
        case let .nameCollides(name, other):
            return "event name \"\(name)\" is already taken by \(other); choose another --name"
        case let .badName(name):
            return "event name \"\(name)\" is not usable: use lowercase letters, digits and _ (e.g. \"\(EventCatalog.slug(name).isEmpty ? "my_sound" : EventCatalog.slug(name))\")"
        }
    }
}

/// Scores frame embeddings against a custom event's prototypes, without allocating.
public final class CustomEventScorer {
    /// The event scored.
    public let event: CustomEvent
    private let dimension: Int
    private let prototypes: [Float]
    private let background: [Float]

    /// A scorer for `event`.
    public init(_ event: CustomEvent) {
        self.event = event
        dimension = event.model.features
        prototypes = event.prototypes.values
        background = event.background.values
    }

    /// Raw score of one embedding: cosine to the nearest prototype minus cosine to the nearest background vector.
    public func raw(_ embedding: UnsafePointer<Float>) -> Float {
        let d = dimension
        let norm = max(sqrtf(Self.dot(embedding, embedding, d)), 1e-12)
        func nearest(_ set: [Float]) -> Float {
            set.withUnsafeBufferPointer { p in
                var best = -Float.infinity
                var row = 0
                while row < set.count {
                    best = max(best, Self.dot(embedding, p.baseAddress! + row, d))
                    row += d
                }
                return best
            }
        }
        return (nearest(prototypes) - nearest(background)) / norm
    }

    /// Calibrated 0..1 score of one embedding.
    public func score(_ embedding: UnsafePointer<Float>) -> Float { event.calibration(raw(embedding)) }

    /// Dot product, eight lanes at a time (a float sum does not auto-vectorize).
    @inline(__always) static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self) * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var sum = acc.sum()
        while i < n { sum += a[i] * b[i]; i += 1 }
        return sum
    }
}

/// Building a custom event from examples: prototypes, leave-one-out scores, calibration and the report. Pure math on
/// frame embeddings; `htsatd enroll` runs the model and hands them in.
public enum CustomEventEnrollment {
    /// Frames per background prototype: 4 time steps (1.25 s of a 10-s window) keep a varied background apart.
    public static let segmentSteps = 4
    /// At most this many background prototypes (evenly chosen), bounding the per-frame cost.
    public static let maxBackground = 64
    /// Suggested thresholds on the calibrated score.
    public static let suggested = CustomEvent.Thresholds(on: 0.5, off: 0.3)

    /// One example file: its embeddings at each enrolled gain (`views`), each a list of `dimension`-long vectors.
    public struct Example {
        /// Its file name, for the report.
        public var file: String
        /// Per gain copy, the frame embeddings used (a positive's sounding frames; every frame of a negative).
        public var views: [[[Float]]]
        /// Group key: views of one example are left out together.
        public init(file: String, views: [[[Float]]]) {
            self.file = file
            self.views = views
        }
    }

    /// Which of `steps` equal parts of `samples` sound: RMS within 20 dB of the loudest part and above -60 dBFS.
    /// Nil when no part reaches -60 dBFS (a silent example).
    public static func soundingSteps(_ samples: [Float], steps: Int) -> [Bool]? {
        let size = samples.count / steps
        guard size > 0 else { return nil }
        let levels = (0..<steps).map { t -> Float in
            var energy: Double = 0
            for x in samples[t * size..<(t + 1) * size] { energy += Double(x) * Double(x) }
            return Float(10 * log10(max(energy / Double(size), 1e-20)))
        }
        let loudest = levels.max()!
        guard loudest > -60 else { return nil }
        return levels.map { $0 >= loudest - 20 && $0 > -60 }
    }

    /// Builds the event. `positives` (at least 2) carry their sounding frames; `background` examples (negatives, and
    /// the synthetic noise floor, whose file is "") every frame.
    public static func enroll(name: String, model: CustomEvent.ModelIdentity, positives: [Example],
                              background: [Example]) -> CustomEvent {
        let d = model.features
        // One prototype per positive view: the normalised mean of its frames.
        var prototypeOwner: [Int] = []
        var prototypes: [Float] = []
        for (i, example) in positives.enumerated() {
            for view in example.views where !view.isEmpty {
                prototypes += unit(mean(view, d))
                prototypeOwner.append(i)
            }
        }
        // Background prototypes: normalised means of consecutive segments.
        // Owner: the segment's running number, so a background frame can be scored without its own segment.
        var segments: [(owner: Int, vector: [Float])] = []
        var segmentOf: [[[Int]]] = []  // example -> view -> frame -> segment number
        for example in background {
            segmentOf.append(example.views.map { view in
                stride(from: 0, to: view.count, by: segmentSteps).flatMap { start -> [Int] in
                    let end = min(start + segmentSteps, view.count)
                    segments.append((segments.count, unit(mean(Array(view[start..<end]), d))))
                    return Array(repeating: segments.count - 1, count: end - start)
                }
            })
        }
        if segments.count > maxBackground {
            segments = (0..<maxBackground).map { segments[$0 * segments.count / maxBackground] }
        }

        func rawScore(_ e: [Float], excludingPositive: Int?, excludingBackground: Int?) -> Float {
            let norm = max(sqrtf(dot(e, e)), 1e-12)
            var best = -Float.infinity, bestBackground = -Float.infinity
            for (k, owner) in prototypeOwner.enumerated() where owner != excludingPositive {
                best = max(best, prototypes.withUnsafeBufferPointer { p in
                    e.withUnsafeBufferPointer { CustomEventScorer.dot($0.baseAddress!, p.baseAddress! + k * d, d) }
                })
            }
            for segment in segments where segment.owner != excludingBackground { bestBackground = max(bestBackground, dot(e, segment.vector)) }
            if bestBackground == -.infinity { bestBackground = 0 }
            return (best - bestBackground) / norm
        }

        // Leave-one-out: each positive scored by the others; each background frame without its own segment.
        let positiveRaw = positives.indices.map { i in positives[i].views.map { $0.map { rawScore($0, excludingPositive: i, excludingBackground: nil) } } }
        let backgroundRaw = background.indices.flatMap { j in
            background[j].views.indices.flatMap { v in
                background[j].views[v].indices.map { f in
                    rawScore(background[j].views[v][f], excludingPositive: nil, excludingBackground: segmentOf[j][v][f])
                }
            }
        }

        let pooled = positiveRaw.flatMap { $0.flatMap { $0 } }.sorted()
        let sortedBackground = backgroundRaw.sorted()
        let high = quantile(pooled, 0.2), low = quantile(sortedBackground, 0.98)
        let spread = high - low
        let center = (high + low) / 2
        // ln 9: the positives' 20th percentile maps to 0.9 and the background's 98th to 0.1; a floor on the spread
        // keeps the curve finite when they overlap.
        let scale = Float(log(9.0)) / max(spread / 2, 0.01)
        let calibration = CustomEvent.Calibration(center: center, scale: scale)

        let calibratedBackground = sortedBackground.map { calibration($0) }
        var reportPositives: [EnrollmentReport.Positive] = []
        for (i, example) in positives.enumerated() {
            let first = (positiveRaw[i].first ?? []).map { calibration($0) }.sorted()
            let lowest = positiveRaw[i].flatMap { $0 }.map { calibration($0) }.min() ?? 0
            reportPositives.append(.init(file: example.file, score: quantile(first, 0.5), lowest: lowest))
        }
        let b99 = quantile(calibratedBackground, 0.99)
        let weakest = reportPositives.map(\.score).min() ?? 0
        var warnings: [String] = []
        let separation: String
        if weakest > suggested.on + 0.1 && b99 < suggested.off { separation = "good" }
        else if weakest > suggested.on && b99 < suggested.on { separation = "weak" }
        else { separation = "none" }
        if separation != "good" {
            warnings.append("the examples do not separate well from the background: record more examples, closer, with less noise, and give the room's normal sound with --negative")
        }
        for p in reportPositives where p.score < suggested.on {
            warnings.append("\(p.file) scores \(String(format: "%.2f", p.score)) without its own prototypes: it may not be like the others; check it holds the sound, or add more examples like it")
        }
        let negatives = background.map(\.file).filter { !$0.isEmpty }
        if negatives.isEmpty {
            warnings.append("no --negative given: the background is only a synthetic noise floor; give a recording of the room's normal sound, and near-miss sounds, to avoid false events")
        }
        if positives.count < 5 { warnings.append("only \(positives.count) examples: 5 to 10 make the report and the thresholds more reliable") }
        let report = EnrollmentReport(
            positives: reportPositives, negatives: negatives, backgroundFrames: backgroundRaw.count,
            backgroundMedian: quantile(calibratedBackground, 0.5), background95: quantile(calibratedBackground, 0.95),
            background99: b99, backgroundMax: calibratedBackground.last ?? 0, separation: separation, warnings: warnings)
        return CustomEvent(format: CustomEvent.formatName, version: CustomEvent.currentVersion, name: name, model: model,
                           prototypes: .init(dimension: d, values: prototypes),
                           background: .init(dimension: d, values: segments.flatMap(\.vector)),
                           calibration: calibration, thresholds: suggested, report: report)
    }

    private static func mean(_ vectors: [[Float]], _ d: Int) -> [Float] {
        var out = [Float](repeating: 0, count: d)
        for v in vectors { for k in 0..<d { out[k] += v[k] } }
        return out.map { $0 / Float(max(vectors.count, 1)) }
    }

    private static func unit(_ v: [Float]) -> [Float] {
        let norm = max(sqrtf(dot(v, v)), 1e-12)
        return v.map { $0 / norm }
    }

    private static func dot(_ a: [Float], _ b: [Float]) -> Float {
        a.withUnsafeBufferPointer { x in b.withUnsafeBufferPointer { y in CustomEventScorer.dot(x.baseAddress!, y.baseAddress!, x.count) } }
    }

    /// Linear-interpolated quantile of sorted values (0 for none).
    static func quantile(_ sorted: [Float], _ q: Float) -> Float {
        guard !sorted.isEmpty else { return 0 }
        let position = q * Float(sorted.count - 1)
        let lo = Int(position), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - Float(lo))
    }
}

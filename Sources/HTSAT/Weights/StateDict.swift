/// Element types a checkpoint tensor may have.
enum DType: String, Sendable {
    case float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    var isFloat: Bool { self == .float32 || self == .float64 || self == .float16 || self == .bfloat16 }
}

/// A tensor located in raw bytes (a mapped file), before conversion; strides and offset in elements.
struct RawTensor {
    var dtype: DType?            // nil: a type this loader does not read (named by `dtypeName`)
    var dtypeName: String
    var shape: [Int]
    var strides: [Int]
    var offset: Int
    var storage: UnsafeRawBufferPointer

    /// Row-major strides for `shape`.
    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc &*= shape[i] }
        return s
    }

    /// Element count, or nil on overflow / negative dimension.
    static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = m
        }
        return n
    }

    /// Checks that every element the view addresses lies inside the storage.
    func validate(key: String, file: String) throws {
        guard shape.count == strides.count, let n = RawTensor.elementCount(shape) else {
            throw WeightsError.corrupt(file: file, detail: "tensor '\(key)' has an invalid size \(shape) / stride \(strides)")
        }
        guard offset >= 0, strides.allSatisfy({ $0 >= 0 }) else {
            throw WeightsError.corrupt(file: file, detail: "tensor '\(key)' has a negative storage offset or stride")
        }
        guard n > 0, let dtype else { return }
        let available = storage.count / dtype.size
        // A broadcast view (stride 0) could claim 2^60 elements of a 4-byte storage, and converting it would
        // allocate them all; no state_dict tensor has more elements than its storage.
        guard n <= available else {
            throw WeightsError.corrupt(file: file, detail: "tensor '\(key)' has \(n) elements but its storage holds \(available) \(dtype.rawValue) elements")
        }
        var last = offset
        for (d, s) in zip(shape, strides) {
            let (m, o1) = (d - 1).multipliedReportingOverflow(by: s)
            let (sum, o2) = last.addingReportingOverflow(m)
            guard !o1, !o2 else { throw WeightsError.corrupt(file: file, detail: "tensor '\(key)' addresses elements beyond any storage") }
            last = sum
        }
        guard last < available else {
            throw WeightsError.corrupt(file: file, detail: "tensor '\(key)' needs element \(last) but its storage holds \(available) \(dtype.rawValue) elements")
        }
    }

    var isContiguous: Bool {
        let want = RawTensor.contiguousStrides(shape)
        for i in shape.indices where shape[i] != 1 && strides[i] != want[i] { return false }
        return true
    }

    /// Calls `body(start, stride, count)` for each innermost row, in row-major order (storage element indices).
    func forEachRow(_ body: (Int, Int, Int) -> Void) {
        guard let n = RawTensor.elementCount(shape), n > 0 else { return }
        // Size-1 dimensions never move the position; dropping them makes transposed views cheap to walk.
        let dims = shape.indices.filter { shape[$0] != 1 }
        if dims.isEmpty || isContiguous { body(offset, 1, n); return }
        let inner = dims.last!, outer = Array(dims.dropLast())
        var idx = [Int](repeating: 0, count: outer.count)
        var pos = offset
        for _ in 0..<(n / shape[inner]) {
            body(pos, strides[inner], shape[inner])
            var d = outer.count - 1
            while d >= 0 {
                let dim = outer[d]
                idx[d] += 1
                pos += strides[dim]
                if idx[d] < shape[dim] { break }
                pos -= strides[dim] * shape[dim]
                idx[d] = 0
                d -= 1
            }
        }
    }
}

/// Bit-exact float16 → float32.
@inline(__always) func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1f)
    var mant = UInt32(h & 0x3ff)
    if exp == 0 {
        if mant == 0 { return Float(bitPattern: sign) }
        // Subnormal: normalise.
        var e = -1
        repeat { e += 1; mant <<= 1 } while mant & 0x400 == 0
        return Float(bitPattern: sign | UInt32(127 - 15 - e) << 23 | (mant & 0x3ff) << 13)
    }
    if exp == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | mant << 13) }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | mant << 13)
}

/// Tensors of one checkpoint, keyed by state_dict name without the `sed_model.` prefix.
public final class StateDict: @unchecked Sendable {
    // Immutable after init, so concurrent reads need no lock.
    enum Entry {
        case floats(UnsafeBufferPointer<Float>)
        case ints([Int64])
        case unreadable(dtype: String)
        case invalid(String)
    }

    /// File path, for error messages.
    public let source: String
    private let entries: [String: Entry]
    private let shapes: [String: [Int]]
    private let mapping: MappedFile?
    private let owned: [UnsafeMutableBufferPointer<Float>]

    /// Detects the format from the file's bytes and loads it.
    public static func load(contentsOf path: String) throws -> StateDict {
        let file = try MappedFile(path: path)
        let raw: [(String, RawTensor)]
        switch try detectFormat(file) {
        case .safetensors: raw = try SafeTensorsReader.read(file)
        case .torchZip: raw = try TorchCheckpointReader.read(file)
        }
        return try StateDict(raw: stripPrefixes(raw, file: path), mapping: file)
    }

    /// An in-memory state dict (used by the benchmark's random weights and by tests).
    public init(tensors: [String: (shape: [Int], values: [Float])], source: String = "<memory>") {
        self.source = source
        var e: [String: Entry] = [:]
        var s: [String: [Int]] = [:]
        var owned: [UnsafeMutableBufferPointer<Float>] = []
        for (key, t) in tensors {
            s[key] = t.shape
            guard RawTensor.elementCount(t.shape) == t.values.count else {
                e[key] = .invalid("tensor '\(key)' has shape \(t.shape) but \(t.values.count) values")
                continue
            }
            let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(t.values.count, 1))
            _ = buf.initialize(from: t.values)
            owned.append(buf)
            e[key] = .floats(UnsafeBufferPointer(rebasing: buf[0..<t.values.count]))
        }
        entries = e
        shapes = s
        mapping = nil
        self.owned = owned
    }

    /// Resolves raw views: float32 contiguous aligned ones point into the mapping, others are converted once.
    init(raw: [(String, RawTensor)], mapping: MappedFile) throws {
        source = mapping.path
        self.mapping = mapping
        var e: [String: Entry] = [:]
        var s: [String: [Int]] = [:]
        var owned: [UnsafeMutableBufferPointer<Float>] = []
        do { try StateDict.resolve(raw, file: mapping.path, &e, &s, &owned) } catch {
            for b in owned { b.deallocate() }
            throw error
        }
        entries = e
        shapes = s
        self.owned = owned
    }

    private static func resolve(_ raw: [(String, RawTensor)], file source: String, _ e: inout [String: Entry],
                                _ s: inout [String: [Int]], _ owned: inout [UnsafeMutableBufferPointer<Float>]) throws {
        for (key, t) in raw {
            guard s[key] == nil else { throw WeightsError.corrupt(file: source, detail: "tensor '\(key)' appears twice") }
            try t.validate(key: key, file: source)
            s[key] = t.shape
            guard let dtype = t.dtype else { e[key] = .unreadable(dtype: t.dtypeName); continue }
            let n = RawTensor.elementCount(t.shape)!
            let base = t.storage.baseAddress
            if dtype == .float32, t.isContiguous, n > 0, let base, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                let p = (base + t.offset * 4).assumingMemoryBound(to: Float.self)
                e[key] = .floats(UnsafeBufferPointer(start: p, count: n))
            } else if dtype.isFloat {
                let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(n, 1))
                owned.append(buf)
                StateDict.gatherFloats(t, dtype, into: buf)
                e[key] = .floats(UnsafeBufferPointer(rebasing: buf[0..<n]))
            } else {
                var out = [Int64](); out.reserveCapacity(n)
                t.forEachRow { start, step, count in
                    for k in 0..<count { out.append(StateDict.readInt(t.storage, start + k * step, dtype)) }
                }
                e[key] = .ints(out)
            }
        }
    }

    deinit { for b in owned { b.deallocate() } }

    /// Sorted tensor names.
    public var keys: [String] { shapes.keys.sorted() }

    /// The tensor's shape, or nil when absent.
    public func shape(of key: String) -> [Int]? { shapes[key] }

    /// The stored element type ("float32", "int64", ...), or nil when absent.
    public func dtype(of key: String) -> String? {
        switch entries[key] {
        case .floats?: return "float32"
        case .ints?: return "int64"
        case .unreadable(let d)?: return d
        case .invalid?, nil: return nil
        }
    }

    /// float32 values, zero-copy from the mapped file where possible (other float dtypes converted once).
    /// Valid while the StateDict lives. Throws .missingTensor / .shapeMismatch(expected:) / .unsupportedDType.
    public func floats(_ key: String, shape expected: [Int]? = nil) throws -> UnsafeBufferPointer<Float> {
        switch try entry(key, expected) {
        case .floats(let b): return b
        case .ints: throw WeightsError.unsupportedDType(key: key, dtype: "int64 (expected a float tensor)", file: source)
        case .unreadable(let d): throw WeightsError.unsupportedDType(key: key, dtype: d, file: source)
        case .invalid(let why): throw WeightsError.corrupt(file: source, detail: why)
        }
    }

    /// Integer values (int64/int32/int16/int8/uint8/bool tensors), widened to Int64.
    public func int64s(_ key: String) throws -> [Int64] {
        switch try entry(key, nil) {
        case .ints(let v): return v
        case .floats: throw WeightsError.unsupportedDType(key: key, dtype: "float (expected an integer tensor)", file: source)
        case .unreadable(let d): throw WeightsError.unsupportedDType(key: key, dtype: d, file: source)
        case .invalid(let why): throw WeightsError.corrupt(file: source, detail: why)
        }
    }

    /// Integer values of an index buffer, also when stored as float: the official `weight_average()` saves every
    /// tensor through `.float()`, and torch's `load_state_dict` casts such buffers back. Every value must be integral.
    public func integers(_ key: String) throws -> [Int64] {
        if case .floats(let b)? = entries[key] {
            var out = [Int64](); out.reserveCapacity(b.count)
            for (i, v) in b.enumerated() {
                guard v.rounded() == v, abs(v) <= 9.0e15 else {
                    throw WeightsError.corrupt(file: source, detail: "tensor '\(key)' is an integer buffer stored as float, but element \(i) is \(v), not an integer")
                }
                out.append(Int64(v))
            }
            return out
        }
        return try int64s(key)
    }

    private func entry(_ key: String, _ expected: [Int]?) throws -> Entry {
        guard let e = entries[key], let found = shapes[key] else { throw WeightsError.missingTensor(key: key, file: source) }
        if let expected, expected != found {
            throw WeightsError.shapeMismatch(key: key, expected: expected, found: found, file: source)
        }
        return e
    }

    // MARK: - element reads (unaligned-safe, little-endian files)

    /// Converts/gathers a float tensor into `buf` in row-major order, one dtype branch per row.
    static func gatherFloats(_ t: RawTensor, _ dtype: DType, into buf: UnsafeMutableBufferPointer<Float>) {
        let p = t.storage.baseAddress!
        var i = 0
        t.forEachRow { start, step, count in
            switch dtype {
            case .float32:
                for k in 0..<count { buf[i + k] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: (start + k * step) * 4, as: UInt32.self))) }
            default:
                for k in 0..<count { buf[i + k] = readFloat(t.storage, start + k * step, dtype) }
            }
            i += count
        }
    }

    static func readFloat(_ s: UnsafeRawBufferPointer, _ i: Int, _ t: DType) -> Float {
        let p = s.baseAddress!
        switch t {
        case .float32: return Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        case .float64: return Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
        case .float16: return halfToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .bfloat16: return Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16)
        default: return 0
        }
    }

    static func readInt(_ s: UnsafeRawBufferPointer, _ i: Int, _ t: DType) -> Int64 {
        let p = s.baseAddress!
        switch t {
        case .int64: return Int64(littleEndian: p.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        case .int32: return Int64(Int32(littleEndian: p.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
        case .int16: return Int64(Int16(littleEndian: p.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)))
        case .int8: return Int64(Int8(bitPattern: s[i]))
        case .uint8, .bool: return Int64(s[i])
        default: return 0
        }
    }

    // MARK: - format detection and key prefixes

    enum Format { case safetensors, torchZip }

    static func detectFormat(_ f: MappedFile) throws -> Format {
        let b = UnsafeRawBufferPointer(start: f.base, count: f.count)
        if b.count >= 4, b[0] == 0x50, b[1] == 0x4b, [0x03, 0x05, 0x06].contains(b[2]) { return .torchZip }
        if b.count >= 2, b[0] == 0x80, (2...5).contains(b[1]) {
            throw WeightsError.unsupportedFormat(file: f.path, detail: "legacy non-ZIP PyTorch serialization (torch < 1.6): re-save it with torch >= 1.6, e.g. torch.save(torch.load(old), new)")
        }
        if b.count >= 9, b[8] == UInt8(ascii: "{") { return .safetensors }
        let head = b.prefix(8).map { String($0, radix: 16) }.joined(separator: " ")
        throw WeightsError.unsupportedFormat(file: f.path, detail: "neither safetensors nor a PyTorch ZIP checkpoint (first bytes: \(head)): give an HTS-AT .ckpt/.pt saved by torch >= 1.6 or a .safetensors file")
    }

    /// Drops `sed_model.` from every key that has it, and `model.` when every key has it.
    static func stripPrefixes(_ raw: [(String, RawTensor)], file: String) -> [(String, RawTensor)] {
        var out = raw.map { (k, t) in (k.hasPrefix("sed_model.") ? String(k.dropFirst(10)) : k, t) }
        if !out.isEmpty, out.allSatisfy({ $0.0.hasPrefix("model.") }) {
            out = out.map { (String($0.0.dropFirst(6)), $0.1) }
        }
        return out
    }
}

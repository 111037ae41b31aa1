/// A value on the restricted unpickler's stack. Containers are handles into the unpickler's arenas,
/// so deep or cyclic structures never recurse (no recursive deinit, no stack overflow).
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    case bigInt               // a long wider than 64 bits; never needed by a state_dict
    case float(Double)
    case string(String)
    case bytes(Int)           // only the length is kept
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case global(Int)
    case object(Int)          // inert result of calling/instantiating anything not understood
    case storage(Int)
    case tensor(Int)
}

/// A `('storage', torch.XStorage, key, location, numel)` persistent id.
struct PickledStorage {
    var dtype: DType?
    var typeName: String
    var key: String
    var numel: Int
}

/// A tensor view built by `torch._utils._rebuild_tensor_v2` (elements, not bytes).
struct PickledTensor {
    var storage: Int
    var offset: Int
    var shape: [Int]
    var strides: [Int]
}

/// Interprets pickle opcodes (protocols 0-5) without executing anything: it knows OrderedDict,
/// torch tensor rebuilding and storage persistent ids; every other global yields inert data.
struct Unpickler {
    let file: String
    private let data: UnsafeRawBufferPointer
    private var pos = 0

    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    private(set) var tuples: [[PickleValue]] = []
    private(set) var lists: [[PickleValue]] = []
    private(set) var dicts: [[(PickleValue, PickleValue)]] = []
    private(set) var globals: [String] = []
    private(set) var objects: [String] = []
    private(set) var storages: [PickledStorage] = []
    private(set) var tensors: [PickledTensor] = []

    // Limits far above any real checkpoint; they stop hostile inputs from exhausting memory.
    static let maxMarkDepth = 1_000
    static let maxStack = 1_000_000
    static let maxMemo = 4_000_000

    init(_ data: UnsafeRawBufferPointer, file: String) {
        self.data = data
        self.file = file
    }

    /// Runs the pickle to its STOP opcode and returns the top-level value.
    mutating func load() throws -> PickleValue {
        while true {
            guard pos < data.count else { throw truncated("pickle ends at byte \(pos) without a STOP opcode") }
            let at = pos
            let op = data[pos]
            pos += 1
            if op == 0x2e /* . STOP */ {
                guard let v = stack.last else { throw corrupt("STOP at byte \(at) with an empty stack") }
                return v
            }
            try execute(op, at: at)
            guard stack.count <= Unpickler.maxStack else { throw unsupported("pickle stack exceeds \(Unpickler.maxStack) values") }
        }
    }

    // MARK: - opcodes

    private mutating func execute(_ op: UInt8, at: Int) throws {
        switch op {
        case 0x80: _ = try take(1, op, at)                                      // PROTO
        case 0x95: _ = try take(8, op, at)                                      // FRAME (advisory)
        case 0x28:                                                              // MARK
            guard marks.count < Unpickler.maxMarkDepth else { throw unsupported("nesting deeper than \(Unpickler.maxMarkDepth) at byte \(at)") }
            marks.append(stack.count)
        case 0x4e: stack.append(.none)                                          // NONE
        case 0x88: stack.append(.bool(true))                                    // NEWTRUE
        case 0x89: stack.append(.bool(false))                                   // NEWFALSE
        case 0x4a: stack.append(.int(Int64(Int32(bitPattern: try take(4, op, at).le32(0)))))  // BININT
        case 0x4b: stack.append(.int(Int64(try take(1, op, at)[0])))            // BININT1
        case 0x4d: stack.append(.int(Int64(try take(2, op, at).le16(0))))       // BININT2
        case 0x8a: stack.append(long(try take(Int(try take(1, op, at)[0]), op, at)))     // LONG1
        case 0x8b: stack.append(long(try take(try length(4, op, at), op, at)))  // LONG4
        case 0x49, 0x4c:                                                        // INT, LONG (text)
            var s = try line(op, at)
            if s.hasSuffix("L") { s.removeLast() }
            if s == "01" { stack.append(.bool(true)) } else if s == "00" { stack.append(.bool(false)) }
            else if let v = Int64(s) { stack.append(.int(v)) }
            else if !s.isEmpty, s.drop(while: { $0 == "-" }).allSatisfy(\.isNumber) { stack.append(.bigInt) }
            else { throw corrupt("bad integer literal at byte \(at)") }
        case 0x47:                                                              // BINFLOAT (big-endian)
            let b = try take(8, op, at)
            var bits: UInt64 = 0
            for i in 0..<8 { bits = bits << 8 | UInt64(b[i]) }
            stack.append(.float(Double(bitPattern: bits)))
        case 0x46:                                                              // FLOAT (text)
            guard let v = Double(try line(op, at)) else { throw corrupt("bad float literal at byte \(at)") }
            stack.append(.float(v))
        case 0x58: stack.append(.string(text(try take(try length(4, op, at), op, at))))           // BINUNICODE
        case 0x8c: stack.append(.string(text(try take(Int(try take(1, op, at)[0]), op, at))))     // SHORT_BINUNICODE
        case 0x8d: stack.append(.string(text(try take(try length(8, op, at), op, at))))           // BINUNICODE8
        case 0x56: stack.append(.string(try line(op, at)))                                       // UNICODE (text)
        case 0x54: stack.append(.string(text(try take(try length(4, op, at), op, at))))           // BINSTRING
        case 0x55: stack.append(.string(text(try take(Int(try take(1, op, at)[0]), op, at))))     // SHORT_BINSTRING
        case 0x53:                                                                                // STRING (quoted text)
            var s = try line(op, at)
            if s.count >= 2, let f = s.first, f == "'" || f == "\"", s.last == f { s = String(s.dropFirst().dropLast()) }
            stack.append(.string(s))
        case 0x42: stack.append(.bytes(try take(try length(4, op, at), op, at).count))            // BINBYTES
        case 0x43: stack.append(.bytes(try take(Int(try take(1, op, at)[0]), op, at).count))      // SHORT_BINBYTES
        case 0x8e, 0x96: stack.append(.bytes(try take(try length(8, op, at), op, at).count))      // BINBYTES8, BYTEARRAY8
        case 0x29: tuples.append([]); stack.append(.tuple(tuples.count - 1))    // EMPTY_TUPLE
        case 0x74: tuples.append(try popMark(at)); stack.append(.tuple(tuples.count - 1))  // TUPLE
        case 0x85, 0x86, 0x87:                                                  // TUPLE1..3
            var items: [PickleValue] = []
            for _ in 0..<(op - 0x84) { items.insert(try pop(op, at), at: 0) }
            tuples.append(items)
            stack.append(.tuple(tuples.count - 1))
        case 0x5d: lists.append([]); stack.append(.list(lists.count - 1))       // EMPTY_LIST
        case 0x6c: lists.append(try popMark(at)); stack.append(.list(lists.count - 1))     // LIST
        case 0x61:                                                              // APPEND
            let v = try pop(op, at)
            try append([v], op, at)
        case 0x65: try append(try popMark(at), op, at)                          // APPENDS
        case 0x7d: dicts.append([]); stack.append(.dict(dicts.count - 1))       // EMPTY_DICT
        case 0x64:                                                              // DICT
            let items = try popMark(at)
            dicts.append(try pairs(items, op, at))
            stack.append(.dict(dicts.count - 1))
        case 0x73:                                                              // SETITEM
            let v = try pop(op, at), k = try pop(op, at)
            try setItems([(k, v)], op, at)
        case 0x75: try setItems(try pairs(try popMark(at), op, at), op, at)     // SETITEMS
        case 0x8f: objects.append("set"); stack.append(.object(objects.count - 1))          // EMPTY_SET
        case 0x90: _ = try popMark(at)                                          // ADDITEMS (sets stay inert)
        case 0x91: _ = try popMark(at); objects.append("frozenset"); stack.append(.object(objects.count - 1))  // FROZENSET
        case 0x30: _ = try pop(op, at)                                          // POP
        case 0x31: _ = try popMark(at)                                          // POP_MARK
        case 0x32: guard let v = stack.last else { throw underflow(op, at) }; stack.append(v)  // DUP
        case 0x71: try put(Int(try take(1, op, at)[0]), op, at)                 // BINPUT
        case 0x72: try put(Int(try take(4, op, at).le32(0)), op, at)            // LONG_BINPUT
        case 0x94: try put(memo.count, op, at)                                  // MEMOIZE
        case 0x70:                                                              // PUT (text)
            guard let i = Int(try line(op, at)), i >= 0 else { throw corrupt("bad memo index at byte \(at)") }
            try put(i, op, at)
        case 0x68: try get(Int(try take(1, op, at)[0]), at)                     // BINGET
        case 0x6a: try get(Int(try take(4, op, at).le32(0)), at)                // LONG_BINGET
        case 0x67:                                                              // GET (text)
            guard let i = Int(try line(op, at)) else { throw corrupt("bad memo index at byte \(at)") }
            try get(i, at)
        case 0x63:                                                              // GLOBAL
            let module = try line(op, at), name = try line(op, at)
            pushGlobal(module + "." + name)
        case 0x93:                                                              // STACK_GLOBAL
            let name = try pop(op, at), module = try pop(op, at)
            guard case .string(let n) = name, case .string(let m) = module else { throw corrupt("STACK_GLOBAL at byte \(at) needs two strings") }
            pushGlobal(m + "." + n)
        case 0x52:                                                              // REDUCE
            let args = try pop(op, at), callable = try pop(op, at)
            stack.append(reduce(callable, args))
        case 0x81:                                                              // NEWOBJ
            _ = try pop(op, at)
            stack.append(instantiate(try pop(op, at)))
        case 0x92:                                                              // NEWOBJ_EX
            _ = try pop(op, at); _ = try pop(op, at)
            stack.append(instantiate(try pop(op, at)))
        case 0x62: _ = try pop(op, at)                                          // BUILD: state is ignored, object stays inert
            guard !stack.isEmpty else { throw underflow(op, at) }
        case 0x69:                                                              // INST
            let module = try line(op, at), name = try line(op, at)
            _ = try popMark(at)
            objects.append(module + "." + name); stack.append(.object(objects.count - 1))
        case 0x6f:                                                              // OBJ
            let items = try popMark(at)
            guard let cls = items.first else { throw corrupt("OBJ at byte \(at) without a class") }
            stack.append(instantiate(cls))
        case 0x51: stack.append(persistent(try pop(op, at)))                    // BINPERSID
        case 0x50:                                                              // PERSID (text)
            objects.append("persistent id " + (try line(op, at))); stack.append(.object(objects.count - 1))
        default:
            throw unsupported("unknown or unsupported pickle opcode 0x\(String(op, radix: 16)) at byte \(at)")
        }
    }

    // MARK: - the only callables that are understood

    private mutating func reduce(_ callable: PickleValue, _ args: PickleValue) -> PickleValue {
        let name = globalName(callable)
        let a: [PickleValue] = { if case .tuple(let t) = args { return tuples[t] }; return [] }()
        switch name {
        case "collections.OrderedDict", "builtins.dict", "__builtin__.dict":
            // OrderedDict() then SETITEMS; an items list argument is honoured too.
            var items: [(PickleValue, PickleValue)] = []
            if case .list(let l)? = a.first {
                for p in lists[l] { if case .tuple(let t) = p, tuples[t].count == 2 { items.append((tuples[t][0], tuples[t][1])) } }
            }
            dicts.append(items)
            return .dict(dicts.count - 1)
        case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
            return rebuildTensor(a, name: name!)
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            if case .tensor? = a.first { return a[0] }
            return inert("a malformed \(name!) call")
        default:
            return inert("an object built by calling \(name ?? "a non-global value")")
        }
    }

    private mutating func instantiate(_ cls: PickleValue) -> PickleValue {
        let name = globalName(cls)
        if name == "collections.OrderedDict" { dicts.append([]); return .dict(dicts.count - 1) }
        return inert("an instance of \(name ?? "a non-global value")")
    }

    /// `(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
    private mutating func rebuildTensor(_ a: [PickleValue], name: String) -> PickleValue {
        guard a.count >= 4, case .storage(let s) = a[0], case .int(let off) = a[1],
              let shape = intTuple(a[2]), let strides = intTuple(a[3]), shape.count == strides.count else {
            return inert("a \(name) call with arguments this loader does not understand")
        }
        tensors.append(PickledTensor(storage: s, offset: Int(off), shape: shape, strides: strides))
        return .tensor(tensors.count - 1)
    }

    /// `('storage', torch.FloatStorage, key, location, numel)`.
    private mutating func persistent(_ pid: PickleValue) -> PickleValue {
        guard case .tuple(let t) = pid, tuples[t].count >= 5, case .string("storage") = tuples[t][0],
              let typeName = globalName(tuples[t][1]), case .string(let key) = tuples[t][2],
              case .int(let numel) = tuples[t][4], numel >= 0 else {
            return inert("an unsupported persistent id")
        }
        let short = typeName.split(separator: ".").last.map(String.init) ?? typeName
        storages.append(PickledStorage(dtype: Unpickler.storageTypes[short], typeName: typeName, key: key, numel: Int(numel)))
        return .storage(storages.count - 1)
    }

    static let storageTypes: [String: DType] = [
        "FloatStorage": .float32, "DoubleStorage": .float64, "HalfStorage": .float16, "BFloat16Storage": .bfloat16,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool,
    ]

    // MARK: - helpers

    func globalName(_ v: PickleValue) -> String? {
        if case .global(let g) = v { return globals[g] }
        return nil
    }

    private func intTuple(_ v: PickleValue) -> [Int]? {
        guard case .tuple(let t) = v else { return nil }
        var out: [Int] = []
        for x in tuples[t] { guard case .int(let i) = x else { return nil }; out.append(Int(i)) }
        return out
    }

    /// A short human description of a value, for error messages.
    func describe(_ v: PickleValue) -> String {
        switch v {
        case .none: return "None"
        case .bool: return "a bool"
        case .int, .bigInt: return "an integer"
        case .float: return "a float"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        case .global(let g): return "the global \(globals[g])"
        case .object(let o): return objects[o]
        case .storage: return "a bare storage"
        case .tensor: return "a tensor"
        }
    }

    private mutating func inert(_ what: String) -> PickleValue {
        objects.append(what)
        return .object(objects.count - 1)
    }

    private mutating func pushGlobal(_ name: String) {
        globals.append(name)
        stack.append(.global(globals.count - 1))
    }

    private mutating func append(_ items: [PickleValue], _ op: UInt8, _ at: Int) throws {
        guard let target = stack.last else { throw underflow(op, at) }
        if case .list(let l) = target { lists[l].append(contentsOf: items) }
        // Appending to inert objects (e.g. sets, deques) is a no-op.
    }

    private mutating func setItems(_ items: [(PickleValue, PickleValue)], _ op: UInt8, _ at: Int) throws {
        guard let target = stack.last else { throw underflow(op, at) }
        if case .dict(let d) = target { dicts[d].append(contentsOf: items) }
    }

    private func pairs(_ items: [PickleValue], _ op: UInt8, _ at: Int) throws -> [(PickleValue, PickleValue)] {
        guard items.count % 2 == 0 else { throw corrupt("odd number of dict items at byte \(at)") }
        return stride(from: 0, to: items.count, by: 2).map { (items[$0], items[$0 + 1]) }
    }

    private mutating func put(_ i: Int, _ op: UInt8, _ at: Int) throws {
        guard let v = stack.last else { throw underflow(op, at) }
        guard memo.count < Unpickler.maxMemo || memo[i] != nil else { throw unsupported("memo exceeds \(Unpickler.maxMemo) entries") }
        memo[i] = v
    }

    private mutating func get(_ i: Int, _ at: Int) throws {
        guard let v = memo[i] else { throw corrupt("memo entry \(i) read at byte \(at) was never stored") }
        stack.append(v)
    }

    private mutating func pop(_ op: UInt8, _ at: Int) throws -> PickleValue {
        guard let v = stack.popLast() else { throw underflow(op, at) }
        if let m = marks.last, stack.count < m { throw corrupt("opcode 0x\(String(op, radix: 16)) at byte \(at) pops across a MARK") }
        return v
    }

    private mutating func popMark(_ at: Int) throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw corrupt("no MARK for the opcode at byte \(at)") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    /// Reads `n` bytes after checking they exist (so a hostile length never allocates).
    private mutating func take(_ n: Int, _ op: UInt8, _ at: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= data.count - pos else {
            throw truncated("opcode 0x\(String(op, radix: 16)) at byte \(at) needs \(n) bytes but only \(data.count - pos) remain")
        }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: data[pos..<(pos + n)])
    }

    /// A 4- or 8-byte little-endian length, checked against the remaining bytes.
    private mutating func length(_ width: Int, _ op: UInt8, _ at: Int) throws -> Int {
        let b = try take(width, op, at)
        let v = width == 4 ? UInt64(b.le32(0)) : b.le64(0)
        guard v <= UInt64(data.count - pos) else {
            throw truncated("opcode 0x\(String(op, radix: 16)) at byte \(at) declares \(v) bytes but only \(data.count - pos) remain")
        }
        return Int(v)
    }

    /// A newline-terminated text argument (protocol 0 opcodes).
    private mutating func line(_ op: UInt8, _ at: Int) throws -> String {
        var end = pos
        while end < data.count, data[end] != 0x0a { end += 1 }
        guard end < data.count else { throw truncated("opcode 0x\(String(op, radix: 16)) at byte \(at) has no terminating newline") }
        defer { pos = end + 1 }
        return text(UnsafeRawBufferPointer(rebasing: data[pos..<end]))
    }

    private func text(_ b: UnsafeRawBufferPointer) -> String { String(decoding: b, as: UTF8.self) }

    /// Two's-complement little-endian long; wider than 64 bits is kept opaque.
    private func long(_ b: UnsafeRawBufferPointer) -> PickleValue {
        if b.isEmpty { return .int(0) }
        guard b.count <= 8 else { return .bigInt }
        var v: UInt64 = 0
        for i in stride(from: b.count - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        if b.count < 8, b[b.count - 1] & 0x80 != 0 { v |= ~0 << (UInt64(b.count) * 8) }  // sign-extend
        return .int(Int64(bitPattern: v))
    }

    private func underflow(_ op: UInt8, _ at: Int) -> WeightsError { corrupt("opcode 0x\(String(op, radix: 16)) at byte \(at) finds too few values on the stack") }
    private func corrupt(_ d: String) -> WeightsError { .corrupt(file: file, detail: "data.pkl: " + d) }
    private func truncated(_ d: String) -> WeightsError { .truncated(file: file, detail: "data.pkl: " + d) }
    private func unsupported(_ d: String) -> WeightsError { .unsupportedPickle(file: file, detail: "data.pkl: " + d) }
}

/// An `Encoder` that writes compact JSON with object keys in the order they were encoded.
///
/// Foundation's JSONEncoder on Linux orders keys by hash, and output lines need `"type"` first and a stable field
/// order for readers that grep them; this is that one encoder, used through `LineEncoder`.
struct JSONLineEncoder {
    /// `value` as compact JSON; throws for non-finite numbers.
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let root = Slot()
        try value.encode(to: NodeEncoder(slot: root, codingPath: []))
        var out = ""
        root.node.write(to: &out)
        return out
    }

    fileprivate indirect enum Node {
        case literal(String)
        case object([(String, Slot)])
        case array([Slot])

        func write(to out: inout String) {
            switch self {
            case .literal(let text): out += text
            case .object(let members):
                out += "{"
                for (i, (key, slot)) in members.enumerated() {
                    if i > 0 { out += "," }
                    Node.quote(key, into: &out)
                    out += ":"
                    slot.node.write(to: &out)
                }
                out += "}"
            case .array(let items):
                out += "["
                for (i, slot) in items.enumerated() {
                    if i > 0 { out += "," }
                    slot.node.write(to: &out)
                }
                out += "]"
            }
        }

        static func quote(_ s: String, into out: inout String) {
            out += "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20:
                    out += "\\u00" + String(scalar.value >> 4, radix: 16) + String(scalar.value & 0xF, radix: 16)
                default: out.unicodeScalars.append(scalar)
                }
            }
            out += "\""
        }

        static func number<T: BinaryFloatingPoint & LosslessStringConvertible>(_ x: T, _ path: [CodingKey]) throws -> Node {
            guard x.isFinite else {
                throw EncodingError.invalidValue(x, .init(codingPath: path, debugDescription: "JSON has no \(x)"))
            }
            // Whole numbers without ".0", as JSON readers expect; otherwise the shortest round-trip spelling.
            if x == x.rounded(), abs(x) < 1e15 { return .literal(String(Int64(x))) }
            return .literal(x.description)
        }
    }

    /// A place a value is written to (objects and arrays hold slots, so nested containers fill them later).
    fileprivate final class Slot {
        var node: Node = .literal("null")
    }

    fileprivate struct NodeEncoder: Encoder {
        let slot: Slot
        let codingPath: [CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            if case .object = slot.node {} else { slot.node = .object([]) }
            return KeyedEncodingContainer(Keyed(slot: slot, codingPath: codingPath))
        }

        func unkeyedContainer() -> UnkeyedEncodingContainer {
            if case .array = slot.node {} else { slot.node = .array([]) }
            return Unkeyed(slot: slot, codingPath: codingPath)
        }

        func singleValueContainer() -> SingleValueEncodingContainer { Single(slot: slot, codingPath: codingPath) }
    }

    fileprivate struct Single: SingleValueEncodingContainer {
        let slot: Slot
        let codingPath: [CodingKey]
        func encodeNil() { slot.node = .literal("null") }
        func encode(_ value: Bool) { slot.node = .literal(value ? "true" : "false") }
        func encode(_ value: String) { var s = ""; Node.quote(value, into: &s); slot.node = .literal(s) }
        func encode(_ value: Double) throws { slot.node = try Node.number(value, codingPath) }
        func encode(_ value: Float) throws { slot.node = try Node.number(value, codingPath) }
        func encode(_ value: Int) { slot.node = .literal(String(value)) }
        func encode(_ value: Int8) { slot.node = .literal(String(value)) }
        func encode(_ value: Int16) { slot.node = .literal(String(value)) }
        func encode(_ value: Int32) { slot.node = .literal(String(value)) }
        func encode(_ value: Int64) { slot.node = .literal(String(value)) }
        func encode(_ value: UInt) { slot.node = .literal(String(value)) }
        func encode(_ value: UInt8) { slot.node = .literal(String(value)) }
        func encode(_ value: UInt16) { slot.node = .literal(String(value)) }
        func encode(_ value: UInt32) { slot.node = .literal(String(value)) }
        func encode(_ value: UInt64) { slot.node = .literal(String(value)) }
        func encode<T: Encodable>(_ value: T) throws { try value.encode(to: NodeEncoder(slot: slot, codingPath: codingPath)) }
    }

    fileprivate struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let slot: Slot
        let codingPath: [CodingKey]

        private func add(_ key: Key) -> Slot {
            let child = Slot()
            guard case .object(var members) = slot.node else { preconditionFailure("keyed container over a non-object") }
            members.removeAll { $0.0 == key.stringValue }
            members.append((key.stringValue, child))
            slot.node = .object(members)
            return child
        }

        private func single(_ key: Key) -> Single { Single(slot: add(key), codingPath: codingPath + [key]) }

        func encodeNil(forKey key: Key) { single(key).encodeNil() }
        func encode(_ value: Bool, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: String, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: Double, forKey key: Key) throws { try single(key).encode(value) }
        func encode(_ value: Float, forKey key: Key) throws { try single(key).encode(value) }
        func encode(_ value: Int, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: Int8, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: Int16, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: Int32, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: Int64, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: UInt, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: UInt8, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: UInt16, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: UInt32, forKey key: Key) { single(key).encode(value) }
        func encode(_ value: UInt64, forKey key: Key) { single(key).encode(value) }
        func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try single(key).encode(value) }

        func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            NodeEncoder(slot: add(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
        }
        func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
            NodeEncoder(slot: add(key), codingPath: codingPath + [key]).unkeyedContainer()
        }
        func superEncoder() -> Encoder { NodeEncoder(slot: slot, codingPath: codingPath) }
        func superEncoder(forKey key: Key) -> Encoder { NodeEncoder(slot: add(key), codingPath: codingPath + [key]) }
    }

    fileprivate struct Unkeyed: UnkeyedEncodingContainer {
        let slot: Slot
        let codingPath: [CodingKey]
        var count: Int { if case .array(let items) = slot.node { return items.count }; return 0 }

        private func add() -> Slot {
            let child = Slot()
            guard case .array(var items) = slot.node else { preconditionFailure("unkeyed container over a non-array") }
            items.append(child)
            slot.node = .array(items)
            return child
        }

        private func single() -> Single { Single(slot: add(), codingPath: codingPath) }

        mutating func encodeNil() { single().encodeNil() }
        mutating func encode(_ value: Bool) { single().encode(value) }
        mutating func encode(_ value: String) { single().encode(value) }
        mutating func encode(_ value: Double) throws { try single().encode(value) }
        mutating func encode(_ value: Float) throws { try single().encode(value) }
        mutating func encode(_ value: Int) { single().encode(value) }
        mutating func encode(_ value: Int8) { single().encode(value) }
        mutating func encode(_ value: Int16) { single().encode(value) }
        mutating func encode(_ value: Int32) { single().encode(value) }
        mutating func encode(_ value: Int64) { single().encode(value) }
        mutating func encode(_ value: UInt) { single().encode(value) }
        mutating func encode(_ value: UInt8) { single().encode(value) }
        mutating func encode(_ value: UInt16) { single().encode(value) }
        mutating func encode(_ value: UInt32) { single().encode(value) }
        mutating func encode(_ value: UInt64) { single().encode(value) }
        mutating func encode<T: Encodable>(_ value: T) throws { try single().encode(value) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            NodeEncoder(slot: add(), codingPath: codingPath).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
            NodeEncoder(slot: add(), codingPath: codingPath).unkeyedContainer()
        }
        mutating func superEncoder() -> Encoder { NodeEncoder(slot: add(), codingPath: codingPath) }
    }
}

/// A JSON object with keys chosen at run time, written in the given order (a dictionary would lose it).
public struct OrderedJSONObject<Value: Encodable>: Encodable {
    /// The members, in output order.
    public var members: [(key: String, value: Value)]

    public init(_ members: [(key: String, value: Value)]) { self.members = members }

    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (key, value) in members { try c.encode(value, forKey: Key(stringValue: key)) }
    }
}

import Foundation

/// Reads the safetensors layout: u64 LE header length, JSON header, raw little-endian data.
enum SafeTensorsReader {
    static func read(_ f: MappedFile) throws -> [(String, RawTensor)] {
        let file = f.path
        let all = UnsafeRawBufferPointer(start: f.base, count: f.count)
        guard all.count >= 8 else { throw WeightsError.truncated(file: file, detail: "\(all.count) bytes, shorter than the 8-byte safetensors header length") }
        let declared = all.le64(0)
        guard declared <= UInt64(all.count - 8) else {
            throw WeightsError.truncated(file: file, detail: "safetensors header declares \(declared) bytes but only \(all.count - 8) follow")
        }
        let headerLen = Int(declared)
        let header = Data(UnsafeRawBufferPointer(rebasing: all[8..<(8 + headerLen)]))
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: header) } catch {
            throw WeightsError.corrupt(file: file, detail: "safetensors header is not valid JSON")
        }
        guard let top = json as? [String: Any] else {
            throw WeightsError.corrupt(file: file, detail: "safetensors header is not a JSON object")
        }
        let data = UnsafeRawBufferPointer(rebasing: all[(8 + headerLen)...])
        var out: [(String, RawTensor)] = []
        for (key, value) in top where key != "__metadata__" {
            guard let d = value as? [String: Any], let dtypeName = d["dtype"] as? String,
                  let shapeAny = d["shape"] as? [Any], let offsAny = d["data_offsets"] as? [Any] else {
                throw WeightsError.corrupt(file: file, detail: "safetensors entry '\(key)' lacks dtype, shape or data_offsets")
            }
            let shape = shapeAny.compactMap { exactInt($0) }
            let offs = offsAny.compactMap { exactInt($0) }
            guard shape.count == shapeAny.count, let n = RawTensor.elementCount(shape) else {
                throw WeightsError.corrupt(file: file, detail: "safetensors entry '\(key)' has an invalid shape \(shapeAny)")
            }
            guard offs.count == 2, offs[0] >= 0, offs[0] <= offs[1] else {
                throw WeightsError.corrupt(file: file, detail: "safetensors entry '\(key)' has invalid data_offsets \(offsAny)")
            }
            guard offs[1] <= data.count else {
                throw WeightsError.truncated(file: file, detail: "tensor '\(key)' data ends at byte \(offs[1]) of the data section, which has \(data.count) bytes")
            }
            let dtype = dtypes[dtypeName]
            let bytes = UnsafeRawBufferPointer(rebasing: data[offs[0]..<offs[1]])
            if let dtype {
                let (need, o) = n.multipliedReportingOverflow(by: dtype.size)
                guard !o, need == bytes.count else {
                    throw WeightsError.corrupt(file: file, detail: "tensor '\(key)' is \(dtypeName) \(shape), needing \(o ? "too many" : String(need)) bytes, but data_offsets span \(bytes.count)")
                }
            }
            out.append((key, RawTensor(dtype: dtype, dtypeName: dtype?.rawValue ?? dtypeName, shape: shape,
                                       strides: RawTensor.contiguousStrides(shape), offset: 0, storage: bytes)))
        }
        return out
    }

    static let dtypes: [String: DType] = [
        "F32": .float32, "F64": .float64, "F16": .float16, "BF16": .bfloat16,
        "I64": .int64, "I32": .int32, "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
    ]

    /// A non-negative JSON integer (rejects 1.5, -1, strings).
    private static func exactInt(_ v: Any) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        let d = n.doubleValue
        guard d >= 0, d == d.rounded(), d < 9.0e15 else { return nil }
        return Int(d)
    }
}

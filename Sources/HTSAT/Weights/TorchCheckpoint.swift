/// Reads a PyTorch ZIP checkpoint: a Lightning `.ckpt` (state_dict under "state_dict") or a plain
/// `torch.save(state_dict)`. Only state_dict tensors are located; other storages are never touched.
enum TorchCheckpointReader {
    static func read(_ f: MappedFile) throws -> [(String, RawTensor)] {
        let path = f.path
        let zip = try ZipArchive(f)
        // torch writes "<archive>/data.pkl"; take the shallowest one.
        guard let pkl = zip.entries.map(\.name).filter({ $0 == "data.pkl" || $0.hasSuffix("/data.pkl") })
            .min(by: { $0.count < $1.count }) else {
            throw WeightsError.unsupportedFormat(file: path, detail: "a ZIP without data.pkl, so not a PyTorch checkpoint: give a file written by torch.save")
        }
        let prefix = String(pkl.dropLast("data.pkl".count))
        if zip.contains(prefix + "byteorder") {
            let order = String(decoding: try zip.data(prefix + "byteorder"), as: UTF8.self)
            guard order == "little" else {
                throw WeightsError.unsupportedFormat(file: path, detail: "tensors stored in '\(order)' byte order; re-save the checkpoint on a little-endian machine")
            }
        }
        var p = Unpickler(try zip.data(pkl), file: path)
        let root = try p.load()
        guard case .dict(let top) = root else {
            throw WeightsError.unsupportedPickle(file: path, detail: "the top-level object is \(p.describe(root)), not a dict")
        }
        // Lightning nests the weights under "state_dict"; a plain torch.save(state_dict) is the dict itself.
        var items = p.dicts[top]
        if let sd = items.last(where: { if case .string("state_dict") = $0.0 { return true }; return false })?.1 {
            guard case .dict(let d) = sd else {
                throw WeightsError.unsupportedPickle(file: path, detail: "'state_dict' is \(p.describe(sd)), not a dict")
            }
            items = p.dicts[d]
        }

        var order: [String] = []
        var latest: [String: PickleValue] = [:]   // a repeated key keeps its last value, as in Python
        for (k, v) in items {
            guard case .string(let key) = k else {
                throw WeightsError.unsupportedPickle(file: path, detail: "a state_dict key is \(p.describe(k)), not a string")
            }
            if latest.updateValue(v, forKey: key) == nil { order.append(key) }
        }
        var out: [(String, RawTensor)] = []
        out.reserveCapacity(order.count)
        for key in order {
            let v = latest[key]!
            guard case .tensor(let ti) = v else {
                throw WeightsError.unsupportedPickle(file: path, detail: "state_dict entry '\(key)' is not a tensor but \(p.describe(v))")
            }
            let t = p.tensors[ti]
            let s = p.storages[t.storage]
            let entry = prefix + "data/" + s.key
            guard zip.contains(entry) else {
                throw WeightsError.corrupt(file: path, detail: "storage '\(entry)' of tensor '\(key)' is missing from the archive")
            }
            var bytes = try zip.data(entry)
            if let dtype = s.dtype {
                let (need, o) = s.numel.multipliedReportingOverflow(by: dtype.size)
                guard !o, need <= bytes.count else {
                    throw WeightsError.corrupt(file: path, detail: "storage '\(entry)' of tensor '\(key)' holds \(bytes.count) bytes, less than its \(s.numel) \(dtype.rawValue) elements")
                }
                bytes = UnsafeRawBufferPointer(rebasing: bytes[0..<need])
            }
            out.append((key, RawTensor(dtype: s.dtype, dtypeName: s.dtype?.rawValue ?? s.typeName, shape: t.shape,
                                       strides: t.strides, offset: t.offset, storage: bytes)))
        }
        return out
    }
}

/// Why weights could not be loaded; every case names the file, and the key and shapes where relevant.
public enum WeightsError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened or mapped (missing, unreadable, a directory).
    case cannotOpen(file: String, reason: String)
    /// The file has zero bytes.
    case empty(file: String)
    /// The file ends before a structure it declares (cut download, partial copy).
    case truncated(file: String, detail: String)
    /// A structure is self-contradictory (bad offsets, bad JSON, impossible sizes).
    case corrupt(file: String, detail: String)
    /// The state dict has no tensor of this name.
    case missingTensor(key: String, file: String)
    /// The tensor exists but has another shape.
    case shapeMismatch(key: String, expected: [Int], found: [Int], file: String)
    /// The tensor's element type cannot be read as requested.
    case unsupportedDType(key: String, dtype: String, file: String)
    /// The bytes are not a format this loader reads.
    case unsupportedFormat(file: String, detail: String)
    /// The pickle uses something a state_dict never needs (unknown opcode, non-tensor value, ...).
    case unsupportedPickle(file: String, detail: String)

    /// The file the error is about.
    public var file: String {
        switch self {
        case .cannotOpen(let f, _), .empty(let f), .truncated(let f, _), .corrupt(let f, _),
             .unsupportedFormat(let f, _), .unsupportedPickle(let f, _): return f
        case .missingTensor(_, let f), .shapeMismatch(_, _, _, let f), .unsupportedDType(_, _, let f): return f
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen(let f, let r):
            return "\(f): cannot open weights file (\(r)): check the path and its permissions"
        case .empty(let f):
            return "\(f): file is empty: the download or copy did not complete; fetch the checkpoint again"
        case .truncated(let f, let d):
            return "\(f): file is truncated (\(d)): the download or copy did not complete; fetch the checkpoint again"
        case .corrupt(let f, let d):
            return "\(f): file is corrupt (\(d)): fetch the checkpoint again or re-export it"
        case .missingTensor(let k, let f):
            return "\(f): no tensor '\(k)' in the state_dict: this checkpoint is not an HTS-AT model or is incomplete"
        case .shapeMismatch(let k, let e, let found, let f):
            return "\(f): tensor '\(k)' has shape \(found), expected \(e): this checkpoint does not match the expected architecture"
        case .unsupportedDType(let k, let d, let f):
            return "\(f): tensor '\(k)' has dtype \(d), which cannot be read here: re-save it as float32 (floats) or int64 (indices)"
        case .unsupportedFormat(let f, let d):
            return "\(f): unsupported weights format (\(d))"
        case .unsupportedPickle(let f, let d):
            return "\(f): unsupported checkpoint contents (\(d)): only a state_dict of tensors is read and nothing in the file is executed; re-save with torch.save(model.state_dict(), path) or as safetensors"
        }
    }
}

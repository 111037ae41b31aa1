/// Why a front-end stage could not be built; names the parameter and what to change.
public enum FrontEndError: Error, CustomStringConvertible, Equatable {
    /// A parameter is out of range (e.g. an odd FFT size or a zero hop).
    case invalidParameter(name: String, value: Int, requirement: String)
    /// A mel filterbank has the wrong number of values for its declared shape.
    case filterbankShape(expected: [Int], foundCount: Int)

    public var description: String {
        switch self {
        case .invalidParameter(let name, let value, let requirement):
            return "front end: \(name) = \(value) is invalid: it must be \(requirement)"
        case .filterbankShape(let expected, let count):
            return "front end: mel filterbank has \(count) values, expected shape \(expected) (bins x mels)"
        }
    }
}

import CPNG
import Foundation

/// An 8-bit RGB image, row-major from the top.
public struct RGBImage: Sendable {
    public let width: Int, height: Int
    /// width x height x 3 bytes.
    public var pixels: [UInt8]

    /// A black image.
    public init(width: Int, height: Int) {
        (self.width, self.height) = (width, height)
        pixels = [UInt8](repeating: 0, count: width * height * 3)
    }

    /// Sets one pixel (ignored outside the image).
    public mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, x < width, y >= 0, y < height else { return }
        let i = (y * width + x) * 3
        (pixels[i], pixels[i + 1], pixels[i + 2]) = c
    }

    /// The image as PNG bytes (libpng's simplified API), or nil if libpng refused it.
    public func png() -> [UInt8]? {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = png_uint_32(PNG_FORMAT_RGB)
        var size: png_alloc_size_t = 0
        let stride = Int32(width * 3)
        // First call sizes the output, the second fills it.
        guard pixels.withUnsafeBytes({ png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil) }) != 0,
              size > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: Int(size))
        let ok = out.withUnsafeMutableBytes { dst in
            pixels.withUnsafeBytes { png_image_write_to_memory(&image, dst.baseAddress, &size, 0, $0.baseAddress, stride, nil) }
        }
        png_image_free(&image)
        return ok != 0 ? Array(out.prefix(Int(size))) : nil
    }
}

/// A log-mel spectrogram (`frames x mels` dB values, frame-major) drawn as an image, low bands at the bottom.
public enum SpectrogramPicture {
    /// Viridis, sampled at five stops: dark blue (quiet) to yellow (loud).
    static let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]

    /// The colour of `t` in 0...1.
    public static func color(_ t: Double) -> (UInt8, UInt8, UInt8) {
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), f = x - Double(i)
        let a = stops[i], b = stops[i + 1]
        return (UInt8(a.0 + (b.0 - a.0) * f), UInt8(a.1 + (b.1 - a.1) * f), UInt8(a.2 + (b.2 - a.2) * f))
    }

    /// Renders `logMel` at `width` columns (frames averaged or repeated) and `rowsPerMel` pixels per band, over an
    /// 80-dB range below its maximum.
    public static func render(logMel: [Float], mels: Int, width: Int, rowsPerMel: Int = 2) -> RGBImage {
        let frames = mels > 0 ? logMel.count / mels : 0
        var image = RGBImage(width: max(1, width), height: max(1, mels * rowsPerMel))
        guard frames > 0 else { return image }
        let top = Double(logMel.max() ?? 0), floor = top - 80
        for x in 0..<image.width {
            let f0 = x * frames / image.width, f1 = max(f0 + 1, (x + 1) * frames / image.width)
            for m in 0..<mels {
                var sum = 0.0
                for f in f0..<f1 { sum += Double(logMel[f * mels + m]) }
                let c = color((sum / Double(f1 - f0) - floor) / 80)
                for r in 0..<rowsPerMel { image.set(x, (mels - 1 - m) * rowsPerMel + r, c) }
            }
        }
        return image
    }

    /// A clip's picture: its spectrogram with the event span [`from`, `to`) (fractions of the clip) marked by a bar
    /// above it and white edges.
    public static func clip(logMel: [Float], mels: Int, from: Double, to: Double) -> RGBImage {
        let frames = mels > 0 ? logMel.count / mels : 0
        let width = min(max(frames, 1), 2400), bar = 8
        let spec = render(logMel: logMel, mels: mels, width: width)
        var image = RGBImage(width: width, height: spec.height + bar)
        image.pixels.replaceSubrange((bar * width * 3)..., with: spec.pixels)
        let x0 = Int((from * Double(width)).rounded()), x1 = Int((to * Double(width)).rounded())
        for y in 0..<bar { for x in 0..<width { image.set(x, y, x >= x0 && x < x1 ? (230, 60, 50) : (40, 40, 40)) } }
        for y in bar..<image.height { image.set(x0, y, (255, 255, 255)); image.set(x1 - 1, y, (255, 255, 255)) }
        return image
    }
}

extension HTSATModel {
    /// Identifies the weights, not the file: the same checkpoint as Lightning `.ckpt`, `torch.save` or safetensors
    /// gives the same value, another checkpoint (or a fine-tune of this one) another. Files made for one model (custom
    /// events' prototypes) record it so that a different model is refused instead of scoring garbage.
    ///
    /// FNV-1a (64 bit) over the architecture and the float32 values of the tensors that bound the feature space: the
    /// patch embedding, the final norm and the token-semantic head. Not a cryptographic hash; it detects mix-ups.
    public func fingerprint() -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
        }
        let c = config
        let architecture = [c.embedDim, c.classes, c.numFeatures, c.tokenSteps] + c.depths
        architecture.map { Int64($0) }.withUnsafeBytes(mix)
        for key in ["patch_embed.proj.weight", "norm.weight", "norm.bias", "tscam_conv.weight", "tscam_conv.bias"] {
            guard let values = try? stateDict.floats(key) else { continue }
            mix(UnsafeRawBufferPointer(values))
        }
        return "fnv1a64:" + String(hash, radix: 16).leftPadded(to: 16)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

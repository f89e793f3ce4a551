/// Type-4 transport messages: 16-byte header, then the packet padded to a multiple of 16 and sealed in place.
enum TransportCodec {
    /// One allocation per packet (the datagram itself); ChaCha20-Poly1305 runs in place inside it.
    static func seal(_ packet: [UInt8], keypair: inout Keypair) -> [UInt8] {
        let paddedLength = (packet.count + 15) & ~15
        let counter = keypair.sendCounter
        keypair.sendCounter += 1
        var datagram = [UInt8](repeating: 0, count: WireGuardMessage.transportHeaderLength + paddedLength + AEAD.tagLength)
        datagram[0] = WireGuardMessageType.transport.rawValue
        LittleEndian.put32(keypair.remoteIndex, into: &datagram, at: 4)
        LittleEndian.put64(counter, into: &datagram, at: 8)
        datagram.withUnsafeMutableBytes { bytes in
            let body = UnsafeMutableRawBufferPointer(rebasing: bytes[16..<(16 + paddedLength)])
            packet.withUnsafeBytes { body.copyMemory(from: $0) }
            keypair.sendKey.withUnsafeBytes { key in
                AEAD.sealInPlace(body, tag: UnsafeMutableRawBufferPointer(rebasing: bytes[(16 + paddedLength)...]), counter: counter, key: key)
            }
        }
        return datagram
    }

    /// The padded plaintext, or nil when the tag does not authenticate.
    static func open(_ datagram: [UInt8], counter: UInt64, key: [UInt8]) -> [UInt8]? {
        var body = Array(datagram[WireGuardMessage.transportHeaderLength..<(datagram.count - AEAD.tagLength)])
        let ok = body.withUnsafeMutableBytes { body in
            datagram.withUnsafeBytes { all in
                key.withUnsafeBytes { key in
                    AEAD.openInPlace(body, tag: UnsafeRawBufferPointer(rebasing: all[(all.count - AEAD.tagLength)...]), counter: counter, key: key)
                }
            }
        }
        return ok ? body : nil
    }
}

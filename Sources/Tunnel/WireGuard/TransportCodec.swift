import NIOCore

/// Type-4 transport messages: 16-byte header, then the packet padded to a multiple of 16 and sealed.
///
/// The data path works on `ByteBuffer`s, so a packet is written once and sealed in the buffer the socket sends,
/// and a received datagram is decrypted straight into the buffer the streams read.
enum TransportCodec {
    static let headerLength = WireGuardMessage.transportHeaderLength

    /// A datagram-to-be: room for the header, then `packet` (the slow path's arrays come in here).
    static func datagram(for packet: [UInt8], allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var datagram = allocator.buffer(capacity: sealedLength(of: packet.count))
        datagram.writeRepeatingByte(0, count: headerLength)
        datagram.writeBytes(packet)
        return datagram
    }

    /// The whole message's length for a packet of `count` bytes.
    static func sealedLength(of count: Int) -> Int { headerLength + ((count + 15) & ~15) + AEAD.tagLength }

    /// Seals `datagram` in place: its readable bytes are `headerLength` bytes of room, then the packet. Writes
    /// the header, pads the packet with zeros and appends the tag.
    static func seal(_ datagram: inout ByteBuffer, keypair: inout Keypair) {
        let packetLength = datagram.readableBytes - headerLength
        let paddedLength = (packetLength + 15) & ~15
        let counter = keypair.sendCounter
        keypair.sendCounter += 1
        let start = datagram.readerIndex
        datagram.setInteger(UInt32(WireGuardMessageType.transport.rawValue), at: start, endianness: .little)
        datagram.setInteger(keypair.remoteIndex, at: start + 4, endianness: .little)
        datagram.setInteger(counter, at: start + 8, endianness: .little)
        datagram.writeRepeatingByte(0, count: paddedLength - packetLength + AEAD.tagLength)
        datagram.withUnsafeMutableReadableBytes { bytes in
            let body = UnsafeMutableRawBufferPointer(rebasing: bytes[headerLength..<(headerLength + paddedLength)])
            keypair.sendKey.withUnsafeBytes { key in
                AEAD.sealInPlace(body, tag: UnsafeMutableRawBufferPointer(rebasing: bytes[(headerLength + paddedLength)...]), counter: counter, key: key)
            }
        }
    }

    /// The padded plaintext of a transport message in a buffer of its own, or nil when the tag does not
    /// authenticate. `datagram` is left as it was (it may share storage with other received datagrams).
    static func open(_ datagram: ByteBuffer, counter: UInt64, key: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer? {
        let length = datagram.readableBytes - headerLength - AEAD.tagLength
        var plaintext = allocator.buffer(capacity: length)
        var authentic = false
        datagram.withUnsafeReadableBytes { all in
            key.withUnsafeBytes { key in
                _ = plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { output in
                    authentic = AEAD.open(
                        UnsafeRawBufferPointer(rebasing: all[headerLength..<(headerLength + length)]),
                        into: UnsafeMutableRawBufferPointer(rebasing: output[0..<length]),
                        tag: UnsafeRawBufferPointer(rebasing: all[(headerLength + length)...]), counter: counter, key: key
                    )
                    return authentic ? length : 0
                }
            }
        }
        return authentic ? plaintext : nil
    }
}

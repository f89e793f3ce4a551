/// WireGuard's handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s with WireGuard's prologue (whitepaper §5.4.2-5.4.4).
/// Pure functions over byte arrays: no clock, no randomness of its own (ephemeral keys and timestamps are
/// passed in), so known-answer tests can replay a handshake exactly.
public enum Noise {
    public static let construction = Array("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s".utf8)
    public static let identifier = Array("WireGuard v1 zx2c4 Jason@zx2c4.com".utf8)
    static let labelMAC1 = Array("mac1----".utf8)
    static let labelCookie = Array("cookie--".utf8)
    static let initialChainingKey = BLAKE2s.hash(construction)
    static let initialHash = BLAKE2s.hash(initialChainingKey, identifier)
    public static let zeroPresharedKey = [UInt8](repeating: 0, count: 32)

    /// Running handshake state between the two messages.
    public struct State: Sendable {
        var chainingKey: [UInt8]
        var hash: [UInt8]
        var localEphemeral: [UInt8] = []
        var remoteEphemeral: [UInt8] = []
        var remoteStatic: [UInt8] = []
        /// Sender index of the initiation (the initiator's index).
        var initiatorIndex: UInt32 = 0
    }

    /// Transport keys from a completed handshake, from this side's point of view.
    public struct SessionKeys: Sendable, Equatable {
        public let send: [UInt8]
        public let receive: [UInt8]
    }

    public enum Failure: Error { case badPoint, authentication, malformed }

    // MARK: Initiation

    /// Builds a 148-byte initiation (macs zeroed; see `Macs.stamp`) and the state to finish with.
    public static func createInitiation(
        localStatic: NodePrivateKey, remoteStatic: NodePublicKey, ephemeral: [UInt8], timestamp: [UInt8], senderIndex: UInt32
    ) throws -> (message: [UInt8], state: State) {
        var state = State(chainingKey: initialChainingKey, hash: BLAKE2s.hash(initialHash, remoteStatic.bytes))
        state.localEphemeral = ephemeral
        state.remoteStatic = remoteStatic.bytes
        state.initiatorIndex = senderIndex
        let ephemeralPublic = Curve25519.publicKey(for: ephemeral)
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: ephemeralPublic)[0]
        state.hash = BLAKE2s.hash(state.hash, ephemeralPublic)

        guard let es = Curve25519.sharedSecret(privateKey: ephemeral, publicKey: remoteStatic.bytes) else { throw Failure.badPoint }
        var derived = BLAKE2s.kdf(2, chainingKey: state.chainingKey, input: es)
        state.chainingKey = derived[0]
        let encryptedStatic = AEAD.seal(localStatic.publicKey.bytes, counter: 0, key: derived[1], associatedData: state.hash)
        state.hash = BLAKE2s.hash(state.hash, encryptedStatic)

        guard let ss = Curve25519.sharedSecret(privateKey: localStatic.bytes, publicKey: remoteStatic.bytes) else { throw Failure.badPoint }
        derived = BLAKE2s.kdf(2, chainingKey: state.chainingKey, input: ss)
        state.chainingKey = derived[0]
        let encryptedTimestamp = AEAD.seal(timestamp, counter: 0, key: derived[1], associatedData: state.hash)
        state.hash = BLAKE2s.hash(state.hash, encryptedTimestamp)

        var message = [UInt8](repeating: 0, count: WireGuardMessage.initiationLength)
        message[0] = WireGuardMessageType.initiation.rawValue
        LittleEndian.put32(senderIndex, into: &message, at: 4)
        message.replaceSubrange(8..<40, with: ephemeralPublic)
        message.replaceSubrange(40..<88, with: encryptedStatic)
        message.replaceSubrange(88..<116, with: encryptedTimestamp)
        return (message, state)
    }

    /// Responder side: authenticates an initiation and learns who sent it and when.
    public static func consumeInitiation(_ message: [UInt8], localStatic: NodePrivateKey) throws -> (
        remoteStatic: NodePublicKey, timestamp: [UInt8], state: State
    ) {
        guard message.count == WireGuardMessage.initiationLength else { throw Failure.malformed }
        var state = State(chainingKey: initialChainingKey, hash: BLAKE2s.hash(initialHash, localStatic.publicKey.bytes))
        state.initiatorIndex = LittleEndian.get32(message, at: 4)
        let ephemeralPublic = Array(message[8..<40])
        state.remoteEphemeral = ephemeralPublic
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: ephemeralPublic)[0]
        state.hash = BLAKE2s.hash(state.hash, ephemeralPublic)

        guard let es = Curve25519.sharedSecret(privateKey: localStatic.bytes, publicKey: ephemeralPublic) else { throw Failure.badPoint }
        var derived = BLAKE2s.kdf(2, chainingKey: state.chainingKey, input: es)
        state.chainingKey = derived[0]
        let encryptedStatic = Array(message[40..<88])
        guard let staticBytes = AEAD.open(encryptedStatic, counter: 0, key: derived[1], associatedData: state.hash),
            let remoteStatic = NodePublicKey(bytes: staticBytes)
        else { throw Failure.authentication }
        state.hash = BLAKE2s.hash(state.hash, encryptedStatic)
        state.remoteStatic = staticBytes

        guard let ss = Curve25519.sharedSecret(privateKey: localStatic.bytes, publicKey: staticBytes) else { throw Failure.badPoint }
        derived = BLAKE2s.kdf(2, chainingKey: state.chainingKey, input: ss)
        state.chainingKey = derived[0]
        let encryptedTimestamp = Array(message[88..<116])
        guard let timestamp = AEAD.open(encryptedTimestamp, counter: 0, key: derived[1], associatedData: state.hash) else {
            throw Failure.authentication
        }
        state.hash = BLAKE2s.hash(state.hash, encryptedTimestamp)
        return (remoteStatic, timestamp, state)
    }

    // MARK: Response

    /// Builds a 92-byte response (macs zeroed) and the responder's transport keys.
    public static func createResponse(
        state: State, ephemeral: [UInt8], senderIndex: UInt32, presharedKey: [UInt8] = zeroPresharedKey
    ) throws -> (message: [UInt8], keys: SessionKeys) {
        var state = state
        let ephemeralPublic = Curve25519.publicKey(for: ephemeral)
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: ephemeralPublic)[0]
        state.hash = BLAKE2s.hash(state.hash, ephemeralPublic)
        guard let ee = Curve25519.sharedSecret(privateKey: ephemeral, publicKey: state.remoteEphemeral),
            let se = Curve25519.sharedSecret(privateKey: ephemeral, publicKey: state.remoteStatic)
        else { throw Failure.badPoint }
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: ee)[0]
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: se)[0]
        let derived = BLAKE2s.kdf(3, chainingKey: state.chainingKey, input: presharedKey)
        state.chainingKey = derived[0]
        state.hash = BLAKE2s.hash(state.hash, derived[1])
        let encryptedNothing = AEAD.seal([], counter: 0, key: derived[2], associatedData: state.hash)
        state.hash = BLAKE2s.hash(state.hash, encryptedNothing)

        var message = [UInt8](repeating: 0, count: WireGuardMessage.responseLength)
        message[0] = WireGuardMessageType.response.rawValue
        LittleEndian.put32(senderIndex, into: &message, at: 4)
        LittleEndian.put32(state.initiatorIndex, into: &message, at: 8)
        message.replaceSubrange(12..<44, with: ephemeralPublic)
        message.replaceSubrange(44..<60, with: encryptedNothing)
        let transport = BLAKE2s.kdf(2, chainingKey: state.chainingKey, input: [])
        return (message, SessionKeys(send: transport[1], receive: transport[0]))
    }

    /// Initiator side: authenticates a response to `state` and derives the initiator's transport keys.
    public static func consumeResponse(
        _ message: [UInt8], state: State, localStatic: NodePrivateKey, presharedKey: [UInt8] = zeroPresharedKey
    ) throws -> SessionKeys {
        guard message.count == WireGuardMessage.responseLength else { throw Failure.malformed }
        var state = state
        let ephemeralPublic = Array(message[12..<44])
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: ephemeralPublic)[0]
        state.hash = BLAKE2s.hash(state.hash, ephemeralPublic)
        guard let ee = Curve25519.sharedSecret(privateKey: state.localEphemeral, publicKey: ephemeralPublic),
            let se = Curve25519.sharedSecret(privateKey: localStatic.bytes, publicKey: ephemeralPublic)
        else { throw Failure.badPoint }
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: ee)[0]
        state.chainingKey = BLAKE2s.kdf(1, chainingKey: state.chainingKey, input: se)[0]
        let derived = BLAKE2s.kdf(3, chainingKey: state.chainingKey, input: presharedKey)
        state.chainingKey = derived[0]
        state.hash = BLAKE2s.hash(state.hash, derived[1])
        guard AEAD.open(Array(message[44..<60]), counter: 0, key: derived[2], associatedData: state.hash) != nil else {
            throw Failure.authentication
        }
        let transport = BLAKE2s.kdf(2, chainingKey: state.chainingKey, input: [])
        return SessionKeys(send: transport[0], receive: transport[1])
    }
}

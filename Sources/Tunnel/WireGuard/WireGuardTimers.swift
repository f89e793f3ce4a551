/// WireGuard's protocol constants (whitepaper §6), written once.
public enum WireGuardTimers {
    /// Initiator starts a new handshake when its session is this old.
    public static let rekeyAfterTime: Duration = .seconds(120)
    /// No packet is sent or accepted on a session older than this.
    public static let rejectAfterTime: Duration = .seconds(180)
    /// Handshake retransmission interval (plus up to `rekeyTimeoutJitter`).
    public static let rekeyTimeout: Duration = .seconds(5)
    public static let rekeyTimeoutJitterMilliseconds = 334
    /// Give up retrying a handshake after this long; queued packets are dropped.
    public static let rekeyAttemptTime: Duration = .seconds(90)
    /// Send an empty keepalive when we received data and sent nothing for this long.
    public static let keepaliveTimeout: Duration = .seconds(10)
    /// Keys of an idle peer are erased this long after the last handshake.
    public static let zeroKeysAfter: Duration = rejectAfterTime * 3
    /// Initiator rekeys after this many messages on one session.
    public static let rekeyAfterMessages: UInt64 = 1 << 60
    /// Per-peer floor between consumed initiations: floods of valid initiations cost one DH per 50 ms.
    public static let handshakeInitiationRate: Duration = .milliseconds(50)
    /// A cookie from a responder is used for this long.
    public static let cookieLifetime: Duration = .seconds(120)
    /// Once under load, stay there this long (wireguard-go's UnderLoadAfterTime).
    public static let underLoadAfterTime: Duration = .seconds(1)
}

/// One session's keys and counters.
struct Keypair {
    let sendKey: [UInt8]
    let receiveKey: [UInt8]
    let localIndex: UInt32
    let remoteIndex: UInt32
    let createdAt: ContinuousClock.Instant
    let isInitiator: Bool
    var sendCounter: UInt64 = 0
    var replay = ReplayWindow()

    func canSend(now: ContinuousClock.Instant) -> Bool {
        now - createdAt < WireGuardTimers.rejectAfterTime && sendCounter < ReplayWindow.counterLimit
    }

    func canReceive(now: ContinuousClock.Instant) -> Bool { now - createdAt < WireGuardTimers.rejectAfterTime }
}

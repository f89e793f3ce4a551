/// One direction's flow-control credit (RFC 9000 §4), for a stream or for the whole connection.
///
/// The sender may not pass `limit`; the receiver raises it (MAX_DATA / MAX_STREAM_DATA) as the application
/// consumes bytes, so a slow reader holds back the sender instead of growing memory.
public struct SendCredit: Equatable, Sendable {
    public private(set) var limit: UInt64
    public private(set) var sent: UInt64 = 0
    /// The limit a DATA_BLOCKED was last sent at, so it is sent once per limit.
    private var blockedReportedAt: UInt64?

    public init(limit: UInt64) { self.limit = limit }

    public var available: UInt64 { limit - sent }

    /// Records `count` bytes as sent; they must fit in `available`.
    public mutating func consume(_ count: UInt64) {
        precondition(count <= available, "flow control: sending past the peer's limit")  // callers take `available` first
        sent += count
    }

    /// A MAX_DATA / MAX_STREAM_DATA: limits only ever grow (smaller ones are stale and ignored).
    public mutating func raise(to newLimit: UInt64) { limit = max(limit, newLimit) }

    /// True once per limit when the sender has data but no credit: time to send (STREAM_)DATA_BLOCKED.
    public mutating func shouldReportBlocked() -> Bool {
        guard available == 0, blockedReportedAt != limit else { return false }
        blockedReportedAt = limit
        return true
    }
}

public struct ReceiveCredit: Equatable, Sendable {
    /// How far past what the application has read the peer may send.
    public let window: UInt64
    /// The limit the peer was last told.
    public private(set) var advertised: UInt64
    public private(set) var highestReceived: UInt64 = 0
    public private(set) var consumed: UInt64 = 0

    public init(window: UInt64) { (self.window, self.advertised) = (window, window) }

    /// Data up to `offset` arrived; throws FLOW_CONTROL_ERROR if the peer went past its limit.
    public mutating func received(upTo offset: UInt64) throws {
        guard offset <= advertised else { throw FlowControlError.limitExceeded(offset: offset, limit: advertised) }
        highestReceived = max(highestReceived, offset)
    }

    /// The application read `count` more bytes. Returns a new limit to advertise once half the window has been
    /// used, so updates are neither per byte nor too late for a sender at full speed.
    public mutating func consume(_ count: UInt64) -> UInt64? {
        consumed += count
        guard advertised - consumed <= window / 2 else { return nil }
        advertised = consumed + window
        return advertised
    }
}

public enum FlowControlError: Error, Equatable {
    case limitExceeded(offset: UInt64, limit: UInt64)
}

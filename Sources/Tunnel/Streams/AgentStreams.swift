import Foundation
import NIOCore

/// Opens mesh streams to agents by id. The gateway's mesh node (`GatewayMesh`) is the one in production: it
/// finds the agent's node through the coordinator. Code outside Gateway (the app proxy) and tests see only this.
public protocol AgentStreamDialer: Sendable {
    func openStream<Output: Sendable>(
        toAgent id: UUID, service: MeshService, initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws -> Output
}

/// Streams to `tcp:PORT` of agents that carry HTTP/1.1 and may be reused between exchanges (keep-alive). The
/// seam the app proxy and the gateway's diagnostics use; `AgentStreamPool` (Gateway) keeps the idle ones.
///
/// A checked-out stream belongs to the caller, who either checks it in after a complete exchange that both
/// sides want to keep alive, or closes it. It is never both, and never handed to two callers.
public protocol AgentStreamSource: Sendable {
    /// An idle stream to `tcp:port` of `agent` with its HTTP/1.1 client pipeline in place, or a new one.
    func checkout(agent: UUID, port: UInt16) async throws -> AgentStreamLease
    /// Returns a stream whose exchange ended cleanly with keep-alive on both sides. A stream that has closed or
    /// half-closed meanwhile is dropped instead.
    func checkin(_ lease: AgentStreamLease) async
    /// `checkin` on the stream's event loop, where an exchange ends: no hop, nothing to wait for. Done before the
    /// exchange's caller hears the end, so its next checkout finds the stream (no default that defers it for that).
    func checkinOnLoop(_ lease: AgentStreamLease)
}

/// A checked-out stream.
public struct AgentStreamLease: Sendable {
    public let channel: any Channel
    public let agent: UUID
    public let port: UInt16
    /// It carried an earlier exchange. A failure before any response byte may then only mean the server closed
    /// its idle connection meanwhile (the usual keep-alive race): an idempotent request is worth one more try.
    public let reused: Bool
    /// For a stream that waited idle: run on its event loop before the first write. False means it ended while
    /// idle (the server closed it): close it and check out another. Checked there rather than at checkout, so
    /// taking a stream costs no hop of its own.
    public let claim: (@Sendable () -> Bool)?

    public init(channel: any Channel, agent: UUID, port: UInt16, reused: Bool, claim: (@Sendable () -> Bool)? = nil) {
        (self.channel, self.agent, self.port, self.reused, self.claim) = (channel, agent, port, reused, claim)
    }
}

import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// Contexts that carry the result of session authentication.
public protocol SessionCarrying: RequestContext {
    var session: AuthenticatedSession? { get set }
    /// Why a presented credential was refused, for a precise 401.
    var sessionProblem: String? { get set }
}

/// The gateway's per-request context: the caller's address and, once `SessionMiddleware` ran, the session.
public struct GatewayContext: RequestContext, SessionCarrying {
    public var coreContext: CoreRequestContextStorage
    public var session: AuthenticatedSession?
    public var sessionProblem: String?
    /// Peer IP of the TCP connection; rate limits key on it.
    public let remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// API bodies are small JSON documents.
    public var maxUploadSize: Int { 1 << 20 }
    public var requestDecoder: JSONDecoder { APIJSON.decoder }
    public var responseEncoder: JSONEncoder { APIJSON.encoder }
}

/// A request whose session was verified; routes in this group cannot run without one.
public struct SignedInContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let session: AuthenticatedSession
    public let remoteAddress: String?

    public init(context: GatewayContext) throws {
        guard let session = context.session else {
            if let problem = context.sessionProblem { throw APIError(.unauthorized, problem) }
            throw APIError.notSignedIn
        }
        (coreContext, self.session, remoteAddress) = (context.coreContext, session, context.remoteAddress)
    }

    public var user: User { session.user }
    public var maxUploadSize: Int { 1 << 20 }
    public var requestDecoder: JSONDecoder { APIJSON.decoder }
    public var responseEncoder: JSONEncoder { APIJSON.encoder }
}

/// Context of the WebSocket router: upgrades are decided here, with the same session authentication.
public struct GatewayWebSocketContext: WebSocketRequestContext, SessionCarrying {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<GatewayWebSocketContext>
    public var session: AuthenticatedSession?
    public var sessionProblem: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
    }
}

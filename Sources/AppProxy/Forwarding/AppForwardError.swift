import NIOHTTP1
import NIOSSL
import Tunnel

/// Why a request did not reach an app, or its answer did not come back: each becomes an error page.
public enum AppForwardError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No stream to the agent: it is not connected, or the mesh lost it.
    case agentUnreachable(cause: String)
    /// The agent could not connect to the app's port; `reason` is the agent's own ("connection refused", "port
    /// 9 is not forwarded").
    case portRefused(port: UInt16, reason: String)
    /// The app's answer was not a usable HTTP response: the connection closed early, the response was not HTTP,
    /// TLS failed. `hint` is set when the app seems to speak the other one of HTTP and HTTPS.
    case badGateway(cause: String, hint: SchemeHint?)
    /// The app took the request but did not start answering in time.
    case timedOut(cause: String)

    public enum SchemeHint: Sendable, Equatable {
        /// Spoken to in plain HTTP, the app answered with TLS.
        case appSpeaksHTTPS
        /// Spoken to in TLS, the app answered in plain text.
        case appSpeaksHTTP

        /// What a person should do, for the kind of URL they used: a port URL switches with its `s` suffix
        /// (`8443s--…`); a named app's URL is the agent's configuration.
        public func advice(for target: AppRequest.Target) -> String {
            switch (self, target) {
            case (.appSpeaksHTTPS, .port): "The port speaks HTTPS: switch to HTTPS (add s after the port number in the URL)."
            case (.appSpeaksHTTP, .port): "The port speaks plain HTTP: switch to HTTP (remove the s after the port number in the URL)."
            case (.appSpeaksHTTPS, .app): "The app speaks HTTPS: its URL in the agent's configuration should start with https://."
            case (.appSpeaksHTTP, .app): "The app speaks plain HTTP: its URL in the agent's configuration should start with http://."
            }
        }
    }

    public var description: String {
        switch self {
        case .agentUnreachable(let cause): "the agent is not reachable: \(cause)"
        case .timedOut(let cause): cause
        case .portRefused(let port, let reason): "the agent refused port \(port): \(reason)"
        case .badGateway(let cause, let hint):
            switch hint {
            case nil: cause
            case .appSpeaksHTTPS: "\(cause) (the app seems to speak HTTPS)"
            case .appSpeaksHTTP: "\(cause) (the app seems to speak plain HTTP)"
            }
        }
    }

    /// The error for a failed exchange with `app`'s port.
    static func from(_ error: any Error, port: UInt16, https: Bool) -> AppForwardError {
        guard let failure = error as? AgentHTTPExchangeFailure else { return .badGateway(cause: "\(error)", hint: nil) }
        switch (failure.stage, failure.cause) {
        case (.stream, let cause):
            return .agentUnreachable(cause: "\(cause)")
        case (_, AppUpstreamError.noResponse):
            return .timedOut(cause: "\(failure.cause)")
        case (_, MeshStreamError.refused(_, let reason)):
            return .portRefused(port: port, reason: reason)
        case (.request, let cause as MeshStreamError) where cause.meansAgentGone:
            return .agentUnreachable(cause: "\(cause)")
        case (let stage, let cause):
            let hint: SchemeHint? =
                switch (https, failure.heard) {
                case (false, .tls): .appSpeaksHTTPS
                case (true, .plainText): .appSpeaksHTTP
                default: nil
                }
            return .badGateway(cause: describe(cause, stage: stage), hint: hint)
        }
    }

    private static func describe(_ cause: any Error, stage: AgentHTTPExchangeFailure.Stage) -> String {
        switch cause {
        // The decoder meets the end of the stream before the exchange handler hears of it; a request body
        // still on its way meets the agent's STOP_SENDING or reset when the app closes.
        case AppUpstreamError.closedEarly, HTTPParserError.invalidEOFState, MeshStreamError.stopSending, MeshStreamError.reset:
            stage == .response ? "the app closed the connection in the middle of the response" : AppUpstreamError.closedEarly.description
        case is NIOSSLError, is BoringSSLError: "TLS with the app failed: \(cause)"
        case is HTTPParserError: "the app's response is not valid HTTP/1.1 (\(cause))"
        default: "\(cause)"
        }
    }
}

extension MeshStreamError {
    /// The mesh connection to the agent ended (rather than the agent's connection to the app).
    fileprivate var meansAgentGone: Bool {
        switch self {
        case .idleTimeout, .peerRestarted, .connectionClosed, .tooManyStreams, .unknownPeer: true
        case .reset, .stopSending, .refused: false
        }
    }
}

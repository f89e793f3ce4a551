import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import Tunnel

/// The app proxy's fast path: app requests served on the browser connection's event loop, below Hummingbird.
///
/// Most requests to an app are a browser fetching pages and assets with a token it got a minute ago. For those,
/// Hummingbird's task, router and middleware, and the hops between its task and the event loops, cost more CPU
/// than the forwarding itself. A request the fast path takes needs nothing that could wait on the loop: a GET
/// without a body and a signed token this gateway verified or signed before (`AppGate.admitFromVerifiedToken`).
/// It goes on an idle stream to the app, or on one opened for it off the loop. Everything else, and anything that
/// meets a stale stream, or a new one's failure, before the app answers, goes the full way
/// (`AppProxyMiddleware`), which decides exactly as it would have.
public struct AppFastPath: Sendable {
    let gate: AppGate
    let streams: any IdleAgentStreamSource
    let responseHeadTimeout: Duration
    let observer: any AppFastPathObserver

    /// `gate` must share its `VerifiedAppTokens` with the full path's gate, whose verifications fill it.
    public init(
        gate: AppGate, streams: any IdleAgentStreamSource, observer: any AppFastPathObserver,
        responseHeadTimeout: Duration = AgentHTTPExchange.defaultResponseHeadTimeout
    ) {
        (self.gate, self.streams, self.observer, self.responseHeadTimeout) = (gate, streams, observer, responseHeadTimeout)
    }

    /// A handler for one HTTP/1.1 connection or one HTTP/2 stream, right after its codec. `secure`: it came in
    /// over TLS (the scheme the app and the full path are told).
    public func handler(secure: Bool) -> AppFastPathHandler { AppFastPathHandler(fastPath: self, secure: secure) }

    /// A handler for one HTTP/2 connection, between NIO's `NIOHTTP2Handler` and its `HTTP2StreamMultiplexer`: the
    /// streams it serves never get a stream channel.
    public func http2Handler(secure: Bool) -> AppHTTP2FastStreams { AppHTTP2FastStreams(fastPath: self, secure: secure) }

    /// A request the fast path takes on, with what forwarding it needs.
    struct Accepted: Sendable {
        let app: ResolvedApp
        let upstream: HTTPRequestHead
        /// An idle stream to the app; nil: one is opened.
        let lease: AgentStreamLease?
        /// For the error page's format and the CORS decision.
        let wantsJSON: Bool
        let origin: String?
        let scheme: String
    }

    /// Whether the fast path serves `request` (`scheme` fixed already), and if so with which stream.
    func accept(_ request: HTTPRequest, clientAddress: String) -> Accepted? {
        guard request.method == .get, !AppForwarder.hasBody(request), !Self.changesTheConnection(request),
            let target = request.path,
            case .app(let app, let upstreamPath)? = AppAddress.match(host: request.authority, target: target, hostname: gate.configuration.hostname),
            // The first visit after the cross-domain login swaps its key for a cookie: the full path's business.
            app.accessMethod == .path || !target.contains(AppConnectKey.queryItemName + "=")
        else { return nil }
        let scheme = request.scheme ?? "https"
        guard let resolved = gate.admitFromVerifiedToken(app, cookieHeaders: request.headerFields[values: .cookie], secure: scheme == "https"),
            !resolved.https
        else { return nil }
        let lease = streams.idleLease(agent: resolved.agentID, port: resolved.port)
        let origin = ForwardingOrigin(clientAddress: clientAddress, scheme: scheme, host: request.authority ?? "")
        return Accepted(
            app: resolved, upstream: AppForwarder.upstreamHead(request, app: resolved, path: upstreamPath, origin: origin), lease: lease,
            wantsJSON: AppErrorPage.prefersJSON(accept: request.headerFields[.accept]),
            origin: request.headerFields[.origin], scheme: scheme
        )
    }

    /// `Connection: close` (the connection ends after this response) and upgrades are left to Hummingbird, which
    /// owns the connection's life.
    static func changesTheConnection(_ request: HTTPRequest) -> Bool {
        if request.headerFields[.upgrade] != nil { return true }
        return request.headerFields[values: .connection].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "close" }
        }
    }

    /// The response head for the browser, CORS decided as the full path does.
    func browserResponse(_ head: HTTPResponseHead, for accepted: Accepted) -> (head: HTTPResponse, hasBody: Bool) {
        // Only GETs come this way.
        var (response, hasBody) = AppForwarder.browserResponse(head, method: .get)
        let app = accepted.app
        if app.request.accessMethod == .subdomain, app.cors == .simple, let hostname = gate.configuration.hostname {
            AppCORS.apply(to: &response.headerFields, origin: accepted.origin, user: app.request.user, hostname: hostname, scheme: accepted.scheme)
        }
        return (response, hasBody)
    }

    /// Begins the exchange for `accepted`; `started` is called once, on `loop` (the browser connection's, which calls
    /// this), however the exchange went.
    func begin(_ accepted: Accepted, on loop: any EventLoop, _ started: @escaping (FastExchangeOnLoop.Start) -> Void) {
        let started = NIOLoopBound(started, eventLoop: loop)
        FastExchangeOnLoop.begin(accepted, streams: streams, responseHeadTimeout: responseHeadTimeout) { start in
            if loop.inEventLoop { started.value(start) } else { loop.execute { started.value(start) } }
        }
    }

    /// What the browser is sent for the app's answer: the head (CORS decided, the gateway's `Date`) and the body parts
    /// so far. A whole body in hand goes as one write with its length, not chunked (as on the full path).
    func answer(_ start: HTTPExchangeHandler.Start, for accepted: Accepted) -> (head: HTTPResponse, hasBody: Bool, parts: [AgentHTTPExchange.BodyPart]) {
        var (head, hasBody) = browserResponse(start.head, for: accepted)
        head.headerFields[.date] = HTTPDate.now()
        guard hasBody, let body = AgentHTTPExchange.wholeBody(start.parts) else { return (head, hasBody, start.parts) }
        if head.headerFields[.contentLength] == nil { head.headerFields[.contentLength] = String(body.readableBytes) }
        return (head, hasBody, body.readableBytes > 0 ? [.bytes(body), .end(nil)] : [.end(nil)])
    }

    /// The page for an exchange on an idle stream that failed before the app answered, as the full path words it,
    /// with its length and `Date`.
    func errorResponse(_ cause: any Error, for accepted: Accepted) -> (head: HTTPResponse, body: ByteBuffer?) {
        let failure = AgentHTTPExchangeFailure(stage: .request, cause: cause, heard: nil, reusedStream: accepted.lease?.reused ?? false)
        let error = AppForwardError.from(failure, port: accepted.app.port, https: false)
        var (head, body) = AppGateResponse.page(AppErrorPage.forwarding(error, app: accepted.app)).rendered(json: accepted.wantsJSON)
        head.headerFields[.contentLength] = String(body?.readableBytes ?? 0)
        head.headerFields[.date] = HTTPDate.now()
        return (head, body)
    }

    /// Counts a request whose response began (a browser gone before that was answered by nobody).
    func report(_ request: HTTPRequest, status: HTTPResponse.Status?, began: NIODeadline) {
        let elapsed = NIODeadline.now() - began
        observer.finished(request, status: status ?? .badGateway, nanoseconds: UInt64(max(0, elapsed.nanoseconds)))
    }
}

/// What the fast path reports of the requests it serves (the full path's middleware logs and counts the rest).
public protocol AppFastPathObserver: Sendable {
    /// A request was taken on (its log line).
    func started(_ request: HTTPRequest)
    /// Its response ended, or the browser went away (`status` as far as it got), after `nanoseconds`.
    func finished(_ request: HTTPRequest, status: HTTPResponse.Status, nanoseconds: UInt64)
}

/// One fast exchange as seen from the stream's event loop; every member is used only there.
struct FastExchangeOnLoop: @unchecked Sendable {
    let exchange: HTTPExchangeHandler
    let channel: any Channel
    var loop: any EventLoop { channel.eventLoop }

    /// How the request's start went, read on the stream's loop.
    enum Start: Sendable {
        case answered(FastExchangeOnLoop, HTTPExchangeHandler.Start)
        /// The stream turned out stale before the app said anything, or none could be opened, or a new one failed
        /// before an answer: the full path decides (an agent gone is the gate's page at once; a new stream's failure
        /// is worded with what the stream itself reported).
        case handOver
        case failed(any Error)
    }

    /// Claims the lease and sends the (bodiless) request; `started` is called once, on the stream's loop. Callbacks,
    /// not futures: this runs for every request, and each future costs allocations.
    static func begin(
        _ accepted: AppFastPath.Accepted, streams: any AgentStreamSource, responseHeadTimeout: Duration,
        started: @escaping @Sendable (Start) -> Void
    ) {
        guard let lease = accepted.lease else {
            // Opening waits for the mesh: off the loop, in a task, and on the new stream's loop from there.
            Task {
                let lease: AgentStreamLease
                do {
                    lease = try await streams.checkout(agent: accepted.app.agentID, port: accepted.app.port)
                } catch {
                    return started(.handOver)
                }
                begin(accepted, on: lease, streams: streams, responseHeadTimeout: responseHeadTimeout) { start in
                    if case .failed = start, !lease.reused { return started(.handOver) }
                    started(start)
                }
            }
            return
        }
        begin(accepted, on: lease, streams: streams, responseHeadTimeout: responseHeadTimeout, started: started)
    }

    private static func begin(
        _ accepted: AppFastPath.Accepted, on lease: AgentStreamLease, streams: any AgentStreamSource, responseHeadTimeout: Duration,
        started: @escaping @Sendable (Start) -> Void
    ) {
        let loop = lease.channel.eventLoop
        let install = { @Sendable () in
            let installed: (exchange: HTTPExchangeHandler, sniffer: FirstByteSniffer?)?
            do {
                installed = try HTTPExchangeHandler.install(
                    accepted.upstream, on: lease, returningTo: streams, responseHeadTimeout: responseHeadTimeout, bodyless: true
                )
            } catch {
                installed = nil
            }
            guard let exchange = installed?.exchange else {
                // The stream was gone before anything went out on it.
                lease.channel.close(promise: nil)
                return started(.handOver)
            }
            let onLoop = FastExchangeOnLoop(exchange: exchange, channel: lease.channel)
            exchange.onStart { result in
                switch result {
                case .success(let start):
                    started(.answered(onLoop, start))
                case .failure(let error):
                    lease.channel.close(promise: nil)
                    started(exchange.closedBeforeAnswering ? .handOver : .failed(error))
                }
            }
        }
        // No hop when the browser's connection and the stream share a loop.
        if loop.inEventLoop { install() } else { loop.execute(install) }
    }

    /// The next body part, taken on the stream's loop and handed to `deliver` on `browserLoop`: one task each way
    /// when the loops differ, none when they are the same.
    func nextBodyPart(to browserLoop: any EventLoop, _ deliver: @escaping @Sendable (Result<AgentHTTPExchange.BodyPart, any Error>) -> Void) {
        guard loop !== browserLoop else { return exchange.nextBodyPart(deliver) }
        loop.execute {
            exchange.nextBodyPart { result in browserLoop.execute { deliver(result) } }
        }
    }

    /// Ends an exchange the browser no longer waits for: its stream is closed unless it already went back.
    func abort() {
        loop.execute {
            if !exchange.completed { channel.close(promise: nil) }
        }
    }
}

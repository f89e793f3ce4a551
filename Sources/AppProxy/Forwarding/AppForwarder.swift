import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTP1
import Synchronization
import Tunnel

/// The proxy step: a browser's request (HTTP/1.1 or HTTP/2, as Hummingbird hands both over) to an app behind
/// an agent, as HTTP/1.1 over a mesh stream, and the app's response back as a Hummingbird `Response` whose body
/// streams from the agent. Resolving and authorizing happen before; the caller turns `AppForwardError` into a page.
///
/// Request bodies stream up as the browser sends them and response bodies down as the browser takes them, so
/// neither sits in memory. Streams come from `streams` (plain HTTP apps, normally the gateway's pool) or
/// `tlsStreams` (HTTPS apps: pipelines with TLS below the HTTP codec).
public struct AppForwarder: Sendable {
    private let streams: any AgentStreamSource
    private let tlsStreams: any AgentStreamSource
    private let dialer: any AgentStreamDialer
    private let responseHeadTimeout: Duration

    /// `streams` carry plain HTTP (the gateway's pool). HTTPS apps use `tlsStreams`, by default a new stream
    /// per exchange through `dialer`: a pool's pipeline is set once for all its streams, so TLS streams need a
    /// pool of their own (with `AppUpstreamTLS.configure` as its pipeline) to be kept alive. `dialer` also
    /// probes for TLS when a plain request is dropped without a word.
    public init(
        streams: any AgentStreamSource, dialer: any AgentStreamDialer, tlsStreams: (any AgentStreamSource)? = nil,
        responseHeadTimeout: Duration = AgentHTTPExchange.defaultResponseHeadTimeout
    ) {
        (self.streams, self.dialer, self.responseHeadTimeout) = (streams, dialer, responseHeadTimeout)
        self.tlsStreams = tlsStreams ?? FreshAgentStreams(dialer: dialer, configure: AppUpstreamTLS.configure)
    }

    /// Methods a request may be repeated with: one that failed on a stale kept-alive stream is sent again.
    static let idempotentMethods: Set<HTTPRequest.Method> = [.get, .head, .options, .put, .delete]

    /// Forwards `request` to `app`. `path` is the request target below the app's base path (starting with "/",
    /// query included); `origin` is who asked, for the `X-Forwarded-*` headers. The response's body must be
    /// written (Hummingbird does): that is what returns the stream.
    public func forward(_ request: Request, to app: ResolvedApp, path: String, origin: ForwardingOrigin) async throws(AppForwardError) -> Response {
        let streams = app.https ? tlsStreams : self.streams
        let head = Self.upstreamHead(request.head, app: app, path: path, origin: origin)
        let hasBody = Self.hasBody(request.head)
        let exchange: AgentHTTPExchange
        do {
            exchange = try await AgentHTTPExchange.begin(
                head, agent: app.agentID, port: app.port, through: streams,
                retryingStaleStreams: !hasBody && Self.idempotentMethods.contains(request.method), responseHeadTimeout: responseHeadTimeout,
                body: hasBody ? Self.upload(request.body) : nil
            )
        } catch {
            if !app.https, let failure = error as? AgentHTTPExchangeFailure, failure.silentClose,
                await AppUpstreamTLS.handshakes(agent: app.agentID, port: app.port, dialer: dialer)
            {
                throw AppForwardError.badGateway(cause: "\(failure.cause)", hint: .appSpeaksHTTPS)
            }
            throw AppForwardError.from(error, port: app.port, https: app.https)
        }
        return try await Self.response(from: exchange, method: request.method, app: app)
    }

    // MARK: Request

    /// The HTTP/1.1 request head the app receives: the method, the app's path prefix before `path`, and the
    /// browser's headers after `ForwardedHeaders` (an HTTP/2 request's `:authority` is the `X-Forwarded-Host`
    /// the caller passes, its `:path` is `path`).
    static func upstreamHead(_ request: HTTPRequest, app: ResolvedApp, path: String, origin: ForwardingOrigin) -> HTTPRequestHead {
        var headers = ForwardedHeaders.request(request.headerFields, purpose: .http, upstreamHost: "127.0.0.1:\(app.port)", origin: origin)
        // The body is re-framed for HTTP/1.1: a length if the browser gave one, else chunked.
        if hasBody(request), !headers.contains(name: "content-length") { headers.add(name: "Transfer-Encoding", value: "chunked") }
        return HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: request.method.rawValue), uri: joined(app.pathPrefix, path), headers: headers
        )
    }

    /// Whether the request has a body to stream. HTTP/1.1 says so with `Content-Length` or `Transfer-Encoding`;
    /// an HTTP/2 request may have one without a length, which is assumed for every method but those that
    /// carry none in practice (a browser sends a length whenever it knows it).
    static func hasBody(_ request: HTTPRequest) -> Bool {
        if let length = request.headerFields[.contentLength] { return length != "0" }
        if request.headerFields[.transferEncoding] != nil { return true }
        return ![.get, .head, .delete, .options, .trace, .connect].contains(request.method)
    }

    /// Sends the browser's body on as it arrives.
    private static func upload(_ body: RequestBody) -> @Sendable (AgentHTTPExchange.RequestBodyWriter) async throws -> Void {
        { writer in
            for try await chunk in body { try await writer.write(chunk) }
        }
    }

    /// `/ui` + `/a?b` → `/ui/a?b`; an empty prefix leaves `path` alone.
    static func joined(_ prefix: String, _ path: String) -> String {
        guard !prefix.isEmpty, prefix != "/" else { return path }
        return prefix.hasSuffix("/") && path.hasPrefix("/") ? prefix + path.dropFirst() : prefix + path
    }

    // MARK: Response

    private static func response(
        from exchange: AgentHTTPExchange, method: HTTPRequest.Method, app: ResolvedApp
    ) async throws(AppForwardError) -> Response {
        let head = exchange.response
        let (browser, hasBody) = browserResponse(head, method: method)
        let (status, headers) = (browser.status, browser.headerFields)
        if !hasBody {
            // No body follows: the stream is free before the response leaves (and a HEAD response's length
            // stays the app's).
            do {
                while case .bytes = try await exchange.nextBodyPart() {}
            } catch {
                exchange.abort()
                throw AppForwardError.from(error, port: app.port, https: app.https)
            }
            await exchange.finish()
            var response = Response(status: status, headers: headers)
            // Hummingbird gives an empty body a length, which a 204 must not have.
            if status == .noContent { response.headers[.contentLength] = nil }
            return response
        }
        if let body = exchange.takeCompleteBody() {
            await exchange.finish()
            return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body))
        }
        let length = head.headers.first(name: "content-length").flatMap(Int.init)
        // Hummingbird runs the body only once the head is written; a browser gone by then (an HTTP/2 stream
        // reset while the app was answering) drops the body unrun, and the guard's deinit frees the stream.
        let unwritten = UnwrittenBodyGuard(exchange)
        let body = ResponseBody(contentLength: length) { writer in
            unwritten.bodyStarted()
            while true {
                let part: AgentHTTPExchange.BodyPart
                do {
                    part = try await exchange.nextBodyPart()
                } catch {
                    exchange.abort()
                    throw AppForwardError.from(error, port: app.port, https: app.https)
                }
                switch part {
                case .bytes(let chunk):
                    do {
                        try await writer.write(chunk)
                    } catch {
                        // The browser went away: so does the app's half-sent response.
                        exchange.abort()
                        throw error
                    }
                case .end(let trailers):
                    await exchange.finish()
                    try await writer.finish(trailers.map(httpFields))
                    return
                }
            }
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// The browser's response head for the app's `head`, and whether a body follows it: none after a HEAD, a
    /// 204 or a 304 (and a HEAD response's length stays the app's).
    static func browserResponse(_ head: HTTPResponseHead, method: HTTPRequest.Method) -> (head: HTTPResponse, hasBody: Bool) {
        let status = HTTPResponse.Status(code: Int(head.status.code), reasonPhrase: head.status.reasonPhrase)
        var response = HTTPResponse(status: status, headerFields: ForwardedHeaders.responseFields(head.headers))
        if status == .noContent { response.headerFields[.contentLength] = nil }
        return (response, !(method == .head || status == .noContent || status == .notModified))
    }

    static func httpFields(_ headers: HTTPHeaders) -> HTTPFields {
        var fields = HTTPFields()
        for (name, value) in headers {
            if let name = HTTPField.Name(name) { fields.append(HTTPField(name: name, value: value)) }
        }
        return fields
    }
}

/// Aborts an exchange whose response body is dropped without ever being written. Such an exchange's stream
/// would stay leased for good: it counts against the agent's stream limit, and the unread rest of the app's
/// response holds its share of the mesh connection's receive window, so a few of them stall every stream to
/// that agent (HTTP/2 1 MiB downloads through h2load failed this way once its runs had reset some requests).
private final class UnwrittenBodyGuard: Sendable {
    private let exchange: AgentHTTPExchange
    private let started = Atomic(false)

    init(_ exchange: AgentHTTPExchange) { self.exchange = exchange }

    /// From here the body's writer finishes or aborts the exchange itself.
    func bodyStarted() { started.store(true, ordering: .relaxed) }

    deinit {
        if !started.load(ordering: .relaxed) { exchange.abort() }
    }
}

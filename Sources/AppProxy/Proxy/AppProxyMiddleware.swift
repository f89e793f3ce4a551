import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import Tunnel

/// Which app a request addresses, from its host (subdomain apps, port URLs) or its path (path apps).
public enum AppAddress: Sendable, Equatable {
    case app(AppRequest, upstreamPath: String)
    /// Answer without an app: a trailing-slash redirect, or a 404 for a malformed app URL.
    case respond(AppGateResponse)

    /// nil when the request is not for an app (the dashboard, the API).
    public static func match(host: String?, target: String, hostname: AppHostname?) -> AppAddress? {
        if let hostname, let host {
            switch hostname.match(host: host) {
            case .notAnApp: break
            case .invalid(let reason): return .respond(.page(.notFound(reason)))
            case .app(let request): return .app(request, upstreamPath: target.hasPrefix("/") ? target : "/" + target)
            }
        }
        switch AppPath.match(target) {
        case .notAnApp: return nil
        case .redirect(let location): return .respond(.redirect(to: location, status: 307))
        case .invalid(let reason): return .respond(.page(.notFound(reason)))
        case .app(let request, let upstreamPath): return .app(request, upstreamPath: upstreamPath)
        }
    }
}

/// The app proxy in front of a Hummingbird router: requests for apps are admitted by the `AppGate` and forwarded
/// by the `AppForwarder`; everything else goes on to the router.
public struct AppProxyMiddleware<Context: RequestContext>: RouterMiddleware {
    let gate: AppGate
    let forwarder: AppForwarder
    let connectKeys: any AppKeys<AppConnectEncryption>
    /// The client's IP address, from the context (for `X-Forwarded-For`).
    let clientAddress: @Sendable (Context) -> String

    public init(
        gate: AppGate, forwarder: AppForwarder, connectKeys: any AppKeys<AppConnectEncryption>, clientAddress: @escaping @Sendable (Context) -> String
    ) {
        (self.gate, self.forwarder, self.connectKeys, self.clientAddress) = (gate, forwarder, connectKeys, clientAddress)
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let host = request.head.authority  // HTTP/1.1's Host arrives here too
        let target = request.head.path ?? "/"
        guard let address = AppAddress.match(host: host, target: target, hostname: gate.configuration.hostname) else {
            return try await next(request, context)
        }
        let wantsJSON = AppErrorPage.prefersJSON(accept: request.headers[.accept])
        guard case .app(let app, let upstreamPath) = address else {
            if case .respond(let response) = address { return Self.response(response, json: wantsJSON) }
            return Self.response(.page(.notFound()), json: wantsJSON)
        }
        let scheme = request.head.scheme ?? gate.configuration.accessURL.scheme ?? "https"
        let secure = scheme == "https"
        // A subdomain app's first visit after the cross-domain login: swap the key for a cookie on this host, and
        // take it out of the URL (and so out of history, logs and Referer) before anything else.
        if app.accessMethod == .subdomain, let host, target.contains(AppConnectKey.queryItemName + "=") {
            return await acceptConnectKey(target: target, host: host, secure: secure)
        }
        let origin = ForwardingOrigin(clientAddress: clientAddress(context), scheme: scheme, host: host ?? "")
        if Self.isPreflight(request), let passthrough = await gate.passthroughPreflight(app) {
            do {
                return try await forwarder.forward(request, to: passthrough, path: upstreamPath, origin: origin)
            } catch {
                return Self.response(.page(AppErrorPage.forwarding(error, app: passthrough)), json: wantsJSON)
            }
        }
        if let preflight = Self.preflight(request, app: app, hostname: gate.configuration.hostname, scheme: scheme) { return preflight }
        let credentials = AppGate.Credentials(
            cookieHeaders: request.headers[values: .cookie], sessionHeader: request.headers[HTTPField.Name(MeshgateCredentials.sessionHeader)!]
        )
        let originalURL = app.accessMethod == .path ? target : "\(scheme)://\(host ?? "")\(target)"
        switch await gate.admit(app, credentials: credentials, secure: secure, originalURL: originalURL) {
        case .respond(let response):
            return Self.response(response, json: wantsJSON)
        case .proxy(let resolved, let setCookie):
            var response: Response
            do {
                response = try await forwarder.forward(request, to: resolved, path: upstreamPath, origin: origin)
            } catch {
                return Self.response(.page(AppErrorPage.forwarding(error, app: resolved)), json: wantsJSON)
            }
            if let setCookie { response.headers.append(HTTPField(name: .setCookie, value: setCookie)) }
            if app.accessMethod == .subdomain, resolved.cors == .simple, let hostname = gate.configuration.hostname {
                AppCORS.apply(to: &response.headers, origin: request.headers[.origin], user: app.user, hostname: hostname, scheme: scheme)
            }
            return response
        }
    }

    private func acceptConnectKey(target: String, host: String, secure: Bool) async -> Response {
        let clean = AppConnectKey.removingQueryItem(from: target)
        let sealed = URLComponents(string: target)?.queryItems?.first { $0.name == AppConnectKey.queryItemName }?.value
        var headers: HTTPFields = [.location: clean, .cacheControl: "no-store", HTTPField.Name("Referrer-Policy")!: "no-referrer"]
        if let sealed, let keys = try? await connectKeys.keyring(),
            let credential = AppConnectKey.open(sealed, keys: keys, now: gate.now(), expectedHost: host)
        {
            var cookie = ["\(MeshgateCredentials.sessionCookie)=\(credential)", "Path=/", "HttpOnly", "SameSite=Lax"]
            if secure { cookie.append("Secure") }
            headers.append(HTTPField(name: .setCookie, value: cookie.joined(separator: "; ")))
        }
        // Without a valid key the redirect still strips it; the next request signs in again.
        return Response(status: .seeOther, headers: headers)
    }

    static func isPreflight(_ request: Request) -> Bool {
        request.method == .options && request.headers[.origin] != nil && request.headers[.accessControlRequestMethod] != nil
    }

    /// A CORS preflight from one of the same user's app origins is answered here: it carries no cookies, so it
    /// could never pass the gate, and the app is not asked.
    static func preflight(_ request: Request, app: AppRequest, hostname: AppHostname?, scheme: String) -> Response? {
        guard request.method == .options, app.accessMethod == .subdomain, let hostname, let origin = request.headers[.origin],
            let method = request.headers[.accessControlRequestMethod], AppCORS.allows(origin: origin, user: app.user, hostname: hostname, scheme: scheme)
        else { return nil }
        var headers = HTTPFields()
        for (name, value) in AppCORS.allowHeaders(origin: origin) { headers.append(HTTPField(name: HTTPField.Name(name)!, value: value)) }
        headers[.accessControlAllowMethods] = method
        if let requested = request.headers[.accessControlRequestHeaders] { headers[.accessControlAllowHeaders] = requested }
        headers[.accessControlMaxAge] = "600"
        return Response(status: .noContent, headers: headers)
    }

    static func response(_ response: AppGateResponse, json: Bool) -> Response {
        let (head, body) = response.rendered(json: json)
        return Response(status: head.status, headers: head.headerFields, body: body.map { ResponseBody(byteBuffer: $0) } ?? ResponseBody())
    }
}

extension AppErrorPage {
    /// The page for a request that did not get through to the app.
    public static func forwarding(_ error: AppForwardError, app: ResolvedApp) -> AppErrorPage {
        switch error {
        case .agentUnreachable(let cause): .agentUnreachable(agent: app.agentName.isEmpty ? "of this workspace" : app.agentName, cause: cause, health: app.health)
        case .portRefused(let port, let reason): .badGateway(cause: "The agent could not connect to port \(port): \(reason)", health: app.health)
        case .badGateway(let cause, let hint): .badGateway(cause: cause, hint: hint.map { ($0.advice(for: app.request.target), nil) }, health: app.health)
        case .timedOut(let cause): .gatewayTimeout(cause: cause, health: app.health)
        }
    }
}

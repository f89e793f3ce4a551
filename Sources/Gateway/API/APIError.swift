import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// An API failure as the client sees it: `{"message": …, "detail": …}` with an HTTP status.
/// `message` is for people; `detail` carries the specific cause when it helps the caller and leaks nothing.
public struct APIError: Error, HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var detail: String?
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, _ message: String, detail: String? = nil, headers: HTTPFields = [:]) {
        (self.status, self.message, self.detail, self.headers) = (status, message, detail, headers)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        let data = try APIJSON.encoder.encode(APIErrorBody(message: message, detail: detail))
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func badRequest(_ message: String, detail: String? = nil) -> APIError { APIError(.badRequest, message, detail: detail) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }
    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, message) }
    static func conflict(_ message: String, detail: String? = nil) -> APIError { APIError(.conflict, message, detail: detail) }
    static let notSignedIn = APIError(.unauthorized, "You are not signed in.", detail: "Send a session token in the Meshgate-Session-Token header or the meshgate_session_token cookie.")
}

/// The wire shape of every API error.
/// `detail` is always present (empty when there is none), so clients can rely on the shape.
struct APIErrorBody: Codable {
    let message: String
    let detail: String

    init(message: String, detail: String?) { (self.message, self.detail) = (message, detail ?? "") }
}

/// Turns every failure below it into a JSON error, so no route, framework error or bug answers in another shape.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            // Framework errors: unmatched routes, oversized bodies, bad methods.
            return try APIError(error.status, Self.message(for: error.status), detail: (error as? HTTPError)?.body,
                headers: (error as? HTTPError)?.headers ?? [:])
                .response(from: request, context: context)
        } catch let error as StoreError {
            let apiError = switch error {
            case .conflict(let what): APIError.conflict("A resource with that name already exists.", detail: what)
            case .notFound: APIError.notFound("Resource not found.")
            }
            return try apiError.response(from: request, context: context)
        } catch {
            // The cause goes to the log only: it may name files, SQL or internals.
            context.logger.error("Unhandled error", metadata: ["error": "\(error)", "http.route": "\(context.endpointPath ?? "-")"])
            return try APIError(.internalServerError, "An internal error occurred.").response(from: request, context: context)
        }
    }

    static func message(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "Route not found."
        case .contentTooLarge: "Request body is too large."
        case .methodNotAllowed: "Method not allowed."
        case .badRequest: "Bad request."
        default: status.reasonPhrase
        }
    }
}

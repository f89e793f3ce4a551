import Foundation
import NIOCore
import Testing
import Tunnel

@testable import Gateway

/// The pure parts of the web terminal's socket: whose origin may open it, what a browser message becomes, and
/// close reasons that fit a close frame.
struct PTYRoutesTests {
    @Test(arguments: [
        ("https://gate.example.com", "https://gate.example.com", true),
        ("https://GATE.example.com:443", "https://gate.example.com", true),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000", true),
        ("http://127.0.0.1:3001", "http://127.0.0.1:3000", false),
        ("http://gate.example.com", "https://gate.example.com", false),
        ("https://evil.example", "https://gate.example.com", false),
        ("https://app--main--ws--alice.apps.gate.example.com", "https://gate.example.com", false),
        ("null", "https://gate.example.com", false),
    ])
    func origins(origin: String, accessURL: String, allowed: Bool) {
        #expect(PTYRoutes.isSameOrigin(origin, as: URL(string: accessURL)!) == allowed)
    }

    @Test func browserMessages() throws {
        #expect(try PTYBrowserMessage.frames(from: ByteBuffer(string: #"{"data":"ls\r"}"#)) == [.input(ByteBuffer(string: "ls\r"))])
        #expect(try PTYBrowserMessage.frames(from: ByteBuffer(string: #"{"width":100,"height":30}"#)) == [.resize(width: 100, height: 30)])
        #expect(try PTYBrowserMessage.frames(from: ByteBuffer(string: #"{"data":"x","width":100,"height":30}"#)).count == 2)
        #expect(try PTYBrowserMessage.frames(from: ByteBuffer(string: #"{"width":100}"#)).isEmpty, "a resize needs both")
        #expect(throws: PTYBrowserMessage.Invalid.self) { try PTYBrowserMessage.frames(from: ByteBuffer(string: "not json")) }
        #expect(throws: PTYBrowserMessage.Invalid.self) { try PTYBrowserMessage.frames(from: ByteBuffer(string: #"{"data":5}"#)) }
    }

    @Test func commandIsFormDecoded() {
        #expect(PTYRoutes.formValue("command", in: "reconnect=x&command=stty+-icanon%20%26%26+cat") == "stty -icanon && cat")
        #expect(PTYRoutes.formValue("command", in: "command=a%2Bb") == "a+b")
        #expect(PTYRoutes.formValue("command", in: "command=") == "")
        #expect(PTYRoutes.formValue("command", in: "commander=x") == nil)
        #expect(PTYRoutes.formValue("command", in: nil) == nil)
    }

    @Test func closeReasonsFitAFrame() {
        let long = String(repeating: "é", count: 100)  // 200 bytes
        let reason = PTYRoutes.closeReason(long)
        #expect(reason.utf8.count <= 123)
        #expect(reason.utf8.count == 122, "cut on a character boundary")
        #expect(PTYRoutes.closeReason("process exited with code 0") == "process exited with code 0")
    }
}

/// The request log keeps the query but never a secret riding in it.
struct RequestLogRedactionTests {
    @Test func appKeyIsRedacted() {
        #expect(RequestLogMiddleware<GatewayContext>.redacted(path: "/", query: "meshgate_app_key=sealed.secret&x=1") == "/?meshgate_app_key=REDACTED&x=1")
        #expect(RequestLogMiddleware<GatewayContext>.redacted(path: "/a", query: "x=1&meshgate%5Fapp%5Fkey=s") == "/a?x=1&meshgate_app_key=REDACTED")
        #expect(RequestLogMiddleware<GatewayContext>.redacted(path: "/a", query: "reconnect=abc&width=80") == "/a?reconnect=abc&width=80")
        #expect(RequestLogMiddleware<GatewayContext>.redacted(path: "/a", query: nil) == "/a")
    }
}

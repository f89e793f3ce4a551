import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix

/// `/assets/xterm/…`: the web terminal's xterm.js 3.x from `--xterm-path` (Debian's libjs-xterm). Only the files the
/// terminal page loads are served, by exact name, so no request can reach anything else on the disk.
struct XtermAssets: Sendable {
    let files: LocalFileSystem
    let directory: String
    let bundle: XtermBundle

    static let served: [String: String] = [
        "xterm.js": "text/javascript; charset=utf-8",
        "xterm.css": "text/css; charset=utf-8",
        "addons/fit/fit.js": "text/javascript; charset=utf-8",
    ]

    init(directory: String, nodeLibrary: String = XtermBundle.debianNodeLibrary, logger: Logger) {
        self.directory = directory
        files = LocalFileSystem(rootFolder: directory, threadPool: .singleton, logger: logger)
        bundle = XtermBundle(stub: (directory.hasSuffix("/") ? directory : directory + "/") + "xterm.js", library: nodeLibrary)
    }

    /// Whether the terminal can load; checked per page view, so installing the packages later needs no restart.
    func isInstalled() async -> Bool {
        guard let id = files.getFileIdentifier("xterm.js"), let attributes = try? await files.getAttributes(id: id), !attributes.isFolder
        else { return false }
        return await bundle.script() != .unusable
    }

    func addRoutes(to router: Router<GatewayContext>) {
        router.get("assets/xterm/**") { request, context -> Response in
            let name = context.parameters.getCatchAll().joined(separator: "/")
            guard let contentType = Self.served[name], let id = files.getFileIdentifier(name),
                let attributes = try await files.getAttributes(id: id), !attributes.isFolder
            else { throw HTTPError(.notFound) }
            var headers: HTTPFields = [.contentType: contentType, .cacheControl: "public, max-age=86400"]
            headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
            if name == "xterm.js", case .bundled(let script, let tag) = await bundle.script() {
                headers[.eTag] = tag
                if request.headers[.ifNoneMatch] == tag { return Response(status: .notModified, headers: headers) }
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: script)))
            }
            // The files change only when the package is upgraded: a day of caching, then a cheap revalidation.
            let tag = "\"\(attributes.size)-\(Int(attributes.modificationDate.timeIntervalSince1970))\""
            headers[.eTag] = tag
            if request.headers[.ifNoneMatch] == tag { return Response(status: .notModified, headers: headers) }
            headers[.contentLength] = String(attributes.size)
            return Response(status: .ok, headers: headers, body: try await files.loadFile(id: id, context: context))
        }
    }
}

/// Debian 12's libjs-xterm 3.8.1 installs as `xterm.js` a stub that is CommonJS, not a browser build
/// (`module.exports = require("./public/Terminal")`): no browser can run it. Debian's node-xterm has the modules it
/// names, so when the stub is what `--xterm-path` holds, the gateway joins those modules into one script with a
/// minimal `require`, once, and serves that as `xterm.js`.
actor XtermBundle {
    enum Script: Equatable, Sendable {
        /// xterm.js is a browser build (or absent): serve the file.
        case file
        case bundled(String, etag: String)
        /// The stub, and no node-xterm to build from.
        case unusable
    }

    static let debianNodeLibrary = "/usr/share/nodejs/xterm/lib"
    /// The stub is a few hundred bytes; any real build is hundreds of kilobytes.
    static let stubMaximumBytes = 4096

    let stub: String
    let library: String
    private var built: Script?

    init(stub: String, library: String) { (self.stub, self.library) = (stub, library) }

    func script() async -> Script {
        if let built { return built }
        let (stub, library) = (self.stub, self.library)
        let result = (try? await NIOThreadPool.singleton.runIfActive { try Self.build(stub: stub, library: library) }) ?? .unusable
        // Only a finished bundle is kept: a package installed later is picked up without a restart.
        if case .bundled = result { built = result }
        return result
    }

    static func isStub(_ script: String) -> Bool {
        script.utf8.count <= stubMaximumBytes && script.contains("require(\"./public/Terminal\")")
    }

    /// Blocking file reads: runs on the thread pool.
    static func build(stub: String, library: String) throws -> Script {
        guard let handle = FileHandle(forReadingAtPath: stub) else { return .file }
        defer { try? handle.close() }
        let head = String(decoding: try handle.read(upToCount: stubMaximumBytes + 1) ?? Data(), as: UTF8.self)
        guard isStub(head) else { return .file }
        guard let enumerator = FileManager.default.enumerator(atPath: library) else { return .unusable }
        var modules: [(name: String, source: String)] = []
        for case let path as String in enumerator where path.hasSuffix(".js") && !path.hasSuffix(".test.js") {
            let source = try String(contentsOfFile: library + "/" + path, encoding: .utf8)
            modules.append((String(path.dropLast(3)), source))
        }
        guard modules.contains(where: { $0.name == "public/Terminal" }) else { return .unusable }
        let script = bundle(modules.sorted { $0.name < $1.name })
        let digest = SHA256.hash(data: Data(script.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
        return .bundled(script, etag: "\"\(digest)\"")
    }

    /// Each module becomes a factory `function (exports, require, module)`, as Node.js wraps it; `require` resolves
    /// relative names against the requiring module's folder.
    static func bundle(_ modules: [(name: String, source: String)]) -> String {
        var script = "/* xterm.js 3.x, joined from Debian's node-xterm modules by meshgate */\n(function () {\nvar modules = {};\n"
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        for module in modules {
            let key = String(decoding: (try? encoder.encode(module.name)) ?? Data(), as: UTF8.self)
            script += "modules[\(key)] = function (exports, require, module) {\n\(module.source)\n};\n"
        }
        script += """
            var cache = {};
            function resolve(from, name) {
              var parts = from.split("/");
              parts.pop();
              name.replace(/\\.js$/, "").split("/").forEach(function (part) {
                if (part === "..") parts.pop(); else if (part !== "." && part !== "") parts.push(part);
              });
              return parts.join("/");
            }
            function load(name) {
              if (cache[name]) return cache[name].exports;
              var factory = modules[name] || modules[name + "/index"];
              if (!factory) throw new Error("xterm.js: no module " + name);
              var module = cache[name] = { exports: {} };
              factory.call(module.exports, module.exports, function (required) { return load(resolve(name, required)); }, module);
              return module.exports;
            }
            window.Terminal = load("public/Terminal").Terminal;
            })();

            """
        return script
    }
}

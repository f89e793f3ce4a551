import Foundation
import Gateway
import Logging
import ServiceLifecycle
import Synchronization

/// `--dev`'s local agent: a real `meshgate agent` process (this same binary) for the demo workspace, started
/// once the server listens and the demo app has a port, restarted if it exits, and stopped with SIGTERM (then
/// SIGKILL after `stopTimeout`) when the server shuts down.
final class AgentSupervisor: Service, Sendable {
    struct Launch: Sendable {
        var url: URL
        var fingerprint: String?
    }

    static let stopTimeout: Duration = .seconds(5)

    private let token: String
    private let logFormat: LogSetup.Format
    private let logLevel: String
    private let logger: Logger
    private let pending = Mutex<(launch: Launch?, appPort: Int?)>((nil, nil))
    private let ready = AsyncStream<(Launch, Int)>.makeStream()

    init(token: String, logFormat: LogSetup.Format, logLevel: String, logger: Logger) {
        (self.token, self.logFormat, self.logLevel, self.logger) = (token, logFormat, logLevel, logger)
    }

    /// How a process on this machine reaches a listener: a wildcard address becomes loopback.
    static func localURL(_ scheme: String, _ address: ListenAddress) -> URL {
        let host = switch address.host {
        case "", "0.0.0.0": "127.0.0.1"
        case "::": "[::1]"
        case let host where host.contains(":"): "[\(host)]"
        case let host: host
        }
        return URL(string: "\(scheme)://\(host):\(address.port)")!
    }

    /// The server listens: where the agent dials it.
    func serverReady(_ launch: Launch) { record { $0.launch = launch } }

    /// The demo app listens on 127.0.0.1:`port`.
    func demoAppReady(port: Int) { record { $0.appPort = port } }

    private func record(_ change: (inout (launch: Launch?, appPort: Int?)) -> Void) {
        let both = pending.withLock { state -> (Launch, Int)? in
            change(&state)
            guard let launch = state.launch, let port = state.appPort else { return nil }
            return (launch, port)
        }
        if let both { ready.continuation.yield(both) }
    }

    func run() async throws {
        var iterator = ready.stream.makeAsyncIterator()
        guard let (launch, port) = await iterator.next() else { return }
        var backoff = Duration.seconds(1)
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let started = ContinuousClock.now
            let status = try await runOnce(launch, appPort: port)
            guard !Task.isCancelled, !Task.isShuttingDownGracefully else { break }
            // An agent that ran for a while gets a quick restart; one that keeps failing, a slower one.
            if ContinuousClock.now - started > .seconds(30) { backoff = .seconds(1) }
            logger.warning("the local agent exited; restarting", metadata: ["agent.exit_status": "\(status)", "restart_in": "\(backoff)"])
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(30))
        }
    }

    /// Runs the agent until it exits (its status) or the server shuts down (it is stopped first).
    private func runOnce(_ launch: Launch, appPort: Int) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        var arguments = [
            "agent", "--url", launch.url.absoluteString, "--log-format", logFormat.rawValue, "--log-level", logLevel,
            "--app", "\(DemoApp.slug)=http://127.0.0.1:\(appPort),name=Demo app,health=/healthz,interval=5s",
        ]
        if let fingerprint = launch.fingerprint { arguments += ["--tls-fingerprint", fingerprint] }
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MESHGATE_") }
        environment["MESHGATE_AGENT_TOKEN"] = token  // not a flag: flags show in `ps`
        process.environment = environment
        let (exited, exit) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { process in
            exit.yield(process.terminationStatus)
            exit.finish()
        }
        try process.run()
        logger.info("local agent started", metadata: ["agent.pid": "\(process.processIdentifier)", "agent.url": "\(launch.url)"])
        return await withGracefulShutdownHandler {
            var statuses = exited.makeAsyncIterator()
            return await withTaskCancellationHandler {
                await statuses.next() ?? -1
            } onCancel: {
                process.terminate()
            }
        } onGracefulShutdown: {
            // SIGTERM lets the agent leave the mesh cleanly; a stuck one is killed.
            process.terminate()
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: Self.stopTimeout)
                if process.isRunning { kill(pid, SIGKILL) }
            }
        }
    }
}

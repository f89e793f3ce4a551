import Foundation
import Logging
import NIOCore
import NIOPosix
import Tunnel

/// The `pty` mesh service (`PTYWire`): sessions by attach id. The first attach starts the command, later ones
/// join it; a session ends `idleTimeout` after its last viewer left, or when its process exits.
public actor PTYService {
    private let clock: any Clock<Duration>
    private let idleTimeout: Duration
    private let logger: Logger
    private let command: @Sendable (String) -> PTYCommand
    private let group: any EventLoopGroup
    /// Starting ones too, so two attaches racing with one new id share one session.
    private var sessions: [UUID: Task<PTYSession, any Error>] = [:]

    /// Coder's figure, and the issue's: long enough to survive a laptop lid, short enough not to pile up shells.
    public static let defaultIdleTimeout = Duration.seconds(300)

    public init(
        clock: any Clock<Duration> = ContinuousClock(), idleTimeout: Duration = defaultIdleTimeout, logger: Logger,
        command: @escaping @Sendable (String) -> PTYCommand = { PTYCommand.shell(running: $0) },
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        (self.clock, self.idleTimeout, self.logger, self.command, self.group) = (clock, idleTimeout, logger, command, group)
    }

    /// The decision for a `pty` request; nil for other services.
    public nonisolated func decision(for request: MeshStreamRequest) -> MeshStreamDecision? {
        guard request.service == .pty else { return nil }
        return .accept { stream in
            stream.eventLoop.makeCompletedFuture {
                let connection = try PTYStream.agent(stream)
                Task { await self.serve(connection) }
            }
        }
    }

    /// Serves one opener until it leaves or the session ends.
    public func serve(_ connection: NIOAsyncChannel<PTYClientFrame, PTYAgentFrame>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                guard case .attach(let attach)? = try await frames.next() else {
                    throw PTYWireError.malformed("the first frame must be attach")
                }
                if let problem = attach.problem {
                    try await outbound.write(.exit(PTYExit(reason: problem)))
                    return
                }
                let session: PTYSession
                do {
                    session = try await self.session(for: attach)
                } catch {
                    try await outbound.write(.exit(PTYExit(reason: "\(error)")))
                    return
                }
                let (viewer, queue) = await session.attach(width: attach.width, height: attach.height)
                // The queue's writer: ends after the exit frame, half-closing the stream so the opener learns.
                let writer = Task {
                    for await frame in queue {
                        try await outbound.write(frame)
                        if case .output(let bytes) = frame { await session.delivered(bytes.readableBytes, to: viewer) }
                    }
                    outbound.finish()
                }
                defer { writer.cancel() }
                do {
                    while let frame = try await frames.next() {
                        switch frame {
                        case .input(let bytes): await session.input(bytes)
                        case .resize(let width, let height): await session.resize(width: width, height: height)
                        case .attach: throw PTYWireError.malformed("a second attach")
                        }
                    }
                    await session.detach(viewer)
                } catch {
                    await session.detach(viewer)
                    throw error
                }
                try? await writer.value
            }
        } catch {
            logger.debug("pty stream closed", metadata: ["error": "\(error)"])
        }
    }

    /// Live sessions now (starting ones included).
    public var count: Int { sessions.count }

    /// Hangs every session up: the agent is going away.
    public func closeAll() async {
        for task in sessions.values {
            await (try? task.value)?.terminate(reason: "the agent is shutting down")
        }
    }

    private func session(for attach: PTYAttach) async throws -> PTYSession {
        if let existing = sessions[attach.id], let session = try? await existing.value, await session.exit == nil {
            return session
        }
        let (id, command, clock, idleTimeout, logger, group) = (attach.id, command(attach.command), clock, idleTimeout, logger, group)
        let starting = Task<PTYSession, any Error> {
            let process = try PTYProcess.spawn(command, rows: attach.height, columns: attach.width)
            let pipe: NIOAsyncChannel<ByteBuffer, ByteBuffer>
            do {
                pipe = try await process.channel(on: group)
            } catch {
                process.signal(SIGKILL)
                _ = await process.exitStatus()
                throw error
            }
            let session = PTYSession(
                id: id, process: process, terminal: pipe, rows: attach.height, columns: attach.width, clock: clock, idleTimeout: idleTimeout,
                logger: logger, onEnd: { id in await self.ended(id) }
            )
            Task { await session.run() }
            logger.info("pty session started", metadata: ["pty_session": "\(id)", "command": "\(command.path)"])
            return session
        }
        sessions[id] = starting
        do {
            return try await starting.value
        } catch {
            if sessions[id] == starting { sessions[id] = nil }
            throw error
        }
    }

    private func ended(_ id: UUID) async {
        // Only the session that ended: a new one may have taken its id already.
        guard let task = sessions[id], let session = try? await task.value, await session.exit != nil else { return }
        if sessions[id] == task { sessions[id] = nil }
    }
}

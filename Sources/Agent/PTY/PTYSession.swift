import Foundation
import Logging
import NIOCore
import Tunnel

/// One terminal session: a process on a pseudo-terminal, its screen as a `TerminalScreen`, and the openers
/// (viewers) attached to it.
///
/// Every output chunk feeds the screen and fans out to each viewer's queue. A viewer that falls more than
/// `maxPendingBytes` behind stops getting chunks and, once its queue has drained, gets a repaint instead: a slow
/// or stalled browser never holds up the program or the other viewers, and never costs unbounded memory.
actor PTYSession {
    /// A viewer's frames, drained by the task serving its stream.
    typealias Frames = AsyncStream<PTYAgentFrame>

    let id: UUID
    private let process: PTYProcess
    private let screen: TerminalScreen
    private let clock: any Clock<Duration>
    private let idleTimeout: Duration
    private let logger: Logger
    private let onEnd: @Sendable (UUID) async -> Void

    private let pipe: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private var terminal: NIOAsyncChannelOutboundWriter<ByteBuffer>?
    private var pendingInput: [ByteBuffer] = []
    private var pendingInputBytes = 0
    private var terminalChannel: (any Channel)?
    private var terminalOpen = true
    private var viewers: [Int: Viewer] = [:]
    private var nextViewer = 0
    private var idleTimer: Task<Void, Never>?
    private var status: PTYProcessStatus?
    private var ending: PTYExit?
    private(set) var exit: PTYExit?

    private struct Viewer {
        let continuation: Frames.Continuation
        var pendingBytes = 0
        var behind = false
    }

    /// Beyond this many bytes queued for one viewer, it is sent a repaint later instead of every chunk.
    static let maxPendingBytes = 1 << 20
    /// After the process exits, output still buffered in the terminal is read for at most this long: a
    /// background child may hold the terminal open forever.
    static let drainAfterExit = Duration.milliseconds(250)
    /// Between the hangup of an idle session and the kill of whatever ignored it.
    static let killAfterHangup = Duration.seconds(5)

    init(
        id: UUID, process: PTYProcess, terminal pipe: NIOAsyncChannel<ByteBuffer, ByteBuffer>, rows: Int, columns: Int, clock: any Clock<Duration>, idleTimeout: Duration, logger: Logger,
        onEnd: @escaping @Sendable (UUID) async -> Void
    ) {
        (self.id, self.process, self.clock, self.idleTimeout, self.onEnd) = (id, process, clock, idleTimeout, onEnd)
        screen = TerminalScreen(rows: rows, columns: columns)
        (self.pipe, terminalChannel) = (pipe, pipe.channel)
        var logger = logger
        logger[metadataKey: "pty_session"] = "\(id)"
        self.logger = logger
    }

    /// Runs the session to its end: reads the terminal, reaps the process, tells the viewers. Call once.
    func run() async {
        let (process, pipe) = (self.process, self.pipe)
        let exited = Task { await self.processExited(process.exitStatus()) }
        do {
            try await pipe.executeThenClose { inbound, outbound in
                await self.opened(outbound)
                for try await chunk in inbound { self.output(chunk) }
            }
        } catch {
            // EIO once the terminal side has no process left: the usual end, not a failure.
            logger.debug("terminal closed", metadata: ["error": "\(error)"])
        }
        terminalClosed()
        await exited.value
        finish()
        await onEnd(id)
    }

    // MARK: Viewers

    /// Adds a viewer at `width` x `height` (the newest viewer's size wins): its first frame repaints the screen.
    func attach(width: Int, height: Int) -> (viewer: Int, frames: Frames) {
        idleTimer?.cancel()
        idleTimer = nil
        resize(width: width, height: height)
        let (frames, continuation) = Frames.makeStream()
        let viewer = nextViewer
        nextViewer += 1
        viewers[viewer] = Viewer(continuation: continuation)
        // A session that ended before this viewer came (a quick command) still shows its last screen, then why.
        send(.output(repaint), to: viewer)
        if let exit {
            continuation.yield(.exit(exit))
            continuation.finish()
        }
        logger.debug("viewer attached", metadata: ["viewers": "\(viewers.count)"])
        return (viewer, frames)
    }

    func detach(_ viewer: Int) {
        viewers.removeValue(forKey: viewer)?.continuation.finish()
        guard viewers.isEmpty, exit == nil, idleTimer == nil else { return }
        let (clock, timeout) = (self.clock, idleTimeout)
        idleTimer = Task {
            do { try await clock.sleep(for: timeout) } catch { return }
            self.idleExpired()
        }
    }

    /// A viewer's task wrote `bytes` of its frames to the stream.
    func delivered(_ bytes: Int, to viewer: Int) {
        guard var state = viewers[viewer] else { return }
        state.pendingBytes -= bytes
        let resync = state.behind && state.pendingBytes == 0
        state.behind = state.behind && !resync
        viewers[viewer] = state
        if resync { send(.output(repaint), to: viewer) }
    }

    func input(_ bytes: ByteBuffer) async {
        guard terminalOpen else { return }
        // Keystrokes that come before `run` has opened the terminal (the first viewer types at once) wait for it.
        guard let terminal else {
            if pendingInputBytes + bytes.readableBytes <= Self.maxPendingInput {
                pendingInput.append(bytes)
                pendingInputBytes += bytes.readableBytes
            }
            return
        }
        try? await terminal.write(bytes)
    }

    /// Input held for a terminal not yet open, at most this much.
    static let maxPendingInput = 64 << 10

    func resize(width: Int, height: Int) {
        guard (1...PTYWire.maxDimension).contains(width), (1...PTYWire.maxDimension).contains(height) else { return }
        guard width != screen.columns || height != screen.rows else { return }
        screen.resize(rows: height, columns: width)
        // On the channel's loop, where an active channel means its descriptor is still open (not reused).
        guard let channel = terminalChannel else { return }
        let process = self.process
        channel.eventLoop.execute {
            if channel.isActive { process.resize(rows: height, columns: width) }
        }
    }

    /// Ends the session now (agent shutdown): hang up, then kill.
    func terminate(reason: String) {
        guard exit == nil, ending == nil else { return }
        ending = PTYExit(reason: reason)
        hangUp()
    }

    // MARK: Internals

    /// Full reset first: a browser that reconnects still shows the old screen and scrollback.
    private var repaint: ByteBuffer {
        var buffer = ByteBuffer(bytes: [0x1B, 0x63])  // RIS
        buffer.writeBytes(screen.repaint())
        return buffer
    }

    /// Writes the input that waited, in order (input arriving meanwhile joins the queue), then takes the writer.
    private func opened(_ writer: NIOAsyncChannelOutboundWriter<ByteBuffer>) async {
        while !pendingInput.isEmpty {
            let chunk = pendingInput.removeFirst()
            pendingInputBytes -= chunk.readableBytes
            try? await writer.write(chunk)
        }
        terminal = writer
    }

    private func output(_ chunk: ByteBuffer) {
        chunk.withUnsafeReadableBytes { screen.write($0) }
        for (viewer, state) in viewers where !state.behind {
            if state.pendingBytes > Self.maxPendingBytes {
                viewers[viewer]?.behind = true
            } else {
                send(.output(chunk), to: viewer)
            }
        }
    }

    private func send(_ frame: PTYAgentFrame, to viewer: Int) {
        guard var state = viewers[viewer] else { return }
        if case .output(let bytes) = frame { state.pendingBytes += bytes.readableBytes }
        state.continuation.yield(frame)
        viewers[viewer] = state
    }

    private func processExited(_ status: PTYProcessStatus) async {
        self.status = status
        // What the process wrote last is still in the terminal: read it unless something else keeps it open.
        guard terminalOpen else { return }
        try? await ContinuousClock().sleep(for: Self.drainAfterExit)
        guard terminalOpen else { return }
        process.signal(SIGHUP)  // what is left of the group, as a terminal hangup would
        terminalOpen = false
        try? await terminalChannel?.close()
    }

    private func terminalClosed() {
        terminalOpen = false
        (terminal, terminalChannel) = (nil, nil)
    }

    private func idleExpired() {
        guard viewers.isEmpty, exit == nil, ending == nil else { return }
        logger.info("closing the session: no viewer for \(idleTimeout)")
        ending = PTYExit(reason: "session closed after \(idleTimeout) without a viewer")
        hangUp()
    }

    private func hangUp() {
        process.signal(SIGHUP)
        let process = self.process
        Task {
            // Real time, like the drain: a safety net, not behaviour a test steps through.
            try? await ContinuousClock().sleep(for: Self.killAfterHangup)
            if self.status == nil { process.signal(SIGKILL) }
        }
    }

    private func finish() {
        idleTimer?.cancel()
        let exit = ending ?? PTYExit(status ?? .signalled(Int(SIGKILL)))
        self.exit = exit
        logger.info("session ended", metadata: ["reason": "\(exit.reason)"])
        for state in viewers.values {
            state.continuation.yield(.exit(exit))
            state.continuation.finish()
        }
    }
}

extension PTYExit {
    init(_ status: PTYProcessStatus) {
        switch status {
        case .exited(let code): self.init(reason: "process exited with code \(code)", code: code)
        case .signalled(let signal): self.init(reason: "process killed by signal \(signal)", signal: signal)
        }
    }
}

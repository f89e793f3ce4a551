import Foundation
import Logging
import MeshgateTesting
import NIOCore
import Synchronization
import Testing
import Tunnel

@testable import Agent

/// The `pty` service end to end over a real mesh pair: real shells on real pseudo-terminals, frames as the
/// gateway sends them. The idle reaper runs on a `MockClock`; everything else is waited for with generous
/// real-time bounds that only a broken build reaches.
@Suite(.serialized)
struct PTYServiceTests {
    /// A plain `sh` with a fixed prompt, so the tests do not depend on the account's login shell and profile.
    static func shell(_ command: String) -> PTYCommand {
        let arguments = command.isEmpty ? ["sh"] : ["sh", "-c", command]
        return PTYCommand(path: "/bin/sh", arguments: arguments, environment: ["TERM": "xterm-256color", "PS1": "$ ", "PATH": "/usr/bin:/bin"], directory: "/tmp")
    }

    struct Fixture {
        let mesh: LoopbackAgentMesh
        let service: PTYService
        let clock: MockClock

        static func start() async throws -> Fixture {
            let mesh = try await LoopbackAgentMesh.start()
            let clock = MockClock()
            let service = PTYService(clock: clock, logger: Logger(label: "test.pty"), command: { PTYServiceTests.shell($0) })
            try await mesh.agent.listen { service.decision(for: $0) ?? .refuse(reason: "pty only") }
            return Fixture(mesh: mesh, service: service, clock: clock)
        }

        func attach(_ id: UUID, width: Int = 80, height: Int = 24, command: String = "") async throws -> TerminalViewer {
            let channel = try await mesh.gateway.openStream(to: mesh.agent.privateKey.publicKey, service: .pty) { channel in
                channel.eventLoop.makeCompletedFuture { try PTYStream.opener(channel) }
            }
            let viewer = TerminalViewer(channel)
            try await viewer.send(.attach(PTYAttach(id: id, width: width, height: height, command: command)))
            return viewer
        }

        func stop() async {
            await service.closeAll()
            await mesh.close()
        }
    }

    @Test func typedCommandsEchoBack() async throws {
        let fixture = try await Fixture.start()
        let viewer = try await fixture.attach(UUID())
        try await viewer.type("echo hello-$((6*7))\r")
        #expect(await viewer.waitFor { $0.text.contains("hello-42") })
        await viewer.close()
        await fixture.stop()
    }

    @Test func resizeReachesTheProgram() async throws {
        let fixture = try await Fixture.start()
        let viewer = try await fixture.attach(UUID(), width: 80, height: 24)
        try await viewer.type("stty size\r")
        #expect(await viewer.waitFor { $0.text.contains("24 80") })
        try await viewer.send(.resize(width: 132, height: 43))
        try await viewer.type("stty size\r")
        #expect(await viewer.waitFor { $0.text.contains("43 132") })
        await viewer.close()
        await fixture.stop()
    }

    @Test func reattachShowsEarlierOutputAndKeepsTheProcess() async throws {
        let fixture = try await Fixture.start()
        let id = UUID()
        let first = try await fixture.attach(id)
        try await first.type("echo pid=$$; echo marker-$((1000+337))\r")
        #expect(await first.waitFor { $0.text.contains("marker-1337") })
        let pid = try #require(await first.shellPID())
        await first.close()

        let second = try await fixture.attach(id)
        #expect(await second.waitFor { $0.text.contains("marker-1337") }, "the repaint shows what the first viewer saw")
        try await second.type("echo again-$$\r")
        #expect(await second.waitFor { $0.text.contains("again-\(pid)") }, "the same shell, not a new one")
        #expect(await fixture.service.count == 1)
        await second.close()
        await fixture.stop()
    }

    @Test func twoViewersShareOneSession() async throws {
        let fixture = try await Fixture.start()
        let id = UUID()
        let (a, b) = (try await fixture.attach(id), try await fixture.attach(id))
        try await a.type("echo from-$((2+3))-a\r")
        #expect(await a.waitFor { $0.text.contains("from-5-a") })
        #expect(await b.waitFor { $0.text.contains("from-5-a") }, "output fans out to every viewer")
        try await b.type("echo from-$((3+4))-b\r")
        #expect(await a.waitFor { $0.text.contains("from-7-b") }, "and input from any viewer reaches the one process")
        await a.close()
        await b.close()
        await fixture.stop()
    }

    @Test func idleSessionIsReapedAfterFiveMinutes() async throws {
        let fixture = try await Fixture.start()
        let id = UUID()
        let first = try await fixture.attach(id)
        try await first.type("echo pid=$$\r")
        let pid = try #require(await first.shellPID())
        await first.close()
        #expect(await fixture.clock.waitForSleepers(1), "the idle timer starts when the last viewer leaves")

        // A viewer back within the timeout keeps the session; leaving again restarts the count.
        fixture.clock.advance(by: .seconds(240))
        let second = try await fixture.attach(id)
        #expect(await second.waitFor { $0.text.contains("pid=\(pid)") })
        #expect(await fixture.clock.waitForSleepers(0), "attaching cancels the idle timer")
        await second.close()
        #expect(await fixture.clock.waitForSleepers(1))
        fixture.clock.advance(by: .seconds(240))
        #expect(await fixture.service.count == 1)
        #expect(kill(pid, 0) == 0, "4 + 4 minutes with a visit between: still running")

        fixture.clock.advance(by: .seconds(61))
        #expect(await eventually { await fixture.service.count == 0 }, "5 minutes after the last detach the session ends")
        #expect(await eventually { kill(pid, 0) != 0 }, "and its shell is gone")

        let third = try await fixture.attach(id)
        try await third.type("echo pid=$$\r")
        let newPID = await third.shellPID()
        #expect(newPID != nil && newPID != pid, "the id starts a new session")
        await third.close()
        await fixture.stop()
    }

    /// A viewer that stops reading falls behind, stops getting chunks (nothing piles up for it), and gets a
    /// repaint once it reads again; the other viewer and the program never wait for it. (A reading viewer may
    /// itself fall behind on a loaded machine; it then gets a repaint too, so only its end state is checked.)
    @Test(.timeLimit(.minutes(3))) func aStalledViewerIsRepaintedNotWaitedFor() async throws {
        let fixture = try await Fixture.start()
        let id = UUID()
        let stalled = try await fixture.mesh.gateway.openStream(to: fixture.mesh.agent.privateKey.publicKey, service: .pty) { channel in
            channel.eventLoop.makeCompletedFuture { try PTYStream.opener(channel) }
        }
        let reader = try await fixture.attach(id)
        let total = 12 << 20  // past the stream's 4 MiB window and the 1 MiB behind limit (libvterm takes a few MB/s)
        let (resume, resumed) = AsyncStream<Void>.makeStream()
        let stalledSaw = Task {
            try await stalled.executeThenClose { inbound, outbound in
                try await outbound.write(.attach(PTYAttach(id: id, width: 80, height: 24)))
                for await _ in resume {}  // not reading: the stream's window fills and the agent's writes wait
                var bytes = 0
                var repaints = 0
                for try await frame in inbound {
                    guard case .output(let output) = frame else { break }
                    bytes += output.readableBytes
                    if output.readableBytesView.starts(with: [0x1B, 0x63]) { repaints += 1 }
                    if repaints >= 2 { break }  // the attach's repaint, then the one after falling behind
                }
                return (bytes, repaints)
            }
        }
        try await reader.type("head -c \(total) /dev/zero | tr '\\0' x; echo; echo done-$((40+2))\r")
        #expect(await reader.waitFor(timeout: .seconds(90)) { $0.text.contains("done-42") }, "the reading viewer gets everything while the other stalls")
        resumed.finish()
        let (bytes, repaints) = try await stalledSaw.value
        #expect(repaints == 2, "the stalled viewer is repainted once it reads again")
        #expect(bytes < total / 2, "it was not sent everything it missed")
        await reader.close()
        await fixture.stop()
    }

    @Test func processExitIsToldToEveryViewer() async throws {
        let fixture = try await Fixture.start()
        let id = UUID()
        let (a, b) = (try await fixture.attach(id), try await fixture.attach(id))
        try await a.type("echo bye; exit 3\r")
        for viewer in [a, b] {
            #expect(await viewer.waitFor { $0.exit != nil && $0.closed })
            #expect(viewer.exit == PTYExit(reason: "process exited with code 3", code: 3))
            #expect(viewer.text.contains("bye"), "output written just before the exit still arrives")
        }
        #expect(await eventually { await fixture.service.count == 0 })
        await fixture.stop()
    }

    @Test func commandRunsInsteadOfTheShell() async throws {
        let fixture = try await Fixture.start()
        let viewer = try await fixture.attach(UUID(), command: "printf 'cmd-%s' ok; exit 0")
        #expect(await viewer.waitFor { $0.exit != nil })
        #expect(viewer.text.contains("cmd-ok"))
        #expect(viewer.exit?.code == 0)
        await fixture.stop()
    }

    @Test func invalidAttachIsRefusedWithAReason() async throws {
        let fixture = try await Fixture.start()
        let viewer = try await fixture.attach(UUID(), width: 0, height: 24)
        #expect(await viewer.waitFor { $0.closed })
        #expect(viewer.exit?.reason.contains("terminal size 0x24") == true)
        #expect(await fixture.service.count == 0)
        await fixture.stop()
    }

    @Test func malformedFrameClosesOnlyThatStream() async throws {
        let fixture = try await Fixture.start()
        let id = UUID()
        let good = try await fixture.attach(id)
        try await good.type("echo before-$((40+2))\r")
        #expect(await good.waitFor { $0.text.contains("before-42") })

        let bad = try await fixture.mesh.gateway.openStream(to: fixture.mesh.agent.privateKey.publicKey, service: .pty) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
        var attach = ByteBuffer()
        PTYClientFrame.attach(PTYAttach(id: id, width: 80, height: 24)).encode(into: &attach)
        let ended: Bool = try await bad.executeThenClose { inbound, outbound in
            try await outbound.write(attach)
            try await outbound.write(ByteBuffer(bytes: [0x7F, 0, 0, 0, 1, 0x00]))  // no such frame type
            do { for try await _ in inbound {} } catch {}  // the repaint, then the end (FIN or reset)
            return true
        }
        #expect(ended, "the agent ends the stream that sent the bad frame")

        try await good.type("echo after-$((40+3))\r")
        #expect(await good.waitFor { $0.text.contains("after-43") }, "the session and its other viewer carry on")
        await good.close()
        await fixture.stop()
    }
}

/// Polls `condition` until it holds, for at most `timeout` of real time.
func eventually(timeout: Duration = .seconds(20), _ condition: () async -> Bool) async -> Bool {
    let giveUp = ContinuousClock.now + timeout
    while ContinuousClock.now < giveUp {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return await condition()
}

/// One opener of a `pty` stream: collects what the agent sends.
final class TerminalViewer: Sendable {
    struct Seen: Sendable {
        var output: [UInt8] = []
        var exit: PTYExit?
        var closed = false
        var text: String { String(decoding: output, as: UTF8.self) }
    }

    private let channel: any Channel
    private let seen = Mutex(Seen())
    private let writer = Mutex<NIOAsyncChannelOutboundWriter<PTYClientFrame>?>(nil)
    private let ready = AsyncStream<Void>.makeStream()

    init(_ connection: NIOAsyncChannel<PTYAgentFrame, PTYClientFrame>) {
        channel = connection.channel
        Task { [self] in
            try? await connection.executeThenClose { inbound, outbound in
                self.writer.withLock { $0 = outbound }
                self.ready.continuation.finish()
                for try await frame in inbound {
                    switch frame {
                    case .output(let bytes): self.seen.withLock { $0.output += bytes.readableBytesView }
                    case .exit(let exit): self.seen.withLock { $0.exit = exit }
                    }
                }
            }
            ready.continuation.finish()
            seen.withLock { $0.closed = true }
        }
    }

    var text: String { seen.withLock { $0.text } }
    var exit: PTYExit? { seen.withLock { $0.exit } }

    func send(_ frame: PTYClientFrame) async throws {
        for await _ in ready.stream {}
        guard let outbound = writer.withLock({ $0 }) else { throw ChannelError.ioOnClosedChannel }
        try await outbound.write(frame)
    }

    /// The number a shell printed as `pid=N` (after `echo pid=$$`): digits only appear in the output, not the echo.
    func shellPID() async -> pid_t? {
        _ = await waitFor { $0.text.firstMatch(of: /pid=\d+/) != nil }
        return text.firstMatch(of: /pid=(\d+)/).flatMap { pid_t($0.1) }
    }

    func type(_ text: String) async throws {
        try await send(.input(ByteBuffer(string: text)))
    }

    func waitFor(timeout: Duration = .seconds(20), _ condition: @escaping (Seen) -> Bool) async -> Bool {
        await eventually(timeout: timeout) { seen.withLock { condition($0) } }
    }

    func close() async {
        try? await channel.close()
        _ = await eventually { seen.withLock { $0.closed } }
    }
}

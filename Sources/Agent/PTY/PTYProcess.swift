import CPTY
import Foundation
import NIOCore
import NIOPosix

/// What a session runs: the program, its argv (argv[0] included), environment and working directory.
public struct PTYCommand: Sendable, Equatable {
    public var path: String
    public var arguments: [String]
    public var environment: [String: String]
    public var directory: String

    public init(path: String, arguments: [String], environment: [String: String], directory: String) {
        (self.path, self.arguments, self.environment, self.directory) = (path, arguments, environment, directory)
    }

    /// The user's login shell (`-bash` style argv[0], so it reads the profile), or `shell -c command`.
    /// `TERM=xterm-256color` is what xterm.js understands; the agent's own settings (its token above all) stay out.
    public static func shell(running command: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> PTYCommand {
        let account = PTYAccount.current
        var environment = environment.filter { !$0.key.hasPrefix("MESHGATE_AGENT_") }
        environment["TERM"] = "xterm-256color"
        environment["SHELL"] = account.shell
        environment["HOME"] = environment["HOME"] ?? account.home
        environment["USER"] = environment["USER"] ?? account.name
        environment["LOGNAME"] = environment["LOGNAME"] ?? account.name
        let name = (account.shell as NSString).lastPathComponent
        let arguments = command.isEmpty ? ["-" + name] : [name, "-c", command]
        return PTYCommand(path: account.shell, arguments: arguments, environment: environment, directory: environment["HOME"] ?? account.home)
    }
}

/// The account the agent runs as, from the password database.
struct PTYAccount {
    var name: String
    var home: String
    var shell: String

    static var current: PTYAccount {
        guard let entry = getpwuid(getuid()) else { return PTYAccount(name: "\(getuid())", home: "/", shell: "/bin/sh") }
        let shell = String(cString: entry.pointee.pw_shell)
        return PTYAccount(
            name: String(cString: entry.pointee.pw_name), home: String(cString: entry.pointee.pw_dir),
            shell: shell.isEmpty || access(shell, X_OK) != 0 ? "/bin/sh" : shell
        )
    }
}

/// How a session's process ended.
public enum PTYProcessStatus: Sendable, Equatable {
    case exited(code: Int)
    case signalled(Int)

    init(waitStatus status: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        self = status & 0x7f == 0 ? .exited(code: Int((status >> 8) & 0xff)) : .signalled(Int(status & 0x7f))
    }
}

public struct PTYSpawnError: Error, CustomStringConvertible {
    public let description: String
}

/// A process on a new pseudo-terminal, leading its own session (so signals reach everything it started).
final class PTYProcess: Sendable {
    let pid: pid_t
    /// The controller side; the session's channel owns and closes it.
    let controller: CInt

    private init(pid: pid_t, controller: CInt) {
        (self.pid, self.controller) = (pid, controller)
    }

    static func spawn(_ command: PTYCommand, rows: Int, columns: Int) throws -> PTYProcess {
        var name = [CChar](repeating: 0, count: 256)
        let controller = meshgate_pty_open(UInt16(clamping: rows), UInt16(clamping: columns), &name, name.count)
        guard controller >= 0 else { throw PTYSpawnError(description: "cannot open a pseudo-terminal: \(String(cString: strerror(-controller)))") }
        let arguments = command.arguments.map { strdup($0) } + [nil]
        let environment = command.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (arguments + environment).forEach { free($0) } }
        let pid = meshgate_pty_spawn(name, command.path, arguments, environment, command.directory)
        guard pid > 0 else {
            close(controller)
            throw PTYSpawnError(description: "cannot start \(command.path): \(String(cString: strerror(-pid)))")
        }
        return PTYProcess(pid: pid, controller: controller)
    }

    /// Only while the channel owning `controller` is open: a closed descriptor's number may be reused.
    func resize(rows: Int, columns: Int) {
        _ = meshgate_pty_resize(controller, UInt16(clamping: rows), UInt16(clamping: columns))
    }

    /// Signals the whole process group, so a shell's children go too.
    func signal(_ signal: Int32) {
        kill(-pid, signal)
    }

    /// Waits for the process to end and reaps it. A thread of its own blocks in waitpid: there is no portable
    /// asynchronous child notification, and a session is long-lived, so one thread each is cheap enough.
    func exitStatus() async -> PTYProcessStatus {
        let pid = self.pid
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: PTYProcessStatus(waitStatus: status))
            }
        }
    }

    /// The controller side as a channel of bytes (reads: the terminal's output; writes: its input).
    func channel(on group: any EventLoopGroup) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: controller) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
    }
}

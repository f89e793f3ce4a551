import ArgumentParser
import Tunnel

@main
struct Meshgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshgate",
        abstract: "A gateway for remote development workspaces.",
        discussion: "One binary plays every role: the primary server and the workspace agent so far.",
        version: BuildInfoVersion.value,
        subcommands: [ServerCommand.self, AgentCommand.self]
    )

    static func main() async {
        // Before any thread uses libsodium: its set-up swaps in the CPU's implementations (see `Sodium`).
        Sodium.start()
        await main(nil)
    }
}

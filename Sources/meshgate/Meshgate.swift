import ArgumentParser

@main
struct Meshgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meshgate",
        abstract: "A gateway for remote development workspaces.",
        discussion: "One binary plays every role; today: the primary server.",
        version: BuildInfoVersion.value,
        subcommands: [ServerCommand.self]
    )
}

import NIOCore
import Tunnel

/// A gateway's mesh node and an agent's, joined over loopback UDP (WireGuard and all): the agent forwards `tcp:`
/// streams to 127.0.0.1 except port 9, as the tests of everything that talks to apps through an agent need.
public struct LoopbackAgentMesh: Sendable {
    public let gateway: MeshNode
    public let agent: MeshNode

    public static func start() async throws -> LoopbackAgentMesh {
        let gateway = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        let agent = try await MeshNode.start(privateKey: .generate(), address: .random(), host: "127.0.0.1")
        let agentEndpoint = try SocketAddress(ipAddress: "127.0.0.1", port: agent.localPort!)
        try await gateway.addPeer(agent.privateKey.publicKey, allowedIPs: [MeshPrefix(agent.address, length: 128)!], endpoint: agentEndpoint)
        try await agent.addPeer(gateway.privateKey.publicKey, allowedIPs: [MeshPrefix(gateway.address, length: 128)!], endpoint: nil)
        try await agent.listen { MeshTCPForward(allows: { $0 != 9 }).decision(for: $0) ?? .refuse(reason: "tcp only") }
        return LoopbackAgentMesh(gateway: gateway, agent: agent)
    }

    public func close() async {
        try? await gateway.close()
        try? await agent.close()
    }
}

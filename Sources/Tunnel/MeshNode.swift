import NIOCore
import NIOPosix

/// A mesh node: a WireGuard device on a UDP socket, answering pings to its mesh address and handing every
/// other packet to `onPacket` (the mesh streams of a later layer).
///
/// All device state lives on the socket's event loop (`LoopState`); the public API hops there.
public final class MeshNode: Sendable {
    public let privateKey: NodePrivateKey
    public let address: MeshAddress
    public let channel: any Channel
    /// How this node uses direct UDP paths (see MeshNode+Direct).
    public let directConfiguration: DirectPathConfiguration
    let state: NIOLoopBound<LoopState>
    private let timer: NIOLoopBound<RepeatedTask?>

    /// How often device timers run; WireGuard's timers are seconds long, so 100 ms is ample precision.
    static let tickInterval: TimeAmount = .milliseconds(100)
    /// Datagrams taken from the socket per receive call; with GRO each slot may hold a run (8 slots of 64 KiB: a
    /// 512 KiB buffer, reused from read to read).
    static let datagramsPerRead = receivesCoalesced ? 8 : 16
    /// The longest datagram taken: WireGuard packets of the mesh MTU (1280) and its overhead, with margin. Anything
    /// longer could never be a peer's packet and is dropped unread.
    static let maxDatagramSize = 2048
    /// Whether the socket takes coalesced runs (GRO); then a receive slot must hold a whole run.
    static let receivesCoalesced = UDPOffload.receiveAvailable
    static let receiveSlotSize = receivesCoalesced ? UDPOffload.receiveSlotSize : maxDatagramSize

    /// Per-loop state: the device, outstanding pings and the packet sink.
    final class LoopState {
        let device: WireGuardDevice
        let address: MeshAddress
        var channel: (any Channel)?
        var pings: [UInt16: (sentAt: ContinuousClock.Instant, promise: EventLoopPromise<Duration>)] = [:]
        var nextPingSequence: UInt16 = 0
        var onPacket: ([UInt8], NodePublicKey) -> Void = { _, _ in }
        /// The DERP regions this node is connected to, by region id.
        var derpLinks: [Int: any DERPLink] = [:]
        /// The stream transport (UDP port `MeshStreamTransport.port` on our address).
        var streams: MeshStreamMultiplexer?
        /// Direct UDP paths to managed peers (see MeshNode+Direct); set once the socket is bound.
        var direct: DirectPaths?

        init(device: WireGuardDevice, address: MeshAddress) { (self.device, self.address) = (device, address) }

        /// The single-entry cache of `transmit`: a peer's endpoint as a socket address (built per datagram, it
        /// cost an allocation each time).
        private var lastDestination: (endpoint: Endpoint, address: SocketAddress)?
        /// UDP datagrams waiting to go out together (see `UDPOffload.Run`).
        private var pendingRun: UDPOffload.Run?
        /// Whether segmented writes may be tried at all (configuration; a kernel without them gets a limit of 0 from
        /// every probe).
        var segmentationAllowed = true
        /// Per endpoint, the longest segment a segmented write may carry (0: none) and until when that holds.
        private var segmentLimits: [Endpoint: (limit: Int, until: NIODeadline)] = [:]
        /// Datagrams longer than any peer sends, dropped before any work is spent on them (`drops()`: malformed).
        var oversizedDatagrams = 0
        /// Writes that carried several datagrams, and reads that brought several: for tests and statistics.
        var segmentedWrites = 0
        var coalescedReads = 0

        /// Carries out the device's outputs: transmit over UDP or DERP, deliver the rest.
        func handle(_ outputs: [WireGuardDevice.Output]) {
            var relayed = RelayedBatch()
            carryOut(outputs, relayed: &relayed)
            finish(relayed)
        }

        private func carryOut(_ outputs: [WireGuardDevice.Output], relayed: inout RelayedBatch) {
            for output in outputs {
                switch output {
                case .transmit(let datagram, let endpoint):
                    transmit(ByteBuffer(bytes: datagram), to: endpoint, relayed: &relayed)
                case .deliver(let packet, let peer):
                    deliver(ByteBuffer(bytes: packet), from: peer)
                }
            }
        }

        /// A datagram from a path (UDP or DERP). Transport messages take the data path: opened into a buffer of
        /// their own and handed on without another copy. Handshakes and cookies go the device's array path.
        func receive(_ datagram: ByteBuffer, from endpoint: Endpoint) {
            // Receive slots hold whole GRO runs (64 KiB); a single datagram that long is no peer's.
            guard datagram.readableBytes <= MeshNode.maxDatagramSize else {
                oversizedDatagrams += 1
                return
            }
            guard datagram.getInteger(at: datagram.readerIndex, as: UInt8.self) == WireGuardMessageType.transport.rawValue else {
                return handle(device.receive(Array(datagram.readableBytesView), from: endpoint, now: .now))
            }
            let (outputs, delivery) = device.receiveTransport(datagram, from: endpoint, now: .now, allocator: allocator)
            if !outputs.isEmpty { handle(outputs) }
            if let (packet, peer) = delivery { deliver(packet, from: peer) }
        }

        /// An authenticated packet: stream datagrams to the streams, pings answered or matched, the rest to
        /// `onPacket`.
        private func deliver(_ packet: ByteBuffer, from peer: NodePublicKey) {
            if let streams, let payload = UDPDatagram.payload(of: packet, to: address, port: MeshStreamTransport.port) {
                return streams.receive(payload, from: peer)
            }
            let bytes = Array(packet.readableBytesView)
            if let reply = ICMPv6.reply(to: bytes, local: address) {
                handle(device.send(reply, now: .now))
            } else if let (_, echo) = ICMPv6.parse(bytes, reply: true), let ping = pings.removeValue(forKey: echo.sequence) {
                ping.promise.succeed(.now - ping.sentAt)
            } else {
                onPacket(bytes, peer)
            }
        }

        /// Relayed datagrams go out per region in one batch (one hop, one flush).
        typealias RelayedBatch = [Int: [(packet: ByteBuffer, destination: NodePublicKey)]]

        private func transmit(_ datagram: ByteBuffer, to endpoint: Endpoint, relayed: inout RelayedBatch) {
            if case .derp(let region, let node) = endpoint {
                return relayed[region, default: []].append((datagram, node))
            }
            // UDP: datagrams join a run for one segmented write where they can.
            if pendingRun?.append(datagram, to: endpoint) == true { return }
            if let run = pendingRun { write(run) }
            pendingRun = UDPOffload.Run(datagram, to: endpoint)
        }

        /// Sends the pending run, the relayed batch, and flushes the socket. No link to a region: dropped, as UDP
        /// would, and WireGuard's timers retry.
        private func finish(_ relayed: RelayedBatch) {
            if let run = pendingRun {
                pendingRun = nil
                write(run)
            }
            for (region, batch) in relayed { derpLinks[region]?.send(batch) }
            channel?.flush()
        }

        /// One segmented write for a run of several datagrams when the route takes it, else a write each.
        private func write(_ run: UDPOffload.Run) {
            guard let channel, let remote = socketAddress(of: run.endpoint) else { return }
            if run.datagrams.count > 1, segmentationAllowed, run.segmentSize <= segmentLimit(to: run.endpoint) {
                segmentedWrites += 1
                let metadata = AddressedEnvelope<ByteBuffer>.Metadata(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: run.segmentSize)
                let written = channel.eventLoop.makePromise(of: Void.self)
                // A refusal SwiftNIO survives (EMSGSIZE: the path MTU shrank): no more runs there for a while; the
                // streams resend what was lost.
                let endpoint = run.endpoint
                written.futureResult.assumeIsolated().whenFailure { [weak self] _ in
                    self?.segmentLimits[endpoint] = (0, .now() + UDPOffload.probeLifetime)
                }
                return channel.write(AddressedEnvelope(remoteAddress: remote, data: run.joined(allocator: channel.allocator), metadata: metadata), promise: written)
            }
            for datagram in run.datagrams { channel.write(AddressedEnvelope(remoteAddress: remote, data: datagram), promise: nil) }
        }

        private func socketAddress(of endpoint: Endpoint) -> SocketAddress? {
            if let last = lastDestination, last.endpoint == endpoint { return last.address }
            guard let address = endpoint.socketAddress else { return nil }
            lastDestination = (endpoint, address)
            return address
        }

        /// Asked of the kernel per endpoint, again once the answer is old (see `UDPOffload.segmentLimit`).
        private func segmentLimit(to endpoint: Endpoint) -> Int {
            let now = NIODeadline.now()
            if let known = segmentLimits[endpoint], now < known.until { return known.limit }
            let limit = UDPOffload.segmentLimit(to: endpoint)
            segmentLimits[endpoint] = (limit, now + UDPOffload.probeLifetime)
            return limit
        }

        private var allocator: ByteBufferAllocator { channel?.allocator ?? ByteBufferAllocator() }

        /// Stream-transport datagrams to `peer`'s mesh address, each written once into the buffer the socket sends:
        /// IPv6/UDP around it, then sealed in place by WireGuard.
        func transmitStreamDatagrams(_ datagrams: [ByteBuffer], to peer: NodePublicKey) {
            guard let destination = device.meshAddress(of: peer) else { return }
            let now = ContinuousClock.now
            let allocator = self.allocator
            var relayed = RelayedBatch()
            for payload in datagrams {
                let packetLength = IPv6Header.length + UDPDatagram.headerLength + payload.readableBytes
                var datagram = allocator.buffer(capacity: TransportCodec.sealedLength(of: packetLength))
                datagram.writeRepeatingByte(0, count: TransportCodec.headerLength)
                UDPDatagram.write(source: address, destination: destination, sourcePort: MeshStreamTransport.port,
                                  destinationPort: MeshStreamTransport.port, payload: payload, into: &datagram)
                if let endpoint = device.sealTransport(&datagram, to: peer, now: now) {
                    transmit(datagram, to: endpoint, relayed: &relayed)
                } else {
                    // No session that can send it as it is: the device queues it, handshakes or rekeys.
                    datagram.moveReaderIndex(forwardBy: TransportCodec.headerLength)
                    carryOut(device.send(Array(datagram.readableBytesView), now: now), relayed: &relayed)
                }
            }
            finish(relayed)
        }
    }

    private init(
        privateKey: NodePrivateKey, address: MeshAddress, channel: any Channel, directConfiguration: DirectPathConfiguration,
        state: NIOLoopBound<LoopState>, timer: NIOLoopBound<RepeatedTask?>
    ) {
        (self.privateKey, self.address, self.channel, self.state, self.timer) = (privateKey, address, channel, state, timer)
        self.directConfiguration = directConfiguration
    }

    /// Binds a UDP socket at `host:port` (port 0: any) and starts the device's timers.
    public static func start(
        privateKey: NodePrivateKey, address: MeshAddress, host: String = "0.0.0.0", port: Int = 0,
        configuration: WireGuardDevice.Configuration = .init(), streamParameters: MeshStreamTransport.Parameters = .init(),
        direct: DirectPathConfiguration = .init(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> MeshNode {
        let loop = group.next()
        let state = try await loop.submit {
            NIOLoopBound(LoopState(device: WireGuardDevice(privateKey: privateKey, configuration: configuration), address: address), eventLoop: loop)
        }.get()
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // Bursts of full packets overflow the default ~200 KB buffers; the kernel caps this at rmem_max.
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .channelOption(.socketOption(.so_sndbuf), value: 4 << 20)
            // recvmmsg: up to `datagramsPerRead` datagrams per system call (one read and one wake-up per packet
            // was a large share of the cost of a bulk transfer), in slots as big as any datagram a peer sends.
            .channelOption(.datagramVectorReadMessageCount, value: datagramsPerRead)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: datagramsPerRead * receiveSlotSize))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if receivesCoalesced, direct.udpOffload { UDPOffload.receiveCoalesced(on: channel) }
                    try channel.pipeline.syncOperations.addHandler(UDPPathHandler(node: state.value))
                }
            }
            .bind(host: host, port: port).get()
        let timer = try await loop.submit {
            state.value.channel = channel
            state.value.segmentationAllowed = direct.udpOffload
            let family = channel.localAddress?.protocol
            state.value.direct = DirectPaths(privateKey: privateKey, configuration: direct) { endpoint in
                endpoint.socketAddress?.protocol == family && UDPRoute.exists(to: endpoint)
            }
            state.value.streams = MeshStreamMultiplexer(
                localKey: privateKey.publicKey, eventLoop: loop, parent: channel, parameters: streamParameters
            ) { [weak node = state.value] datagrams, peer in node?.transmitStreamDatagrams(datagrams, to: peer) }
            let task = loop.scheduleRepeatedTask(initialDelay: tickInterval, delay: tickInterval) { _ in
                let node = state.value
                let now = ContinuousClock.now
                node.handle(node.device.tick(now: now))
                node.handleDirect(node.direct?.tick(now: now, lastReceipt: node.device.lastReceipt, lastData: node.device.lastData) ?? [])
            }
            return NIOLoopBound<RepeatedTask?>(task, eventLoop: loop)
        }.get()
        return MeshNode(privateKey: privateKey, address: address, channel: channel, directConfiguration: direct, state: state, timer: timer)
    }

    public var localPort: Int? { channel.localAddress?.port }

    func onLoop<T: Sendable>(_ body: @escaping @Sendable (LoopState) throws -> T) async throws -> T {
        let state = self.state
        return try await channel.eventLoop.submit { try body(state.value) }.get()
    }

    /// Adds (or updates) a peer. `endpoint` may be nil for peers that will dial us first.
    public func addPeer(_ key: NodePublicKey, allowedIPs: [MeshPrefix], endpoint: SocketAddress?) async throws {
        try await onLoop { $0.device.addPeer(key, allowedIPs: allowedIPs, endpoint: endpoint.flatMap(Endpoint.init)) }
    }

    /// Sends an IPv6 packet into the mesh (routed by its destination).
    public func send(_ packet: [UInt8]) async throws {
        try await onLoop { $0.handle($0.device.send(packet, now: .now)) }
    }

    /// Sends several packets in one hop to the event loop (one flush).
    public func send(_ packets: [[UInt8]]) async throws {
        try await onLoop { state in
            state.handle(packets.flatMap { state.device.send($0, now: .now) })
        }
    }

    /// Packets for the layer above: everything authenticated that is not a ping to or from this node.
    public func setPacketHandler(_ handler: @escaping @Sendable ([UInt8], NodePublicKey) -> Void) async throws {
        try await onLoop { $0.onPacket = handler }
    }

    /// ICMPv6 echo to `destination` through the mesh; the round-trip time, or a timeout error.
    public func ping(_ destination: MeshAddress, timeout: Duration = .seconds(5), payload: [UInt8] = Array("meshgate".utf8)) async throws -> Duration {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: Duration.self)
        let address = self.address
        let sequence: UInt16 = try await onLoop { state in
            state.nextPingSequence &+= 1
            let sequence = state.nextPingSequence
            state.pings[sequence] = (.now, promise)
            let packet = ICMPv6.packet(reply: false, source: address, destination: destination, echo: .init(identifier: 0x6d67, sequence: sequence, data: payload))
            state.handle(state.device.send(packet, now: .now))
            return sequence
        }
        let state = self.state
        loop.scheduleTask(in: TimeAmount(timeout)) {
            state.value.pings.removeValue(forKey: sequence)?.promise.fail(MeshNodeError.pingTimeout(destination))
        }
        return try await promise.futureResult.get()
    }

    /// Starts a new handshake with `peer` now (rekey on demand).
    public func forceHandshake(with peer: NodePublicKey) async throws {
        try await onLoop { $0.handle($0.device.forceHandshake(with: peer, now: .now)) }
    }

    /// Where WireGuard sends `peer`'s datagrams now: through a DERP region, or to the UDP endpoint the peer was
    /// last heard from. nil for an unknown peer, or one with no path yet.
    public func path(to peer: NodePublicKey) async throws -> Endpoint? {
        try await onLoop { $0.device.endpoint(of: peer) }
    }

    public func handshakesCompleted(with peer: NodePublicKey) async throws -> Int {
        try await onLoop { $0.device.handshakesCompleted(with: peer) }
    }

    /// Whether this node may send runs of datagrams as one segmented write (GSO, see `UDPOffload`): on where the
    /// kernel has it, and still asked of each route once. Off, every datagram is a write of its own.
    public func setSegmentationOffload(_ allowed: Bool) async throws {
        try await onLoop { $0.segmentationAllowed = allowed }
    }

    /// Segmented writes sent and coalesced reads received so far.
    public func offloadCounts() async throws -> (segmentedWrites: Int, coalescedReads: Int) {
        try await onLoop { ($0.segmentedWrites, $0.coalescedReads) }
    }

    /// Datagrams dropped, by reason: the device's, and those too long for any peer (counted as malformed).
    public func drops() async throws -> [WireGuardDevice.DropReason: Int] {
        try await onLoop { state in
            var drops = state.device.drops
            if state.oversizedDatagrams > 0 { drops[.malformed, default: 0] += state.oversizedDatagrams }
            return drops
        }
    }

    public func close() async throws {
        let (timer, state) = (self.timer, self.state)
        try await channel.eventLoop.submit {
            timer.value?.cancel()
            state.value.streams?.closeAll(reason: "node stopped")
        }.get()
        try await channel.close()
    }
}

public enum MeshNodeError: Error, CustomStringConvertible {
    case pingTimeout(MeshAddress)
    public var description: String {
        switch self {
        case .pingTimeout(let address): "no echo reply from \(address)"
        }
    }
}

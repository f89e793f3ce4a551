// swift-tools-version:6.2
import PackageDescription

// One settings array for every target: Swift 6 mode plus Hummingbird's three upcoming features.
let swiftSettings: [SwiftSetting] = [
    // https://github.com/apple/swift-evolution/blob/main/proposals/0335-existential-any.md
    .enableUpcomingFeature("ExistentialAny"),
    // https://github.com/swiftlang/swift-evolution/blob/main/proposals/0444-member-import-visibility.md
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "meshgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "meshgate", targets: ["meshgate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.26.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        // libsodium (Debian libsodium-dev): argon2id now; ChaCha20-Poly1305, X25519 and NaCl box for the mesh later.
        .systemLibrary(
            name: "CSodium",
            path: "Sources/CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // libb2 (Debian libb2-dev), the BLAKE2 authors' library: BLAKE2s for WireGuard.
        .systemLibrary(
            name: "CBlake2",
            path: "Sources/CBlake2",
            pkgConfig: "libb2",
            providers: [.apt(["libb2-dev"])]
        ),
        // libvterm (Debian libvterm-dev): the agent's terminal screen, repainted when a browser reattaches to a PTY.
        .systemLibrary(
            name: "CVTerm",
            path: "Sources/CVTerm",
            pkgConfig: "vterm",
            providers: [.apt(["libvterm-dev"])]
        ),
        // Pseudo-terminal calls Swift cannot import (posix_openpt needs _XOPEN_SOURCE, ioctl is variadic).
        .target(name: "CPTY", path: "Sources/CPTY"),
        .target(
            name: "Tunnel",
            dependencies: [
                "CSodium",
                "CBlake2",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Workspace apps: resolve → authorize → proxy, each behind a small protocol, so the primary and the regional
        // workspace proxy run the same code. Never depends on Gateway.
        .target(
            name: "AppProxy",
            dependencies: [
                "Tunnel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),  // HS512 app tokens, AES-GCM app-connect keys
                .product(name: "NIOSSL", package: "swift-nio-ssl"),  // HTTPS apps: TLS over the mesh stream
                .product(name: "NIOTLS", package: "swift-nio"),  // ... and its handshake event
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),  // the fast path's HTTP/2 streams, as frames
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),  // the rest of them: its stream codec
                .product(name: "HummingbirdCore", package: "hummingbird"),  // the browser's Request, the Response
                .product(name: "Hummingbird", package: "hummingbird"),  // the app proxy as router middleware
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Gateway",
            dependencies: [
                "CSodium",
                "Tunnel",
                "AppProxy",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSCompression", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Mustache", package: "swift-mustache"),  // the dashboard's server-rendered pages
            ],
            swiftSettings: swiftSettings
        ),
        // The workspace agent: its apps and their health, the tcp and pty services. Sees Tunnel, never Gateway.
        .target(
            name: "Agent",
            dependencies: [
                "Tunnel",
                "CVTerm",
                "CPTY",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),  // the health probe's status codes and headers
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "meshgate",
            dependencies: [
                "Gateway",
                "Agent",
                "Tunnel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),  // --dev's demo app
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway",
                "Tunnel",
                "AppProxy",  // app tokens and app-connect keys the gateway mints
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),  // client.ws for the coordinator socket
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),  // the HTTP server behind the agent stream pool tests
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                "MeshgateTesting",  // the loopback agent mesh
            ],
            swiftSettings: swiftSettings
        ),
        // Test and benchmark support that ships like the other libraries: the UDP impairment link, a loopback
        // gateway/agent mesh pair.
        .target(
            name: "MeshgateTesting",
            dependencies: [
                "Tunnel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "meshgate-bench",
            dependencies: [
                "Tunnel",
                "MeshgateTesting",
                "CSodium",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),  // the DERP bench's TLS loopback reference
            ],
            path: "bench/Sources/meshgate-bench",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TunnelTests",
            dependencies: [
                "Tunnel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),  // ByteToMessageDecoderVerifier for the DERP codec
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),  // results seen from future callbacks
                .product(name: "NIOHTTP1", package: "swift-nio"),  // HTTP/1.1 over a mesh stream
                .product(name: "Crypto", package: "swift-crypto"),  // incremental SHA-256 of stream contents
                "MeshgateTesting",  // the impairment relay between two nodes
                .product(name: "PropertyBased", package: "swift-property-based"),  // ACK ranges and reassembly
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AppProxyTests",
            dependencies: [
                "AppProxy",
                "Tunnel",
                "MeshgateTesting",  // the loopback agent mesh; SplitMix64 seeds the token fuzzing
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),  // the upstream WebSocket server and the raw client's frames
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),  // the HTTP/2 connection keeper's frames
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),  // the app behind the agent
                .product(name: "HummingbirdTLS", package: "hummingbird"),  // ... as an HTTPS app
                .product(name: "HummingbirdTesting", package: "hummingbird"),  // a browser in front of the forwarder
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),  // the test apps' graceful stop
                .product(name: "X509", package: "swift-certificates"),  // its self-signed certificate
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MeshgateTestingTests",
            dependencies: [
                "MeshgateTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AgentTests",
            dependencies: [
                "Agent",
                "Tunnel",  // the report and health types the agent sends
                "MeshgateTesting",  // MockClock drives the monitor's intervals
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),  // the tiny server the real probe checks
                .product(name: "Yams", package: "Yams"),  // the agent config file's apps, as YAML
            ],
            exclude: ["Oracle"],  // the pyte oracle and the fixtures' recorder: Python, run by the tests
            resources: [.copy("Fixtures")],  // recorded terminal sessions for the screen oracle
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MeshgateTests",
            dependencies: ["meshgate", "Gateway", "Agent", "Tunnel", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
    ]
)

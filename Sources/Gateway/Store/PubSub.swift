import Foundation
import Synchronization

/// Change notifications between the parts of a deployment. In-process now; PostgreSQL LISTEN/NOTIFY
/// implements the same protocol for several replicas. A notification carries no payload: subscribers
/// re-read the store, so a missed or coalesced notification never leaves anyone with stale data.
public protocol PubSub: Sendable {
    func publish(_ topic: String)
    /// Notifications for `topic` until the stream is dropped. Bursts coalesce into one pending wake-up.
    func subscribe(_ topic: String) -> AsyncStream<Void>
}

public final class InMemoryPubSub: PubSub {
    private let subscribers = Mutex<[String: [UUID: AsyncStream<Void>.Continuation]]>([:])

    public init() {}

    public func publish(_ topic: String) {
        let continuations = subscribers.withLock { Array(($0[topic] ?? [:]).values) }
        for continuation in continuations { continuation.yield() }
    }

    public func subscribe(_ topic: String) -> AsyncStream<Void> {
        let id = UUID()
        // bufferingNewest(1): a slow subscriber holds at most one pending notification.
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        subscribers.withLock { $0[topic, default: [:]][id] = continuation }
        continuation.onTermination = { [weak self] _ in
            self?.subscribers.withLock { table in
                table[topic]?[id] = nil
                if table[topic]?.isEmpty == true { table[topic] = nil }
            }
        }
        return stream
    }
}

/// Topic names, written once.
public enum PubSubTopic {
    /// Changes to one workspace, its agents included.
    public static func workspace(_ id: UUID) -> String { "workspace:\(id.uuidString.lowercased())" }
}

import NIOCore
import NIOHTTP1

/// The app's time to start answering, for the exchanges on one stream: one timer that outlives them. An exchange
/// arms it once its request is out and disarms it when the response head is in. The timer moves only when an
/// exchange is due before it fires; otherwise, firing, it finds the exchange then waiting and comes back at that
/// one's deadline. A timer scheduled and cancelled for every request cost the mesh node's loop more than the rest
/// of the exchange's bookkeeping. Sits in the stream's pipeline from its first exchange on (`HTTPExchangeHandler
/// .install`), seeing none of its traffic, and goes with the stream.
final class ResponseHeadDeadline: ChannelInboundHandler, NIOScheduledCallbackHandler {
    /// Passed on untouched (NIO takes only inbound or outbound handlers).
    typealias InboundIn = HTTPClientResponsePart

    /// Held until its head is in or it failed, both of which disarm this.
    private var exchange: HTTPExchangeHandler?
    private var due: NIODeadline?
    private var timer: (scheduled: NIOScheduledCallback, at: NIODeadline)?

    /// On the stream's loop.
    func arm(for exchange: HTTPExchangeHandler, at due: NIODeadline, on loop: any EventLoop) {
        (self.exchange, self.due) = (exchange, due)
        if let timer, timer.at <= due { return }
        timer?.scheduled.cancel()
        schedule(at: due, on: loop)
    }

    /// The exchange is answered or failed; a running timer stays for the next one (or ends with the stream).
    func disarm() { (exchange, due) = (nil, nil) }

    private func schedule(at deadline: NIODeadline, on loop: any EventLoop) {
        // Throws only on a loop that is shutting down, which ends the stream anyway.
        timer = (try? loop.assumeIsolated().scheduleCallback(at: deadline, handler: self)).map { ($0, deadline) }
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        guard let firedAt = timer?.at else { return }
        timer = nil
        guard let due else { return }
        if due <= firedAt {
            let exchange = self.exchange
            (self.exchange, self.due) = (nil, nil)
            exchange?.responseHeadTimedOut()
        } else {
            schedule(at: due, on: eventLoop)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.scheduled.cancel()
        (timer, exchange, due) = (nil, nil, nil)
    }
}

@available(*, unavailable)
extension ResponseHeadDeadline: Sendable {}

/// What a blocked transport call waits for before it can go on.
enum Readiness {
    case readable, writable
}

enum TransportResult {
    case transferred(Int)
    case wouldBlock(Readiness)
    /// The peer closed its side (reads only).
    case endOfStream
    case failed
}

/// A connection's bytes: the socket itself, or a TLS session over it.
enum Transport {
    case plain(descriptor: Int32)
    case tls(TLSSession, descriptor: Int32)

    func receive(into buffer: UnsafeMutableRawBufferPointer) -> TransportResult {
        switch self {
        case .plain(let descriptor): Self.result(Socket.receive(descriptor, into: buffer), blockedOn: .readable)
        case .tls(let session, _): session.receive(into: buffer)
        }
    }

    /// Whether input waits, without taking it (see `ConnectionStateMachine.ReadingMode.watching`).
    func peek() -> TransportResult {
        switch self {
        case .plain(let descriptor): Self.result(Socket.peek(descriptor), blockedOn: .readable)
        case .tls(let session, _): session.peek()
        }
    }

    func send(_ bytes: UnsafeRawBufferPointer) -> TransportResult {
        switch self {
        case .plain(let descriptor): Self.result(Socket.send(descriptor, bytes), blockedOn: .writable)
        case .tls(let session, _): session.send(bytes)
        }
    }

    /// Input the transport holds that the socket will not signal (TLS records already read and decrypted).
    var hasBufferedInput: Bool {
        switch self {
        case .plain: false
        case .tls(let session, _): session.hasBufferedInput
        }
    }

    /// Ends our side (TLS: close_notify, then FIN); reading goes on.
    func shutdownWrites() {
        switch self {
        case .plain(let descriptor):
            Socket.shutdownWrites(descriptor)
        case .tls(let session, let descriptor):
            session.sendCloseNotify()
            Socket.shutdownWrites(descriptor)
        }
    }

    private static func result(_ result: Socket.IOResult, blockedOn readiness: Readiness) -> TransportResult {
        switch result {
        case .transferred(let count): .transferred(count)
        case .wouldBlock: .wouldBlock(readiness)
        case .endOfStream: .endOfStream
        case .failed: .failed
        }
    }
}

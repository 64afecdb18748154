import Glibc

/// A failed socket call, with the call's name and the errno text.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var code: Int32

    init(_ operation: String, code: Int32 = errno) {
        self.operation = operation
        self.code = code
    }

    public var description: String { "\(operation): \(String(cString: strerror(code)))" }
}

/// The few POSIX socket calls the server makes, with their C types kept in here (Linux).
enum Socket {
    /// A non-blocking, close-on-exec listening TCP socket on a numeric address; returns it and its bound port.
    static func listen(host: String, port: Int, backlog: Int32) throws(SocketError) -> (descriptor: Int32, port: Int) {
        guard (0...65535).contains(port) else { throw SocketError("port \(port)", code: EINVAL) }
        var ipv4 = sockaddr_in()
        var ipv6 = sockaddr_in6()
        let family: Int32
        if inet_pton(AF_INET, host, &ipv4.sin_addr) == 1 {
            family = AF_INET
            ipv4.sin_family = sa_family_t(AF_INET)
            ipv4.sin_port = in_port_t(UInt16(port).bigEndian)
        } else if inet_pton(AF_INET6, host, &ipv6.sin6_addr) == 1 {
            family = AF_INET6
            ipv6.sin6_family = sa_family_t(AF_INET6)
            ipv6.sin6_port = in_port_t(UInt16(port).bigEndian)
        } else {
            throw SocketError("\"\(host)\" is not a numeric IPv4 or IPv6 address", code: EINVAL)
        }
        let descriptor = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
                                    | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SocketError("socket") }
        do throws(SocketError) {
            // Lets a restarted server bind while connections of the previous one are in TIME_WAIT.
            try setOption(descriptor, SOL_SOCKET, SO_REUSEADDR, 1)
            let bound = family == AF_INET ? bind(descriptor, to: &ipv4) : bind(descriptor, to: &ipv6)
            guard bound == 0 else { throw SocketError("bind \(host):\(port)") }
            guard Glibc.listen(descriptor, backlog) == 0 else { throw SocketError("listen") }
            return (descriptor, try boundPort(descriptor))
        } catch {
            close(descriptor)
            throw error
        }
    }

    enum AcceptResult {
        case accepted(Int32)
        /// Nothing pending, or a transient error that the next readiness event retries.
        case noneReady
        /// The process or system has no descriptor left (EMFILE, ENFILE): retrying at once would spin.
        case outOfDescriptors
    }

    /// The next pending connection, non-blocking and close-on-exec.
    static func accept(_ listener: Int32) -> AcceptResult {
        while true {
            // accept4 is not visible to Swift without _GNU_SOURCE, so the flags are set afterwards.
            let client = Glibc.accept(listener, nil, nil)
            if client >= 0 {
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                // Responses go out in one send; waiting to coalesce them (Nagle) only adds latency.
                try? setOption(client, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
                return .accepted(client)
            }
            switch errno {
            case EINTR: continue
            case EMFILE, ENFILE: return .outOfDescriptors
            default: return .noneReady
            }
        }
    }

    enum IOResult {
        case transferred(Int)
        /// The socket would block: wait for readiness.
        case wouldBlock
        /// The peer closed its side (reads only).
        case endOfStream
        case failed
    }

    static func receive(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        while true {
            let count = recv(descriptor, buffer.baseAddress, buffer.count, 0)
            if count > 0 { return .transferred(count) }
            if count == 0 { return .endOfStream }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
        }
    }

    /// Whether input is waiting, without taking it: `.transferred(1)` when there is, `.endOfStream` when the
    /// peer has closed its side, `.failed` after a reset.
    static func peek(_ descriptor: Int32) -> IOResult {
        var byte: UInt8 = 0
        while true {
            let count = recv(descriptor, &byte, 1, Int32(MSG_PEEK))
            if count > 0 { return .transferred(count) }
            if count == 0 { return .endOfStream }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
        }
    }

    /// MSG_NOSIGNAL: a peer gone away is an EPIPE to handle, not a SIGPIPE that ends the process.
    static func send(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let count = Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return .transferred(count) }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
        }
    }

    static func close(_ descriptor: Int32) {
        _ = Glibc.close(descriptor)
    }

    /// Sends FIN: the peer sees the end of the response while we can still read (and discard) its input.
    static func shutdownWrites(_ descriptor: Int32) {
        _ = Glibc.shutdown(descriptor, Int32(SHUT_WR))
    }

    private static func setOption(_ descriptor: Int32, _ level: Int32, _ name: Int32, _ value: Int32) throws(SocketError) {
        var value = value
        guard setsockopt(descriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SocketError("setsockopt")
        }
    }

    private static func bind<Address>(_ descriptor: Int32, to address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
    }

    private static func boundPort(_ descriptor: Int32) throws(SocketError) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { throw SocketError("getsockname") }
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer in
            if family == AF_INET {
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
        }
    }
}

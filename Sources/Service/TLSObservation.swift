import HTTPServer
import Logging

extension DetectionService {
    /// Every TLS handshake and reload, from the HTTP layer: counted in the metrics and logged. Completed
    /// handshakes are logged at debug (one per connection); failures at info, since scanners and clients
    /// with old TLS or the wrong certificate make them; a reload that failed at error.
    public func observeTLS(_ event: TLSEvent) {
        switch event {
        case .handshakeCompleted(let handshake):
            metrics.recordTLSHandshake(result: "completed")
            var metadata: Logger.Metadata = [
                "protocol": .string(handshake.protocolVersion), "cipher": .string(handshake.cipher),
                "alpn": .string(handshake.applicationProtocol?.rawValue ?? "-"),
                "duration_ms": .stringConvertible(milliseconds(handshake.duration)),
            ]
            if let subject = handshake.clientSubject { metadata["client_subject"] = .string(subject) }
            logger.debug("tls handshake", metadata: metadata)
        case .handshakeFailed(let failure):
            metrics.recordTLSHandshake(result: failure.kind.rawValue)
            logger.info("tls handshake failed", metadata: [
                "result": .string(failure.kind.rawValue), "reason": .string(failure.reason),
                "duration_ms": .stringConvertible(milliseconds(failure.duration)),
            ])
        case .reloaded:
            logger.notice("tls reloaded", metadata: ["certificate": .string(configuration.tlsCertificateFile)])
        case .reloadFailed(let error):
            // The previous certificate and key stay in use.
            logger.error("tls reload failed", metadata: [
                "setting": .string(ServiceConfiguration.settingName(of: error.source)), "error": .string(error.reason),
            ])
        }
    }
}

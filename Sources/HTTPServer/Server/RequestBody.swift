/// An admitted request's body as it arrives, in either protocol: room is asked of its allowance (if any)
/// when the bytes pass what it granted, and the buffer is sized to the grant, so that what is held is what
/// was granted.
struct RequestBody {
    private(set) var bytes: [UInt8] = []
    private var grantedBytes = 0

    /// Appends `piece`, or returns the allowance's refusal (then the request is answered with it).
    /// `declaredLength`: the body's announced length, nil when unknown (chunked, or HTTP/2 without one).
    mutating func append(_ piece: [UInt8], declaredLength: Int?, maxBodyBytes: Int,
                         allowance: (any BodyAllowance)?) -> HTTPResponse? {
        let needed = bytes.count + piece.count
        if let allowance, needed > grantedBytes {
            let target = nextBodyAllowance(needed: needed, granted: grantedBytes, declaredLength: declaredLength,
                                           maxBodyBytes: maxBodyBytes)
            if let refusal = allowance.extend(to: target) { return refusal }
            grantedBytes = target
            bytes.reserveCapacity(target)
        }
        bytes.append(contentsOf: piece)
        return nil
    }
}

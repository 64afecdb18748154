import ZlibCodec

/// Why a PNG was refused.
public enum PNGError: Error, Equatable, CustomStringConvertible {
    case badSignature
    /// The file ends early; the text says where.
    case truncated(String)
    case crcMismatch(chunk: String)
    /// A chunk that breaks the format's rules (length, name, order, contents).
    case badChunk(String)
    case badHeader(String)
    case missingChunk(String)
    case tooLarge(String)
    /// The inflated image data does not fit the header, or a row has an unknown filter.
    case badImageData(String)
    case compression(ZlibError)
    /// A colour pixel where a grayscale image is needed.
    case notGrayscale(row: Int, column: Int)

    public var description: String {
        switch self {
        case .badSignature: "not a PNG file (the 8-byte signature is missing)"
        case .truncated(let location): "the PNG file is truncated (\(location))"
        case .crcMismatch(let chunk): "the PNG is corrupt: the CRC of chunk \(chunk) does not match its contents"
        case .badChunk(let reason): "the PNG is invalid: \(reason)"
        case .badHeader(let reason): "the PNG header (IHDR) is invalid: \(reason)"
        case .missingChunk(let chunk): "the PNG has no \(chunk) chunk"
        case .tooLarge(let reason): "the PNG is too large: \(reason)"
        case .badImageData(let reason): "the PNG image data is invalid: \(reason)"
        case .compression(let error): "the PNG image data cannot be decompressed: \(error)"
        case .notGrayscale(let row, let column):
            "the PNG is in colour (first colour pixel at row \(row), column \(column)); the model reads grayscale MRI: send a grayscale image"
        }
    }
}

/// Caps on what the PNG decoder accepts, checked from IHDR before any pixel is inflated.
public struct PNGLimits: Sendable, Equatable {
    public var maximumWidth: Int
    public var maximumHeight: Int
    /// Default 2^26 pixels (8192 × 8192).
    public var maximumPixels: Int

    public init(maximumWidth: Int = 16384, maximumHeight: Int = 16384, maximumPixels: Int = 1 << 26) {
        (self.maximumWidth, self.maximumHeight, self.maximumPixels) = (maximumWidth, maximumHeight, maximumPixels)
    }
}

/// A PNG's pixels as samples: row-major, channels interleaved, each sample in `0 ... 2^bitDepth − 1`.
/// Palette images decode to RGB (RGBA with a tRNS chunk) at 8 bits; a tRNS colour key becomes an alpha
/// channel.
public struct PNGImage: Sendable, Equatable {
    public enum Color: Sendable, Equatable {
        case gray, grayAlpha, rgb, rgba

        public var channels: Int {
            switch self {
            case .gray: 1
            case .grayAlpha: 2
            case .rgb: 3
            case .rgba: 4
            }
        }

        /// PNG's colour type code.
        var code: UInt8 {
            switch self {
            case .gray: 0
            case .rgb: 2
            case .grayAlpha: 4
            case .rgba: 6
            }
        }
    }

    public let width: Int
    public let height: Int
    public let color: Color
    /// 1, 2, 4 (gray only), 8 or 16.
    public let bitDepth: Int
    public let samples: [UInt16]

    public init(width: Int, height: Int, color: Color, bitDepth: Int, samples: [UInt16]) {
        precondition(width > 0 && height > 0, "a PNG has positive sizes")
        precondition([8, 16].contains(bitDepth) || (color == .gray && [1, 2, 4].contains(bitDepth)), "PNG has no \(color) at \(bitDepth) bits")
        precondition(samples.count == width * height * color.channels, "\(width)×\(height) \(color) needs \(width * height * color.channels) samples")
        precondition(samples.allSatisfy { Int($0) < 1 << bitDepth }, "a sample exceeds \(bitDepth) bits")
        (self.width, self.height, self.color, self.bitDepth, self.samples) = (width, height, color, bitDepth, samples)
    }

    /// An 8- or 16-bit grayscale PNG of `image`, values in [0, 1] (clamped; NaN → 0) rounded to the
    /// nearest level.
    public init(gray image: GrayImage, bitDepth: Int = 8) {
        precondition(bitDepth == 8 || bitDepth == 16, "grayscale output is 8 or 16 bits")
        let maximum = Float((1 << bitDepth) - 1)
        let samples = image.pixels.map { value -> UInt16 in
            UInt16((min(max(value.isNaN ? 0 : value, 0), 1) * maximum).rounded())
        }
        self.init(width: image.width, height: image.height, color: .gray, bitDepth: bitDepth, samples: samples)
    }

    /// Intensities in [0, 1]: the gray level divided by `2^bitDepth − 1`, composited over black by the
    /// alpha (a transparent pixel is background). RGB(A) is accepted only where every visible pixel has
    /// R = G = B; a colour pixel is refused rather than turned into luminance, because colour in an MRI
    /// upload means annotations or an overlay, which luminance would bake into the intensities.
    public func grayscale() throws(PNGError) -> GrayImage {
        let maximum = Float((1 << bitDepth) - 1)
        let channels = color.channels
        let hasAlpha = color == .grayAlpha || color == .rgba
        var pixels = [Float](repeating: 0, count: width * height)
        for index in 0..<pixels.count {
            let base = index * channels
            let alpha = hasAlpha ? Float(samples[base + channels - 1]) / maximum : 1
            if alpha == 0 { continue }
            if color == .rgb || color == .rgba {
                guard samples[base] == samples[base + 1], samples[base] == samples[base + 2] else {
                    throw .notGrayscale(row: index / width, column: index % width)
                }
            }
            pixels[index] = Float(samples[base]) / maximum * alpha
        }
        return GrayImage(width: width, height: height, pixels: pixels)
    }
}

/// IHDR's contents: what a PNG will cost to decode, known before any image data is read.
public struct PNGHeader: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let bitDepth: Int
    /// PNG's colour type code: 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
    public let colorType: UInt8
    public let interlaced: Bool

    /// Samples per pixel as stored (a palette index is one).
    public var channels: Int {
        switch colorType {
        case 0, 3: 1
        case 4: 2
        case 2: 3
        default: 4
        }
    }

    /// Bytes the IDAT stream inflates to: each pass's rows, with their filter bytes.
    public var inflatedByteCount: Int { passes.reduce(0) { $0 + $1.height * (1 + rowBytes($1.width)) } }

    /// Bytes of one filtered row of `width` pixels, without its filter byte.
    func rowBytes(_ width: Int) -> Int { (width * channels * bitDepth + 7) / 8 }

    /// The passes as (first column, first row, steps, size in pixels): one for a plain image, Adam7's
    /// non-empty ones for an interlaced image.
    var passes: [(x: Int, y: Int, dx: Int, dy: Int, width: Int, height: Int)] {
        guard interlaced else { return [(0, 0, 1, 1, width, height)] }
        return PNG.adam7.compactMap { pass in
            let passWidth = (width - pass.x + pass.dx - 1) / pass.dx
            let passHeight = (height - pass.y + pass.dy - 1) / pass.dy
            return passWidth > 0 && passHeight > 0 ? (pass.x, pass.y, pass.dx, pass.dy, passWidth, passHeight) : nil
        }
    }
}

/// PNG (ISO/IEC 15948): every colour type and bit depth, all five filters, Adam7 interlacing, CRC checks.
public enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Adam7's seven passes: first column and row, column and row step.
    static let adam7: [(x: Int, y: Int, dx: Int, dy: Int)] = [
        (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2),
    ]

    /// IHDR, the first chunk, checked against `limits`: the image's size before any of it is inflated.
    public static func header(_ bytes: [UInt8], limits: PNGLimits = PNGLimits()) throws(PNGError) -> PNGHeader {
        guard bytes.starts(with: signature) else { throw .badSignature }
        let first = try chunk(in: bytes, at: signature.count, missing: "no IHDR chunk")
        guard first.type == "IHDR" else { throw .badChunk("the first chunk is \(first.type), not IHDR") }
        return try parseHeader(first.data, limits: limits)
    }

    public static func decode(_ bytes: [UInt8], limits: PNGLimits = PNGLimits()) throws(PNGError) -> PNGImage {
        let header = try header(bytes, limits: limits)
        var palette: [UInt8]?
        var transparency: [UInt8]?
        var compressed: [UInt8] = []
        var idatEnded = false
        // After IHDR: its 13 bytes of data, with length, name and CRC.
        var position = signature.count + 25
        while true {
            let (type, data, next) = try chunk(in: bytes, at: position, missing: "no IEND chunk")
            position = next
            if !compressed.isEmpty && type != "IDAT" { idatEnded = true }
            switch type {
            case "IHDR":
                throw .badChunk("a second IHDR chunk")
            case "PLTE":
                guard header.colorType != 0, header.colorType != 4 else { throw .badChunk("a PLTE chunk in a grayscale image") }
                guard palette == nil, compressed.isEmpty else { throw .badChunk("PLTE must come once, before the image data") }
                let entries = data.count / 3
                guard data.count % 3 == 0, entries >= 1, entries <= 256, header.colorType != 3 || entries <= 1 << header.bitDepth else {
                    throw .badChunk("PLTE has \(data.count) bytes, not 3 per entry for 1…\(header.colorType == 3 ? 1 << header.bitDepth : 256) entries")
                }
                palette = data
            case "tRNS":
                guard compressed.isEmpty, transparency == nil else { throw .badChunk("tRNS must come once, before the image data") }
                switch header.colorType {
                case 0 where data.count == 2, 2 where data.count == 6: break
                case 3:
                    guard let palette else { throw .badChunk("tRNS comes before PLTE") }
                    guard data.count <= palette.count / 3 else { throw .badChunk("tRNS has more entries than the palette") }
                default: throw .badChunk("tRNS of \(data.count) bytes does not fit colour type \(header.colorType)")
                }
                transparency = data
            case "IDAT":
                guard !idatEnded else { throw .badChunk("IDAT chunks are not consecutive") }
                compressed += data
            case "IEND":
                guard !compressed.isEmpty else { throw .missingChunk("IDAT") }
                if header.colorType == 3 && palette == nil { throw .missingChunk("PLTE") }
                let raw = try inflateImageData(compressed, header: header)
                let samples = try unfilter(raw, header: header)
                return try expanded(samples, header: header, palette: palette, transparency: transparency)
            default:
                // An upper-case first letter (bit 5 clear) marks a chunk a decoder must understand.
                if type.first?.isUppercase == true { throw .badChunk("unknown critical chunk \(type)") }
            }
        }
    }

    /// The chunk at `position`: its name, its data, and where the next one starts; its CRC checked.
    /// `missing` says what is lacking when the file ends before a chunk.
    private static func chunk(in bytes: [UInt8], at position: Int, missing: String) throws(PNGError) -> (type: String, data: [UInt8], next: Int) {
        guard position + 8 <= bytes.count else { throw .truncated(missing) }
        let length = Int(ByteReader(bytes: bytes, order: .big).integer(at: position, as: UInt32.self))
        let typeBytes = Array(bytes[position + 4 ..< position + 8])
        let type = String(decoding: typeBytes, as: UTF8.self)
        guard typeBytes.allSatisfy({ (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else {
            throw .badChunk("a chunk name is not four letters (at byte \(position))")
        }
        guard length <= Int(Int32.max) else { throw .badChunk("chunk \(type) claims \(length) bytes") }
        guard position + 12 + length <= bytes.count else { throw .truncated("inside chunk \(type)") }
        let storedCRC = ByteReader(bytes: bytes, order: .big).integer(at: position + 8 + length, as: UInt32.self)
        guard Zlib.crc32(bytes[position + 4 ..< position + 8 + length]) == storedCRC else { throw .crcMismatch(chunk: type) }
        return (type, Array(bytes[position + 8 ..< position + 8 + length]), position + 12 + length)
    }

    private static func parseHeader(_ data: [UInt8], limits: PNGLimits) throws(PNGError) -> PNGHeader {
        guard data.count == 13 else { throw .badHeader("IHDR has \(data.count) bytes, not 13") }
        let reader = ByteReader(bytes: data, order: .big)
        let width = Int(reader.integer(at: 0, as: UInt32.self)), height = Int(reader.integer(at: 4, as: UInt32.self))
        let bitDepth = Int(data[8]), colorType = data[9]
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max) else {
            throw .badHeader("the size \(width)×\(height) is not 1…2^31−1 in both directions")
        }
        let allowedDepths: [Int] = switch colorType {
        case 0: [1, 2, 4, 8, 16]
        case 3: [1, 2, 4, 8]
        case 2, 4, 6: [8, 16]
        default: []
        }
        guard !allowedDepths.isEmpty else { throw .badHeader("colour type \(colorType) does not exist") }
        guard allowedDepths.contains(bitDepth) else { throw .badHeader("bit depth \(bitDepth) is not allowed for colour type \(colorType)") }
        guard data[10] == 0 else { throw .badHeader("compression method \(data[10]) is not 0 (deflate)") }
        guard data[11] == 0 else { throw .badHeader("filter method \(data[11]) is not 0") }
        guard data[12] <= 1 else { throw .badHeader("interlace method \(data[12]) is not 0 or 1") }
        guard width <= limits.maximumWidth, height <= limits.maximumHeight, width * height <= limits.maximumPixels else {
            throw .tooLarge("\(width)×\(height) pixels exceed the limits (\(limits.maximumWidth)×\(limits.maximumHeight), \(limits.maximumPixels) pixels)")
        }
        return PNGHeader(width: width, height: height, bitDepth: bitDepth, colorType: colorType, interlaced: data[12] == 1)
    }

    /// The zlib stream of the IDAT chunks, inflated to exactly the size the header implies.
    private static func inflateImageData(_ compressed: [UInt8], header: PNGHeader) throws(PNGError) -> [UInt8] {
        let expected = header.inflatedByteCount
        let raw: [UInt8]
        do throws(ZlibError) { raw = try Zlib.decompress(compressed, format: .zlib, maximumOutputBytes: expected) }
        catch .outputLimitExceeded { throw .badImageData("it inflates to more than the \(expected) bytes the header implies") }
        catch { throw .compression(error) }
        guard raw.count == expected else { throw .badImageData("it inflates to \(raw.count) bytes; the header implies \(expected)") }
        return raw
    }

    /// Undoes each row's filter and unpacks the samples into image order (de-interlacing Adam7).
    private static func unfilter(_ raw: [UInt8], header: PNGHeader) throws(PNGError) -> [UInt16] {
        let channels = header.channels
        let bytesPerPixel = max(1, channels * header.bitDepth / 8)
        var samples = [UInt16](repeating: 0, count: header.width * header.height * channels)
        var offset = 0
        for pass in header.passes {
            let rowBytes = header.rowBytes(pass.width)
            var previous = [UInt8](repeating: 0, count: rowBytes)
            var row = [UInt8](repeating: 0, count: rowBytes)
            for passRow in 0..<pass.height {
                let filter = raw[offset]
                for i in 0..<rowBytes { row[i] = raw[offset + 1 + i] }
                offset += 1 + rowBytes
                switch filter {
                case 0: break
                case 1: for i in bytesPerPixel..<max(bytesPerPixel, rowBytes) { row[i] &+= row[i - bytesPerPixel] }
                case 2: for i in 0..<rowBytes { row[i] &+= previous[i] }
                case 3:
                    for i in 0..<rowBytes {
                        let left = i >= bytesPerPixel ? Int(row[i - bytesPerPixel]) : 0
                        row[i] &+= UInt8((left + Int(previous[i])) / 2)
                    }
                case 4:
                    for i in 0..<rowBytes {
                        let left = i >= bytesPerPixel ? row[i - bytesPerPixel] : 0
                        let upperLeft = i >= bytesPerPixel ? previous[i - bytesPerPixel] : 0
                        row[i] &+= paethPredictor(left, previous[i], upperLeft)
                    }
                default:
                    throw .badImageData("row \(passRow) uses filter type \(filter); only 0…4 exist")
                }
                let y = pass.y + passRow * pass.dy
                for column in 0..<pass.width {
                    let target = ((y * header.width) + pass.x + column * pass.dx) * channels
                    for channel in 0..<channels {
                        samples[target + channel] = sample(row, index: column * channels + channel, bitDepth: header.bitDepth)
                    }
                }
                swap(&previous, &row)
            }
        }
        return samples
    }

    /// Sample `index` of a row: 16-bit big-endian, whole bytes, or packed most significant bits first.
    private static func sample(_ row: [UInt8], index: Int, bitDepth: Int) -> UInt16 {
        switch bitDepth {
        case 16: return UInt16(row[2 * index]) << 8 | UInt16(row[2 * index + 1])
        case 8: return UInt16(row[index])
        default:
            let perByte = 8 / bitDepth
            let shift = 8 - bitDepth * (index % perByte + 1)
            return UInt16(row[index / perByte] >> shift) & UInt16((1 << bitDepth) - 1)
        }
    }

    /// Palette lookup, and tRNS turned into an alpha channel.
    private static func expanded(_ samples: [UInt16], header: PNGHeader, palette: [UInt8]?,
                                 transparency: [UInt8]?) throws(PNGError) -> PNGImage {
        let (width, height, depth) = (header.width, header.height, header.bitDepth)
        switch (header.colorType, palette, transparency) {
        case (3, let palette?, _):
            let entries = palette.count / 3
            let alphas = transparency ?? []
            let color: PNGImage.Color = alphas.isEmpty ? .rgb : .rgba
            var rgb: [UInt16] = []
            rgb.reserveCapacity(samples.count * color.channels)
            for (position, sample) in samples.enumerated() {
                let index = Int(sample)
                guard index < entries else {
                    throw .badImageData("pixel \(position) uses palette entry \(index); the palette has \(entries)")
                }
                rgb += palette[3 * index ..< 3 * index + 3].map(UInt16.init)
                if color == .rgba { rgb.append(index < alphas.count ? UInt16(alphas[index]) : 255) }
            }
            return PNGImage(width: width, height: height, color: color, bitDepth: 8, samples: rgb)
        case (0, _, let key?), (2, _, let key?):
            // The colour key: 16-bit fields holding the transparent sample values.
            let channels = header.channels
            let keyValues = (0..<channels).map { UInt16(key[2 * $0]) << 8 | UInt16(key[2 * $0 + 1]) }
            let opaque = UInt16((1 << depth) - 1)
            var withAlpha: [UInt16] = []
            withAlpha.reserveCapacity(samples.count / channels * (channels + 1))
            for pixel in 0..<(width * height) {
                let values = samples[pixel * channels ..< (pixel + 1) * channels]
                withAlpha += values
                withAlpha.append(values.elementsEqual(keyValues) ? 0 : opaque)
            }
            // A gray image below 8 bits gains an alpha channel it cannot be stored with; widen it to 8 bits.
            if header.colorType == 0 && depth < 8 {
                let scale = UInt16(255 / Int(opaque))
                return PNGImage(width: width, height: height, color: .grayAlpha, bitDepth: 8, samples: withAlpha.map { $0 * scale })
            }
            return PNGImage(width: width, height: height, color: header.colorType == 0 ? .grayAlpha : .rgba,
                            bitDepth: depth, samples: withAlpha)
        default:
            let color: PNGImage.Color = switch header.colorType {
            case 0: .gray
            case 2: .rgb
            case 4: .grayAlpha
            default: .rgba
            }
            return PNGImage(width: width, height: height, color: color, bitDepth: depth, samples: samples)
        }
    }

    /// PNG's Paeth predictor: whichever of left, up and upper-left is closest to left + up − upper-left.
    static func paethPredictor(_ left: UInt8, _ up: UInt8, _ upperLeft: UInt8) -> UInt8 {
        let estimate = Int(left) + Int(up) - Int(upperLeft)
        let (toLeft, toUp, toUpperLeft) = (abs(estimate - Int(left)), abs(estimate - Int(up)), abs(estimate - Int(upperLeft)))
        if toLeft <= toUp && toLeft <= toUpperLeft { return left }
        return toUp <= toUpperLeft ? up : upperLeft
    }

    // MARK: Encoding

    /// A non-interlaced PNG of `image`. Each row gets the filter with the smallest sum of absolute
    /// filtered bytes (the usual heuristic, and what keeps smooth MRI slices small).
    public static func encode(_ image: PNGImage) throws -> [UInt8] {
        let header = PNGHeader(width: image.width, height: image.height, bitDepth: image.bitDepth,
                            colorType: image.color.code, interlaced: false)
        let rowBytes = header.rowBytes(image.width)
        let bytesPerPixel = max(1, image.color.channels * image.bitDepth / 8)
        let samplesPerRow = image.width * image.color.channels
        var filtered: [UInt8] = []
        filtered.reserveCapacity(image.height * (rowBytes + 1))
        var previous = [UInt8](repeating: 0, count: rowBytes)
        for y in 0..<image.height {
            let row = packedRow(image.samples[y * samplesPerRow ..< (y + 1) * samplesPerRow], bitDepth: image.bitDepth, rowBytes: rowBytes)
            let candidates = (0...4).map { filterRow(row, previous: previous, type: UInt8($0), bytesPerPixel: bytesPerPixel) }
            let cost = { (bytes: [UInt8]) in bytes.reduce(0) { $0 + Int(Int8(bitPattern: $1).magnitude) } }
            let best = candidates.indices.min { cost(candidates[$0]) < cost(candidates[$1]) } ?? 0
            filtered.append(UInt8(best))
            filtered += candidates[best]
            previous = row
        }
        var ihdr = ByteWriter(order: .big)
        ihdr.append(UInt32(image.width))
        ihdr.append(UInt32(image.height))
        ihdr.append(bytes: [UInt8(image.bitDepth), image.color.code, 0, 0, 0])
        return signature + chunk("IHDR", ihdr.bytes) + chunk("IDAT", try Zlib.compress(filtered, format: .zlib)) + chunk("IEND", [])
    }

    private static func packedRow(_ samples: ArraySlice<UInt16>, bitDepth: Int, rowBytes: Int) -> [UInt8] {
        switch bitDepth {
        case 16: return samples.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
        case 8: return samples.map { UInt8($0) }
        default:
            var row = [UInt8](repeating: 0, count: rowBytes)
            let perByte = 8 / bitDepth
            for (index, sample) in samples.enumerated() {
                row[index / perByte] |= UInt8(sample) << (8 - bitDepth * (index % perByte + 1))
            }
            return row
        }
    }

    private static func filterRow(_ row: [UInt8], previous: [UInt8], type: UInt8, bytesPerPixel: Int) -> [UInt8] {
        row.indices.map { i in
            let left = i >= bytesPerPixel ? row[i - bytesPerPixel] : 0
            let upperLeft = i >= bytesPerPixel ? previous[i - bytesPerPixel] : 0
            switch type {
            case 0: return row[i]
            case 1: return row[i] &- left
            case 2: return row[i] &- previous[i]
            case 3: return row[i] &- UInt8((Int(left) + Int(previous[i])) / 2)
            default: return row[i] &- paethPredictor(left, previous[i], upperLeft)
            }
        }
    }

    private static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(order: .big, capacity: data.count + 12)
        writer.append(UInt32(data.count))
        let body = Array(type.utf8) + data
        writer.append(bytes: body)
        writer.append(Zlib.crc32(body))
        return writer.bytes
    }
}

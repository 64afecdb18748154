// Image layers on [N, C, H, W] tensors, with PyTorch's weight layouts.
//
//   conv2d(x, weight: w, bias: b, stride: 1, padding: 1) -> Tensor   // w [Cout, Cin, kh, kw], b [Cout]
//   conv2d(x, weight: w, bias: b, stride: 2, padding: Padding(top: 0, left: 0, bottom: 1, right: 1))
//   upsampleNearest2x(x) -> Tensor                                    // [N, C, H, W] → [N, C, 2H, 2W]
//
// Where the CPU has AVX-512, a stride-1 convolution runs `ck_convolve_rows` of CKernels on blocks of output
// rows: by Winograd's F(2×2, 3×3) for a 3×3 one with padding 1 on images at least 32 wide and with at least
// 8 output channels (on 20×20 images, or with one output channel, it measured slower), the direct sum for
// the others. Otherwise, and for strided ones, it is one GEMM per block of output rows: weight
// [Cout, Cin·kh·kw] times the block's im2col matrix [Cin·kh·kw, rows·Wo]; a 1×1, stride-1, unpadded one
// multiplies the input itself.
import CKernels

/// Zero padding on each side of the image. An integer literal pads all four sides alike; the Taming
/// downsampler's `F.pad(x, (0, 1, 0, 1))` is `Padding(top: 0, left: 0, bottom: 1, right: 1)`.
public struct Padding: Sendable, Equatable, ExpressibleByIntegerLiteral {
    public var top, left, bottom, right: Int

    public init(top: Int, left: Int, bottom: Int, right: Int) {
        (self.top, self.left, self.bottom, self.right) = (top, left, bottom, right)
    }

    public init(integerLiteral all: Int) {
        self.init(top: all, left: all, bottom: all, right: all)
    }
}

/// A 2-D cross-correlation as torch.nn.Conv2d (no dilation, no groups): x [N, Cin, H, W],
/// weight [Cout, Cin, kh, kw], bias [Cout] or nil → [N, Cout, Ho, Wo] with
/// Ho = (H + top + bottom − kh) / stride + 1 and Wo likewise.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1,
                   padding: Padding = 0) -> Tensor {
    precondition(x.rank == 4, "conv2d: input must be [N, C, H, W], got \(x.shape)")
    precondition(weight.rank == 4, "conv2d: weight must be [Cout, Cin, kh, kw], got \(weight.shape)")
    let (batch, inChannels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (outChannels, kernelHeight, kernelWidth) = (weight.shape[0], weight.shape[2], weight.shape[3])
    precondition(weight.shape[1] == inChannels,
                "conv2d: weight \(weight.shape) expects \(weight.shape[1]) input channels, input \(x.shape) has \(inChannels)")
    if let bias {
        precondition(bias.shape == [outChannels], "conv2d: bias must be [\(outChannels)], got \(bias.shape)")
    }
    precondition(stride >= 1, "conv2d: stride must be at least 1, got \(stride)")
    precondition(min(padding.top, padding.left, padding.bottom, padding.right) >= 0,
                "conv2d: negative padding \(padding)")
    let paddedHeight = height + padding.top + padding.bottom
    let paddedWidth = width + padding.left + padding.right
    precondition(kernelHeight >= 1 && kernelWidth >= 1 && kernelHeight <= paddedHeight && kernelWidth <= paddedWidth,
                "conv2d: kernel \(kernelHeight)×\(kernelWidth) does not fit the padded \(paddedHeight)×\(paddedWidth) input")
    let outHeight = (paddedHeight - kernelHeight) / stride + 1
    let outWidth = (paddedWidth - kernelWidth) / stride + 1
    let geometry = ConvolutionGeometry(
        channels: inChannels, height: height, width: width, kernelHeight: kernelHeight, kernelWidth: kernelWidth,
        stride: stride, padding: padding, outHeight: outHeight, outWidth: outWidth)

    let patchSize = inChannels * kernelHeight * kernelWidth
    let outPlane = outHeight * outWidth
    let multipliesInput = kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == 0
    if stride == 1 && !multipliesInput && patchSize > 0 && ck_has_direct_convolution() != 0 {
        let winograd = kernelHeight == 3 && kernelWidth == 3 && padding == 1 && width >= 32 && outChannels >= 8
        return convolutionInRowBlocks(x, weight: weight, bias: bias, padding: padding, outHeight: outHeight,
                                      method: winograd ? CK_WINOGRAD : CK_DIRECT)
    }
    // Blocks of output rows whose im2col matrix stays within a few MB (cache-sized GEMM operands),
    // and enough blocks to give every thread work when the batch is small.
    var rowsPerBlock = max(1, min(outHeight, (1 << 20) / max(1, patchSize * outWidth)))
    let blocksPerImageWanted = (Threads.count + batch - 1) / max(batch, 1)
    rowsPerBlock = min(rowsPerBlock, max(1, outHeight / blocksPerImageWanted))
    if multipliesInput { rowsPerBlock = outHeight }
    let blocksPerImage = (outHeight + rowsPerBlock - 1) / rowsPerBlock

    return Tensor(shape: [batch, outChannels, outHeight, outWidth]) { y in
        guard y.count > 0 else { return }
        x.scalars.withUnsafeBufferPointer { x in
            weight.scalars.withUnsafeBufferPointer { w in
                parallelRanges(batch * blocksPerImage) { blocks in
                    let columns = multipliesInput ? nil
                        : UnsafeMutablePointer<Float>.allocate(capacity: patchSize * rowsPerBlock * outWidth)
                    defer { columns?.deallocate() }
                    for block in blocks {
                        let (image, firstRow) = (block / blocksPerImage, block % blocksPerImage * rowsPerBlock)
                        let rows = min(rowsPerBlock, outHeight - firstRow)
                        let input = x.baseAddress! + image * inChannels * height * width
                        let output = y.baseAddress! + image * outChannels * outPlane + firstRow * outWidth
                        for channel in 0..<outChannels {
                            let line = UnsafeMutableBufferPointer(start: output + channel * outPlane, count: rows * outWidth)
                            line.update(repeating: bias?.scalars[channel] ?? 0)
                        }
                        guard patchSize > 0 else { continue }
                        if let columns {
                            geometry.im2col(input, firstRow: firstRow, rows: rows, into: columns)
                        }
                        gemm(m: outChannels, n: rows * outWidth, k: patchSize,
                             a: w.baseAddress!, lda: patchSize, b: columns.map { UnsafePointer($0) } ?? input, ldb: rows * outWidth,
                             beta: 1, c: output, ldc: outPlane)
                    }
                }
            }
        }
    }
}

/// A stride-1 convolution by `ck_convolve_rows` (no im2col matrix, no GEMM), in blocks of output rows whose
/// scratch memory stays within about 1 MB (a Zen 4 core's L2; smaller bands measured slower on the 20×20
/// layers, where a short band leaves the 48-position tiles half empty), in parallel over images and blocks.
private func convolutionInRowBlocks(_ x: Tensor, weight: Tensor, bias: Tensor?, padding: Padding, outHeight: Int,
                                    method: ck_convolution_method) -> Tensor {
    let (batch, inChannels, height, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (outChannels, kernelHeight, kernelWidth) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let paddedWidth = width + padding.left + padding.right
    let outWidth = paddedWidth - kernelWidth + 1
    return Tensor(shape: [batch, outChannels, outHeight, outWidth]) { y in
        guard y.count > 0 else { return }
        x.scalars.withUnsafeBufferPointer { x in
            weight.scalars.withUnsafeBufferPointer { w in
                withOptionalPointer(bias) { bias in
                    let problem = ck_convolution(
                        in_channels: inChannels, out_channels: outChannels, height: height, width: width,
                        kernel_height: kernelHeight, kernel_width: kernelWidth, pad_top: padding.top, pad_left: padding.left,
                        pad_bottom: padding.bottom, pad_right: padding.right, weight: w.baseAddress!, bias: bias,
                        method: method)
                    withUnsafePointer(to: problem) { convolution in
                        let rowMultiple = method == CK_WINOGRAD ? 2 : 1   // Winograd's tiles are two rows high
                        // The most rows whose scratch fits the budget, then blocks of equal height, as many per
                        // image as the threads need when the batch is small.
                        var mostRows = min(outHeight, rowMultiple)
                        while mostRows < outHeight && ck_convolution_scratch_count(convolution, mostRows + rowMultiple) <= 1 << 18 {
                            mostRows += rowMultiple
                        }
                        let blocksPerImageWanted = max(1, min(outHeight, (Threads.count + batch - 1) / max(batch, 1)))
                        let blockCount = ceilDivide(ceilDivide(outHeight, mostRows), blocksPerImageWanted) * blocksPerImageWanted
                        let rowsPerBlock = ceilDivide(ceilDivide(outHeight, blockCount), rowMultiple) * rowMultiple
                        let blocksPerImage = ceilDivide(outHeight, rowsPerBlock)
                        // The direct kernel's tap offsets into the band are 32-bit.
                        precondition(inChannels * (rowsPerBlock + kernelHeight - 1) * paddedWidth < Int(Int32.max),
                                     "conv2d: a band of \(inChannels) channels × \(paddedWidth) columns is too large")
                        let packed = UnsafeMutablePointer<Float>.allocate(capacity: ck_convolution_packed_count(convolution))
                        defer { packed.deallocate() }
                        ck_pack_convolution(convolution, packed)
                        parallelRanges(batch * blocksPerImage) { blocks in
                            let scratchCount = ck_convolution_scratch_count(convolution, rowsPerBlock)
                            let memory = UnsafeMutableRawPointer.allocate(byteCount: scratchCount * 4, alignment: 64)
                            defer { memory.deallocate() }
                            let scratch = memory.bindMemory(to: Float.self, capacity: scratchCount)
                            for block in blocks {
                                let (image, firstRow) = (block / blocksPerImage, block % blocksPerImage * rowsPerBlock)
                                ck_convolve_rows(convolution, packed, x.baseAddress! + image * inChannels * height * width, firstRow,
                                                 min(rowsPerBlock, outHeight - firstRow),
                                                 y.baseAddress! + image * outChannels * outHeight * outWidth, scratch)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Where each output pixel of a convolution reads its input.
private struct ConvolutionGeometry {
    let channels, height, width, kernelHeight, kernelWidth, stride: Int
    let padding: Padding
    let outHeight, outWidth: Int

    /// Writes the im2col matrix of output rows firstRow..<firstRow+rows: row (c, ky, kx) holds, for every
    /// output pixel (oy, ox) of the block, input[c, oy·stride − top + ky, ox·stride − left + kx] or 0 outside.
    func im2col(_ input: UnsafePointer<Float>, firstRow: Int, rows: Int, into columns: UnsafeMutablePointer<Float>) {
        var out = columns
        for channel in 0..<channels {
            let plane = input + channel * height * width
            for ky in 0..<kernelHeight {
                for kx in 0..<kernelWidth {
                    // Output columns whose input column ox·stride − left + kx lies inside 0..<width.
                    let firstInside = max(0, ceilDivide(padding.left - kx, stride))
                    let endInside = min(outWidth, max(0, ceilDivide(width + padding.left - kx, stride)))
                    for oy in firstRow ..< firstRow + rows {
                        let iy = oy * stride - padding.top + ky
                        if iy < 0 || iy >= height || firstInside >= endInside {
                            out.update(repeating: 0, count: outWidth)
                        } else {
                            out.update(repeating: 0, count: firstInside)
                            let source = plane + iy * width - padding.left + kx
                            if stride == 1 {
                                (out + firstInside).update(from: source + firstInside, count: endInside - firstInside)
                            } else {
                                for ox in firstInside..<endInside { out[ox] = source[ox * stride] }
                            }
                            (out + endInside).update(repeating: 0, count: outWidth - endInside)
                        }
                        out += outWidth
                    }
                }
            }
        }
    }
}

/// ⌈a / b⌉ for b > 0 and any sign of a.
private func ceilDivide(_ a: Int, _ b: Int) -> Int {
    a >= 0 ? (a + b - 1) / b : -((-a) / b)
}

/// Nearest-neighbour upsampling by 2 in both directions, as F.interpolate(scale_factor=2.0, mode="nearest").
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "upsampleNearest2x: input must be [N, C, H, W], got \(x.shape)")
    let (planes, height, width) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    return Tensor(shape: [x.shape[0], x.shape[1], 2 * height, 2 * width]) { y in
        x.scalars.withUnsafeBufferPointer { x in
            parallelRanges(planes * height) { rows in
                for row in rows {
                    let source = x.baseAddress! + row * width
                    let target = y.baseAddress! + 4 * row * width
                    // Each value twice in a row: one 64-bit store of its bits in both halves.
                    let pairs = UnsafeMutableRawPointer(target).bindMemory(to: UInt64.self, capacity: width)
                    for column in 0..<width {
                        let bits = UInt64(source[column].bitPattern)
                        pairs[column] = bits | bits << 32
                    }
                    (target + 2 * width).update(from: target, count: 2 * width)
                }
            }
        }
    }
}

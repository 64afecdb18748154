import Kernels

/// Where a token is drawn: job `job`'s image `image`, restoration `restoration`, detect-and-resample
/// step `step` (0 for the AR baseline's single raster pass), token `position` (row-major in the grid).
public struct DrawSite: Sendable, Hashable, CustomStringConvertible {
    public let job: Int
    public let image: Int
    public let restoration: Int
    public let step: Int
    public let position: Int

    public init(job: Int, image: Int, restoration: Int, step: Int, position: Int) {
        (self.job, self.image, self.restoration, self.step, self.position) = (job, image, restoration, step, position)
    }

    public var description: String {
        "job \(job), image \(image), restoration \(restoration), step \(step), position \(position)"
    }
}

/// The source of every resampled token. The pipeline asks only where a token is actually replaced,
/// and for each restoration in order of step, then position.
public protocol TokenSampler {
    /// A token id in 0..<logits.count for the site, drawn from softmax(logits) at temperature 1.
    mutating func draw(at site: DrawSite, logits: ArraySlice<Float>) throws -> Int
}

/// Seeded draws. Restoration r of an image draws from its own xoshiro256** stream, seeded with the
/// r-th output of xoshiro256**(job seed); so an image's result depends only on the image, its
/// parameters and the seed — not on the other images or jobs it is batched with.
public struct SeededSampler: TokenSampler {
    private struct Stream: Hashable {
        let job, image, restoration: Int
    }

    private let seeds: [UInt64]
    private var generators: [Stream: Xoshiro256StarStar] = [:]

    /// `seeds[j]` is job j's seed.
    public init(seeds: [UInt64]) {
        self.seeds = seeds
    }

    public mutating func draw(at site: DrawSite, logits: ArraySlice<Float>) throws -> Int {
        guard seeds.indices.contains(site.job) else {
            throw InferenceError("SeededSampler has seeds for \(seeds.count) jobs, asked for job \(site.job)")
        }
        let stream = Stream(job: site.job, image: site.image, restoration: site.restoration)
        var generator = generators[stream] ?? Xoshiro256StarStar(seed: Self.seed(of: site.restoration, jobSeed: seeds[site.job]))
        defer { generators[stream] = generator }
        return try sampleCategorical(logits: logits, using: &generator)
    }

    static func seed(of restoration: Int, jobSeed: UInt64) -> UInt64 {
        var generator = Xoshiro256StarStar(seed: jobSeed)
        for _ in 0..<restoration { _ = generator.next() }
        return generator.next()
    }
}

/// Draws recorded elsewhere (e.g. by the PyTorch reference), looked up by site, so that a run can be
/// compared exactly with a run of another engine whose random generator cannot be reproduced.
public struct ReplaySampler: TokenSampler {
    private let recorded: (DrawSite) -> Int?

    public init(_ recorded: @escaping (DrawSite) -> Int?) {
        self.recorded = recorded
    }

    public func draw(at site: DrawSite, logits: ArraySlice<Float>) throws -> Int {
        guard let token = recorded(site) else { throw InferenceError("replay diverged: no recorded draw at \(site)") }
        guard (0..<logits.count).contains(token) else {
            throw InferenceError("replay: recorded draw \(token) at \(site) is not among the \(logits.count) codes")
        }
        return token
    }
}

// The body of every kernel, included by CKernels.c once per instruction set with KERNEL(name) giving
// that copy's names. Written with 16-float vectors (clang's vector extension), which the compiler maps
// to one AVX-512 register, two AVX2 ones or four SSE2 ones.

static inline v16 KERNEL(load)(const float *p) {
    v16 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static inline void KERNEL(store)(float *p, v16 v) { __builtin_memcpy(p, &v, sizeof v); }

/// The first `count` (< 16) floats at p, the other lanes `fill`.
static inline v16 KERNEL(load_partial)(const float *p, ptrdiff_t count, float fill) {
    v16 v = SPLAT(fill);
    for (ptrdiff_t i = 0; i < count; i++) v[i] = p[i];
    return v;
}

static inline void KERNEL(store_partial)(float *p, v16 v, ptrdiff_t count) {
    for (ptrdiff_t i = 0; i < count; i++) p[i] = v[i];
}

static inline float KERNEL(sum_lanes)(v16 v) {
    float sum = 0;
    for (int i = 0; i < 16; i++) sum += v[i];
    return sum;
}

static inline float KERNEL(max_lanes)(v16 v) {
    float maximum = v[0];
    for (int i = 1; i < 16; i++) maximum = v[i] > maximum ? v[i] : maximum;
    return maximum;
}

/// e^x to within about 2 ulp: e^x = 2^n · e^r with n = round(x·log₂e) and r = x − n·ln 2 in
/// [−ln2/2, ln2/2] (ln 2 split into a part exact in float and the rest, so r keeps its precision), e^r
/// by its Taylor series to r⁷ (remainder below 6·10⁻⁹ there), 2^n built in the exponent bits. Below
/// −87.3 (out of the normal range), −∞ included, it gives 0; above 88.3, e^88.3.
static inline v16 KERNEL(exp)(v16 x) {
    const float lowest = -87.3f, highest = 88.3f;
    v16 clamped = __builtin_elementwise_min(__builtin_elementwise_max(x, SPLAT(lowest)), SPLAT(highest));
    // Adding 1.5·2²³ rounds to an integer (ties to even) and leaves it in the low bits of the sum's pattern.
    const float shifter = 12582912.0f;
    v16 shifted = clamped * 1.44269504f + shifter;
    v16 n = shifted - shifter;
    v16 r = (clamped - n * 0.693359375f) - n * -2.1219444e-4f;
    v16 p = r * (1.0f / 5040) + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    v16i exponent = ((v16i)shifted - 0x4B400000 + 127) << 23;
    v16i below = x < lowest;  // all ones where true
    return (v16)((v16i)(p * (v16)exponent) & ~below);
}

/// erf(x) by Abramowitz and Stegun 7.1.26, 1 − t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·e^(−x²) with
/// t = 1/(1 + p·|x|), odd in x: within 1.5·10⁻⁷ of erf, within 5·10⁻⁷ in float.
static inline v16 KERNEL(erf)(v16 x) {
    v16 a = __builtin_elementwise_abs(x);
    v16 t = 1.0f / (1.0f + 0.3275911f * a);
    v16 p = t * 1.061405429f + -1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t + -0.284496736f;
    p = p * t + 0.254829592f;
    v16 magnitude = 1.0f - p * t * KERNEL(exp)(-a * a);
    return __builtin_elementwise_copysign(magnitude, x);
}

static inline v16 KERNEL(gelu)(v16 x) { return 0.5f * x * (1.0f + KERNEL(erf)(x * 0.70710678f)); }

static inline v16 KERNEL(sigmoid)(v16 x) { return 1.0f / (1.0f + KERNEL(exp)(-x)); }

static inline v16 KERNEL(activate)(v16 x, ck_activation activation) {
    switch (activation) {
    case CK_GELU: return KERNEL(gelu)(x);
    case CK_SILU: return x * KERNEL(sigmoid)(x);
    default: return x;
    }
}

float KERNEL(multiply_add_loop)(ptrdiff_t iterations, float seed) {
    v16 chains[MULTIPLY_ADD_CHAINS], factor = SPLAT(0.999999f);
    for (int c = 0; c < MULTIPLY_ADD_CHAINS; c++) chains[c] = SPLAT(seed + (float)c);
    for (ptrdiff_t i = 0; i < iterations; i++)
        for (int c = 0; c < MULTIPLY_ADD_CHAINS; c++) chains[c] = chains[c] * factor + factor;
    v16 sum = SPLAT(0);
    for (int c = 0; c < MULTIPLY_ADD_CHAINS; c++) sum += chains[c];
    return KERNEL(sum_lanes)(sum);
}

double KERNEL(multiply_add_flops)(ptrdiff_t iterations) { return (double)iterations * MULTIPLY_ADD_CHAINS * 16 * 2; }

/// out[i] = e^(row[i] − max) for i < count (out may be row); returns their sum.
static inline float KERNEL(exponentiate_row)(const float *row, ptrdiff_t count, float *out) {
    ptrdiff_t whole = count / 16 * 16, rest = count - whole;
    v16 maxima = SPLAT(-INFINITY);
    for (ptrdiff_t i = 0; i < whole; i += 16) maxima = __builtin_elementwise_max(maxima, KERNEL(load)(row + i));
    if (rest) maxima = __builtin_elementwise_max(maxima, KERNEL(load_partial)(row + whole, rest, -INFINITY));
    float maximum = KERNEL(max_lanes)(maxima);
    v16 sums = SPLAT(0);
    for (ptrdiff_t i = 0; i < whole; i += 16) {
        v16 e = KERNEL(exp)(KERNEL(load)(row + i) - maximum);
        KERNEL(store)(out + i, e);
        sums += e;
    }
    if (rest) {
        v16 e = KERNEL(exp)(KERNEL(load_partial)(row + whole, rest, -INFINITY) - maximum);
        KERNEL(store_partial)(out + whole, e, rest);
        sums += e;
    }
    return KERNEL(sum_lanes)(sums);
}

void KERNEL(softmax_row)(const float *row, ptrdiff_t count, float *out) {
    float scale = 1.0f / KERNEL(exponentiate_row)(row, count, out);
    ptrdiff_t whole = count / 16 * 16;
    for (ptrdiff_t i = 0; i < whole; i += 16) KERNEL(store)(out + i, KERNEL(load)(out + i) * scale);
    for (ptrdiff_t i = whole; i < count; i++) out[i] *= scale;
}

// y = f(x) over count floats, whole vectors then one partial one.
#define MAP_VECTORS(f)                                                                         \
    ptrdiff_t whole = count / 16 * 16;                                                         \
    for (ptrdiff_t i = 0; i < whole; i += 16) KERNEL(store)(y + i, f(KERNEL(load)(x + i)));    \
    if (count > whole) KERNEL(store_partial)(y + whole, f(KERNEL(load_partial)(x + whole, count - whole, 0)), count - whole);

void KERNEL(sigmoid_map)(const float *x, float *y, ptrdiff_t count) { MAP_VECTORS(KERNEL(sigmoid)) }

void KERNEL(scale_shift)(const float *x, float *y, ptrdiff_t count, float scale, float shift, ck_activation activation) {
#define SCALE_SHIFT(v) KERNEL(activate)((v) * scale + shift, activation)
    MAP_VECTORS(SCALE_SHIFT)
#undef SCALE_SHIFT
}

#undef MAP_VECTORS

void KERNEL(moments)(const float *x, ptrdiff_t count, double *mean, double *variance) {
    // Float lanes over chunks of 256 values, each chunk's lanes then added in double: a group of
    // 100 000 values loses nothing that matters, at the speed of float vectors.
    double sum = 0, squares = 0;
    for (ptrdiff_t start = 0; start < count; start += 256) {
        ptrdiff_t end = start + 256 < count ? start + 256 : count, i = start;
        v16 lanes = SPLAT(0);
        for (; i + 16 <= end; i += 16) lanes += KERNEL(load)(x + i);
        if (i < end) lanes += KERNEL(load_partial)(x + i, end - i, 0);
        sum += KERNEL(sum_lanes)(lanes);
    }
    float center = (float)(sum / (double)count);
    for (ptrdiff_t start = 0; start < count; start += 256) {
        ptrdiff_t end = start + 256 < count ? start + 256 : count, i = start;
        v16 lanes = SPLAT(0);
        for (; i + 16 <= end; i += 16) {
            v16 deviation = KERNEL(load)(x + i) - center;
            lanes += deviation * deviation;
        }
        if (i < end) {
            // Lanes past the end load `center`, so they add nothing.
            v16 deviation = KERNEL(load_partial)(x + i, end - i, center) - center;
            lanes += deviation * deviation;
        }
        squares += KERNEL(sum_lanes)(lanes);
    }
    *mean = sum / (double)count;
    *variance = squares / (double)count;
}

void KERNEL(fill_rows)(float *y, ptrdiff_t rows, ptrdiff_t width, const float *bias, const float *residual) {
    for (ptrdiff_t row = 0; row < rows; row++) {
        float *line = y + row * width;
        const float *added = residual ? residual + row * width : NULL;
        for (ptrdiff_t i = 0; i < width; i += 16) {
            ptrdiff_t lanes = width - i < 16 ? width - i : 16;
            v16 value = SPLAT(0);
            if (bias) value += lanes == 16 ? KERNEL(load)(bias + i) : KERNEL(load_partial)(bias + i, lanes, 0);
            if (added) value += lanes == 16 ? KERNEL(load)(added + i) : KERNEL(load_partial)(added + i, lanes, 0);
            if (lanes == 16) KERNEL(store)(line + i, value); else KERNEL(store_partial)(line + i, value, lanes);
        }
    }
}

void KERNEL(layer_norm)(const float *x, float *y, ptrdiff_t rows, ptrdiff_t dim, const float *weight,
                        const float *bias, float eps) {
    ptrdiff_t whole = dim / 16 * 16;
    for (ptrdiff_t row = 0; row < rows; row++) {
        const float *in = x + row * dim;
        float *out = y + row * dim;
        double rowMean, variance;
        KERNEL(moments)(in, dim, &rowMean, &variance);
        float mean = (float)rowMean, inverse = (float)(1.0 / sqrt(variance + eps));
        for (ptrdiff_t i = 0; i < whole; i += 16)
            KERNEL(store)(out + i, (KERNEL(load)(in + i) - mean) * inverse * KERNEL(load)(weight + i) + KERNEL(load)(bias + i));
        for (ptrdiff_t i = whole; i < dim; i++) out[i] = (in[i] - mean) * inverse * weight[i] + bias[i];
    }
}

/// tile[r] += Σ_k a[r·aStride + k] · b[k·bStride ..< k·bStride + 32] for r < ATTENTION_ROWS, k < count: the
/// register tile (16 accumulators) behind both of attention's products.
static inline __attribute__((always_inline)) void KERNEL(tile_product)(const float *a, ptrdiff_t aStride, const float *b,
                                                                      ptrdiff_t bStride, ptrdiff_t count,
                                                                      v16 tile[ATTENTION_ROWS][2]) {
    for (ptrdiff_t k = 0; k < count; k++) {
        v16 b0 = KERNEL(load)(b + k * bStride), b1 = KERNEL(load)(b + k * bStride + 16);
        for (int r = 0; r < ATTENTION_ROWS; r++) {
            float weight = a[r * aStride + k];
            tile[r][0] += weight * b0;
            tile[r][1] += weight * b1;
        }
    }
}

// Attention in blocks of ATTENTION_ROWS query rows: scores of the block against every key (a register
// tile of rows × 32 keys per pass over the features), softmax of each row left unnormalised, then the
// block's outputs (rows × 32 features per pass over the keys), divided by the row sums at the end.
void KERNEL(attention)(const ck_attention_problem *problem, float *scratch) {
    const ck_attention_problem p = *problem;
    const ptrdiff_t keyStride = ROUND_UP(p.tokens, 32), depth = ROUND_UP(p.depth, 32);
    float *keys = scratch;                               // [depth][keyStride]: k·scale, transposed
    float *values = keys + depth * keyStride;            // [keyStride][depth]
    float *queryBlock = values + keyStride * depth;      // [ATTENTION_ROWS][depth]
    float *scores = queryBlock + ATTENTION_ROWS * depth; // [ATTENTION_ROWS][keyStride]
    float *inverseSums = scores + ATTENTION_ROWS * keyStride;

    // Zero padding (tokens up to keyStride, features up to depth) contributes nothing to either product.
    memset(keys, 0, (size_t)(2 * keyStride * depth + ATTENTION_ROWS * depth) * sizeof(float));
    // Keys transposed 16 tokens at a time, so that both the rows read and the rows written stay in L1.
    for (ptrdiff_t t0 = 0; t0 < p.tokens; t0 += 16) {
        ptrdiff_t t1 = t0 + 16 < p.tokens ? t0 + 16 : p.tokens;
        for (ptrdiff_t f = 0; f < p.depth; f++)
            for (ptrdiff_t t = t0; t < t1; t++) keys[f * keyStride + t] = p.k[t * p.token_stride + f * p.feature_stride] * p.scale;
    }
    for (ptrdiff_t t = 0; t < p.tokens; t++)
        for (ptrdiff_t f = 0; f < p.depth; f++) values[t * depth + f] = p.v[t * p.token_stride + f * p.feature_stride];

    const ptrdiff_t queries = p.query_tokens ? p.queries : p.tokens;
    for (ptrdiff_t first = 0; first < queries; first += ATTENTION_ROWS) {
        const ptrdiff_t rows = queries - first < ATTENTION_ROWS ? queries - first : ATTENTION_ROWS;
        ptrdiff_t tokenOf[ATTENTION_ROWS];   // the block's query rows as token indices
        for (ptrdiff_t r = 0; r < rows; r++) tokenOf[r] = p.query_tokens ? p.query_tokens[first + r] : first + r;
        for (ptrdiff_t r = 0; r < rows; r++)
            for (ptrdiff_t f = 0; f < p.depth; f++) queryBlock[r * depth + f] = p.q[tokenOf[r] * p.token_stride + f * p.feature_stride];
        if (rows < ATTENTION_ROWS) memset(queryBlock + rows * depth, 0, (size_t)((ATTENTION_ROWS - rows) * depth) * sizeof(float));
        // Causal rows see no key past the block's last row: those columns are neither computed nor read.
        ptrdiff_t seen = p.causal ? tokenOf[rows - 1] + 1 : p.tokens;
        ptrdiff_t columns = ROUND_UP(seen, 32);

        for (ptrdiff_t j = 0; j < columns; j += 32) {
            v16 tile[ATTENTION_ROWS][2] = {0};
            KERNEL(tile_product)(queryBlock, depth, keys + j, keyStride, depth, tile);
            for (int r = 0; r < ATTENTION_ROWS; r++) {
                KERNEL(store)(scores + r * keyStride + j, tile[r][0]);
                KERNEL(store)(scores + r * keyStride + j + 16, tile[r][1]);
            }
        }

        for (int r = 0; r < ATTENTION_ROWS; r++) {
            float *row = scores + r * keyStride;
            ptrdiff_t visible = !p.causal ? p.tokens : r < rows ? tokenOf[r] + 1 : 1;
            for (ptrdiff_t j = visible; j < columns; j++) row[j] = -INFINITY;
            inverseSums[r] = 1.0f / KERNEL(exponentiate_row)(row, columns, row);
        }

        for (ptrdiff_t f0 = 0; f0 < depth; f0 += 32) {
            v16 tile[ATTENTION_ROWS][2] = {0};
            KERNEL(tile_product)(scores, keyStride, values + f0, depth, columns, tile);
            float outputs[ATTENTION_ROWS][32];   // through memory, as in convolve_rows
            for (int r = 0; r < ATTENTION_ROWS; r++) {
                KERNEL(store)(outputs[r], tile[r][0] * inverseSums[r]);
                KERNEL(store)(outputs[r] + 16, tile[r][1] * inverseSums[r]);
            }
            for (int r = 0; r < rows; r++) {
                float *out = p.out + (first + r) * p.out_token_stride;
                for (int f = 0; f < 32 && f0 + f < p.depth; f++) out[(f0 + f) * p.out_feature_stride] = outputs[r][f];
            }
        }
    }
}

#if REGISTER_TILES
// Convolution in tiles of CONVOLUTION_CHANNELS output channels × 16·CONVOLUTION_VECTORS positions. The
// band of input rows the block reads is copied with its zero padding into rows of padded_width floats;
// then output (y, x) of the block is at position y·padded_width + x of that band, and tap (ky, kx) of
// every position is the band value ky·padded_width + kx further on. Positions with x ≥ out_width (under
// the padding columns) are computed and dropped: a vector runs across row ends without a branch.
void KERNEL(convolve_rows)(const ck_convolution *problem, const float *packed, const float *input, ptrdiff_t first_row,
                           ptrdiff_t rows, float *output, float *scratch) {
    enum { TILE = 16 * CONVOLUTION_VECTORS };
    const ck_convolution c = *problem;
    const ptrdiff_t depth = c.in_channels * c.kernel_height * c.kernel_width;
    const ptrdiff_t paddedWidth = c.width + c.pad_left + c.pad_right;
    const ptrdiff_t outHeight = c.height + c.pad_top + c.pad_bottom - c.kernel_height + 1;
    const ptrdiff_t outWidth = paddedWidth - c.kernel_width + 1;
    const ptrdiff_t bandHeight = rows + c.kernel_height - 1;
    const ptrdiff_t groups = ROUND_UP(c.out_channels, CONVOLUTION_CHANNELS) / CONVOLUTION_CHANNELS;
    int32_t *offsets = (int32_t *)scratch;               // [depth]: where tap k reads, from a position's own
    float *band = (float *)(offsets + depth);            // [in_channels][bandHeight][paddedWidth]

    for (ptrdiff_t channel = 0, k = 0; channel < c.in_channels; channel++)
        for (ptrdiff_t ky = 0; ky < c.kernel_height; ky++)
            for (ptrdiff_t kx = 0; kx < c.kernel_width; kx++)
                offsets[k++] = (int32_t)((channel * bandHeight + ky) * paddedWidth + kx);
    for (ptrdiff_t channel = 0; channel < c.in_channels; channel++)
        for (ptrdiff_t y = 0; y < bandHeight; y++) {
            float *row = band + (channel * bandHeight + y) * paddedWidth;
            ptrdiff_t source = first_row + y - c.pad_top;
            if (source < 0 || source >= c.height) {
                memset(row, 0, (size_t)paddedWidth * sizeof(float));
                continue;
            }
            memset(row, 0, (size_t)c.pad_left * sizeof(float));
            memcpy(row + c.pad_left, input + (channel * c.height + source) * c.width, (size_t)c.width * sizeof(float));
            memset(row + c.pad_left + c.width, 0, (size_t)c.pad_right * sizeof(float));
        }
    // The last tile's vectors read up to TILE − 1 floats past the band.
    memset(band + c.in_channels * bandHeight * paddedWidth, 0, TILE * sizeof(float));

    const ptrdiff_t end = (rows - 1) * paddedWidth + outWidth;
    // Channel groups outside, positions inside: one group's weights stay in L2 while the band streams by
    // (all the weights of a 512-channel layer are 9 MB).
    for (ptrdiff_t g = 0; g < groups; g++)
    for (ptrdiff_t position = 0; position < end; position += TILE) {
        // The tile's positions as runs along output rows: from tile lane `lane`, `count` values go to
        // offset `target` of each output plane (the lanes under the padding columns in between are dropped).
        struct { ptrdiff_t lane, count, target; } runs[TILE];
        int runCount = 0;
        for (ptrdiff_t lane = 0, y = position / paddedWidth, x = position % paddedWidth; lane < TILE && position + lane < end;
             y++, x = 0) {
            ptrdiff_t kept = outWidth - x, available = end - position - lane;
            if (kept > TILE - lane) kept = TILE - lane;
            if (kept > available) kept = available;
            if (kept > 0) runs[runCount++] = (typeof(runs[0])){lane, kept, (first_row + y) * outWidth + x};
            lane += paddedWidth - x;
        }
        {
            v16 tile[CONVOLUTION_CHANNELS][CONVOLUTION_VECTORS];
            for (int r = 0; r < CONVOLUTION_CHANNELS; r++) {
                ptrdiff_t channel = g * CONVOLUTION_CHANNELS + r;
                float bias = c.bias && channel < c.out_channels ? c.bias[channel] : 0;
                for (int v = 0; v < CONVOLUTION_VECTORS; v++) tile[r][v] = SPLAT(bias);
            }
            const float *w = packed + g * depth * CONVOLUTION_CHANNELS;
            const float *origin = band + position;
            for (ptrdiff_t k = 0; k < depth; k++, w += CONVOLUTION_CHANNELS) {
                v16 x[CONVOLUTION_VECTORS];
                for (int v = 0; v < CONVOLUTION_VECTORS; v++) x[v] = KERNEL(load)(origin + offsets[k] + 16 * v);
                for (int r = 0; r < CONVOLUTION_CHANNELS; r++)
                    for (int v = 0; v < CONVOLUTION_VECTORS; v++) tile[r][v] += w[r] * x[v];
            }
            // Through memory: a tile read at computed lanes would be kept there during the loop above.
            float values[CONVOLUTION_CHANNELS][TILE];
            for (int r = 0; r < CONVOLUTION_CHANNELS; r++)
                for (int v = 0; v < CONVOLUTION_VECTORS; v++) KERNEL(store)(values[r] + 16 * v, tile[r][v]);
            for (int r = 0; r < CONVOLUTION_CHANNELS && g * CONVOLUTION_CHANNELS + r < c.out_channels; r++) {
                float *plane = output + (g * CONVOLUTION_CHANNELS + r) * outHeight * outWidth;
                for (int run = 0; run < runCount; run++)
                    memcpy(plane + runs[run].target, values[r] + runs[run].lane, (size_t)runs[run].count * sizeof(float));
            }
        }
    }
}

// The packed Linear product in tiles of LINEAR_ROWS rows × LINEAR_PANEL output features (16 accumulators):
// per input feature k, two vectors of the panel's weights and one broadcast value of each row. Each tile
// sums x·w from zero over k in order, then adds bias + residual as one value, as OpenBLAS adds its sum
// to C = bias + residual, so the two paths round alike (identically for k = 128 in a side-by-side check).
static inline __attribute__((always_inline)) void KERNEL(linear_tile)(const int rows, const ck_linear *layer,
                                                                        const float *x, ptrdiff_t panel,
                                                                        const float *residual, float *y) {
    const ptrdiff_t in = layer->in_features, out = layer->out_features, first = panel * LINEAR_PANEL;
    const float *w = layer->packed + panel * in * LINEAR_PANEL;
    v16 sums[LINEAR_ROWS][2];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) sums[r][0] = sums[r][1] = SPLAT(0);
    for (ptrdiff_t k = 0; k < in; k++, w += LINEAR_PANEL) {
        v16 w0 = KERNEL(load)(w), w1 = KERNEL(load)(w + 16);
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) {
            // A scalar times a vector: one broadcast load (SPLAT's + 0 would cost a scalar add first).
            float value = x[r * in + k];
            sums[r][0] += value * w0;
            sums[r][1] += value * w1;
        }
    }
    for (int half = 0; half < 2; half++) {
        ptrdiff_t column = first + 16 * half, lanes = out - column < 16 ? out - column : 16;
        if (lanes <= 0) break;
        v16 bias = !layer->bias ? SPLAT(0)
                   : lanes == 16 ? KERNEL(load)(layer->bias + column) : KERNEL(load_partial)(layer->bias + column, lanes, 0);
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) {
            v16 added = bias;
            if (residual) {
                const float *line = residual + r * out + column;
                added += lanes == 16 ? KERNEL(load)(line) : KERNEL(load_partial)(line, lanes, 0);
            }
            v16 value = KERNEL(activate)(sums[r][half] + added, layer->activation);
            if (lanes == 16) KERNEL(store)(y + r * out + column, value); else KERNEL(store_partial)(y + r * out + column, value, lanes);
        }
    }
}

void KERNEL(linear_rows)(const ck_linear *layer, const float *x, ptrdiff_t rows, const float *residual, float *y) {
    const ptrdiff_t in = layer->in_features, out = layer->out_features;
    const ptrdiff_t panels = ROUND_UP(out, LINEAR_PANEL) / LINEAR_PANEL;
    // Row tiles outside, panels inside: a tile's rows stay in L1 while the panels (all of a 512×128
    // weight is 256 KB) come from L2.
    for (ptrdiff_t row = 0; row < rows; row += LINEAR_ROWS) {
        const float *tileX = x + row * in, *tileResidual = residual ? residual + row * out : NULL;
        float *tileY = y + row * out;
        const ptrdiff_t count = rows - row < LINEAR_ROWS ? rows - row : LINEAR_ROWS;
        for (ptrdiff_t panel = 0; panel < panels; panel++) {
            // A constant row count per call, so that each tile's accumulators are registers.
            switch (count) {
#define TILE_OF(n) case n: KERNEL(linear_tile)(n, layer, tileX, panel, tileResidual, tileY); break;
            TILE_OF(1) TILE_OF(2) TILE_OF(3) TILE_OF(4) TILE_OF(5) TILE_OF(6) TILE_OF(7)
            default: KERNEL(linear_tile)(LINEAR_ROWS, layer, tileX, panel, tileResidual, tileY);
#undef TILE_OF
            }
        }
    }
}

// A 3×3 convolution with padding 1 by Winograd's F(2×2, 3×3): each 2×2 block of outputs (a "tile") from
// the 4×4 input patch around it with 16 products per input and output channel where the direct sum
// takes 36 (docs/kernels.md). The patch d goes to V = Bᵀ·d·B and the weights g to U = G·g·Gᵀ (once per
// layer call, `ck_pack_convolution`); then for each of the 16 entries ξ, M_ξ = U_ξ·V_ξ is a product over the
// input channels, in the direct convolution's register tile with tiles in place of positions; the
// outputs are Aᵀ·M·A + bias. Every transform runs over 16 tiles of one tile row at once. The band of
// input rows is copied with its padding and its even and odd columns apart, so the four columns of
// 16 patches are four plain loads.
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]   Aᵀ = [1 1 1 0; 0 1 −1 −1]
static inline __attribute__((always_inline)) void KERNEL(input_transform)(v16 d[4], v16 t[4]) {
    t[0] = d[0] - d[2];
    t[1] = d[1] + d[2];
    t[2] = d[2] - d[1];
    t[3] = d[1] - d[3];
}

/// y[r][…] = Σ_k w[k][r]·x[k][…] for the CONVOLUTION_CHANNELS rows r and `vectors` vectors of tiles, from zero
/// with k in order; rows of x and y are `stride` floats apart.
static inline __attribute__((always_inline)) void KERNEL(winograd_product)(const int vectors, const float *w, ptrdiff_t depth,
                                                                             const float *x, ptrdiff_t stride, float *y) {
    v16 tile[CONVOLUTION_CHANNELS][CONVOLUTION_VECTORS];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < CONVOLUTION_CHANNELS; r++)
        _Pragma("clang loop unroll(full)") for (int q = 0; q < vectors; q++) tile[r][q] = SPLAT(0);
    for (ptrdiff_t k = 0; k < depth; k++, w += CONVOLUTION_CHANNELS, x += stride) {
        v16 values[CONVOLUTION_VECTORS];
        _Pragma("clang loop unroll(full)") for (int q = 0; q < vectors; q++) values[q] = KERNEL(load)(x + 16 * q);
        _Pragma("clang loop unroll(full)") for (int r = 0; r < CONVOLUTION_CHANNELS; r++)
            _Pragma("clang loop unroll(full)") for (int q = 0; q < vectors; q++) tile[r][q] += w[r] * values[q];
    }
    _Pragma("clang loop unroll(full)") for (int r = 0; r < CONVOLUTION_CHANNELS; r++)
        _Pragma("clang loop unroll(full)") for (int q = 0; q < vectors; q++) KERNEL(store)(y + r * stride + 16 * q, tile[r][q]);
}

void KERNEL(winograd_rows)(const ck_convolution *problem, const float *packed, const float *input, ptrdiff_t first_row,
                           ptrdiff_t rows, float *output, float *scratch) {
    enum { TILE = 16 * CONVOLUTION_VECTORS };
    const ck_convolution c = *problem;
    const winograd_block b = winograd_block_of(problem, rows);
    const ptrdiff_t outChannels = ROUND_UP(c.out_channels, CONVOLUTION_CHANNELS);
    const ptrdiff_t groups = outChannels / CONVOLUTION_CHANNELS;
    float *band = scratch;                                         // [in][band_rows][row_floats]
    float *v = band + b.band_count;                                // [16][in][stride]
    float *m = v + 16 * c.in_channels * b.stride;                  // [16][outChannels][stride]

    // Band row j is input row first_row − 1 + j; padded column p = x + 1 goes to evens[p/2] or odds[p/2],
    // evens from float 15 of the row and odds from float `odds`, so that the stores below are aligned
    // (scratch is 64-byte aligned; split stores measured 4–8 % of the layer).
    for (ptrdiff_t channel = 0; channel < c.in_channels; channel++)
        for (ptrdiff_t j = 0; j < b.band_rows; j++) {
            float *row = band + (channel * b.band_rows + j) * b.row_floats, *evens = row + 15, *odds = row + b.odds;
            ptrdiff_t source = first_row - 1 + j;
            if (source < 0 || source >= c.height) {
                memset(row, 0, (size_t)b.row_floats * sizeof(float));
                continue;
            }
            const float *line = input + (channel * c.height + source) * c.width;
            evens[0] = 0;
            ptrdiff_t x = 0;
            for (; x + 32 <= c.width; x += 32) {
                v16 a0 = KERNEL(load)(line + x), a1 = KERNEL(load)(line + x + 16);
                KERNEL(store)(odds + x / 2, __builtin_shufflevector(a0, a1, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
                KERNEL(store)(evens + x / 2 + 1, __builtin_shufflevector(a0, a1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
            }
            for (; x < c.width; x++) (x % 2 ? evens : odds)[(x + 1) / 2] = line[x];
            // The right padding, and the floats up to the next run that a tile row's last vector reads.
            ptrdiff_t evensWritten = c.width / 2 + 1, oddsWritten = (c.width + 1) / 2;
            memset(evens + evensWritten, 0, (size_t)(b.odds - 15 - evensWritten) * sizeof(float));
            memset(odds + oddsWritten, 0, (size_t)(b.row_floats - b.odds - oddsWritten) * sizeof(float));
        }
    // The last vectors of a row read up to 15 floats past its end.
    memset(band + b.band_count - 16, 0, 16 * sizeof(float));

    // V, 16 tiles at a time; a tile row's last vector runs into the next tile row, which overwrites it
    // later, or into the padding after the last one.
    for (ptrdiff_t channel = 0; channel < c.in_channels; channel++)
        for (ptrdiff_t ty = 0; ty < b.tile_rows; ty++)
            for (ptrdiff_t tx = 0; tx < b.tiles_x; tx += 16) {
                v16 columns[4][4];
                for (int r = 0; r < 4; r++) {
                    const float *row = band + (channel * b.band_rows + 2 * ty + r) * b.row_floats + tx;
                    const float *evens = row + 15, *odds = row + b.odds;
                    v16 d[4] = {KERNEL(load)(evens), KERNEL(load)(odds), KERNEL(load)(evens + 1), KERNEL(load)(odds + 1)};
                    KERNEL(input_transform)(d, columns[r]);
                }
                float *target = v + channel * b.stride + ty * b.tiles_x + tx;
                for (int j = 0; j < 4; j++) {
                    v16 d[4] = {columns[0][j], columns[1][j], columns[2][j], columns[3][j]}, t[4];
                    KERNEL(input_transform)(d, t);
                    for (int i = 0; i < 4; i++) KERNEL(store)(target + (i * 4 + j) * c.in_channels * b.stride, t[i]);
                }
            }
    // Zeros from there to the end of each row: the products read whole vectors past the last tile, whose
    // results are never stored (and no uninitialised, denormal or NaN values enter the sums).
    const ptrdiff_t written = b.tiles - b.tiles_x + ROUND_UP(b.tiles_x, 16);
    for (ptrdiff_t row = 0; row < 16 * c.in_channels; row++)
        memset(v + row * b.stride + written, 0, (size_t)(b.stride - written) * sizeof(float));

    // M_ξ = U_ξ·V_ξ in tiles of 8 output channels × 48 tiles (the last 16 or 32 where fewer are left).
    for (int xi = 0; xi < 16; xi++)
        for (ptrdiff_t g = 0; g < groups; g++) {
            const float *w = packed + (xi * groups + g) * c.in_channels * CONVOLUTION_CHANNELS;
            const float *x = v + xi * c.in_channels * b.stride;
            float *y = m + (xi * outChannels + g * CONVOLUTION_CHANNELS) * b.stride;
            for (ptrdiff_t t0 = 0; t0 < b.tiles; t0 += TILE) switch ((b.tiles - t0 + 15) / 16) {
                case 1: KERNEL(winograd_product)(1, w, c.in_channels, x + t0, b.stride, y + t0); break;
                case 2: KERNEL(winograd_product)(2, w, c.in_channels, x + t0, b.stride, y + t0); break;
                default: KERNEL(winograd_product)(CONVOLUTION_VECTORS, w, c.in_channels, x + t0, b.stride, y + t0);
            }
        }

    // Aᵀ·M·A + bias: 16 tiles give two output rows of 32 columns, even and odd columns interleaved.
    const ptrdiff_t outPlane = c.height * c.width;
    for (ptrdiff_t channel = 0; channel < c.out_channels; channel++) {
        const float bias = c.bias ? c.bias[channel] : 0;
        for (ptrdiff_t ty = 0; ty < b.tile_rows; ty++)
            for (ptrdiff_t tx = 0; tx < b.tiles_x; tx += 16) {
                const float *source = m + channel * b.stride + ty * b.tiles_x + tx;
                v16 s[4][4];
                for (int xi = 0; xi < 16; xi++) s[xi / 4][xi % 4] = KERNEL(load)(source + xi * outChannels * b.stride);
                v16 half[2][4];
                for (int j = 0; j < 4; j++) {
                    half[0][j] = s[0][j] + s[1][j] + s[2][j];
                    half[1][j] = s[1][j] - s[2][j] - s[3][j];
                }
                for (int i = 0; i < 2; i++) {
                    ptrdiff_t y = first_row + 2 * ty + i;
                    if (y >= first_row + rows) break;
                    v16 left = half[i][0] + half[i][1] + half[i][2] + bias;
                    v16 right = half[i][1] - half[i][2] - half[i][3] + bias;
                    v16 low = __builtin_shufflevector(left, right, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                    v16 high = __builtin_shufflevector(left, right, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                    float *line = output + channel * outPlane + y * c.width + 2 * tx;
                    ptrdiff_t columns = c.width - 2 * tx;
                    if (columns >= 32) {
                        KERNEL(store)(line, low);
                        KERNEL(store)(line + 16, high);
                    } else if (columns > 16) {
                        KERNEL(store)(line, low);
                        KERNEL(store_partial)(line + 16, high, columns - 16);
                    } else {
                        KERNEL(store_partial)(line, low, columns);
                    }
                }
            }
    }
}
#endif

// One copy of VectorKernels.h per x86-64 level, and the dispatch to the one this CPU runs.
#include "CKernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
#define SPLAT(x) ((v16){0} + (x))
#define ROUND_UP(n, m) (((n) + (m) - 1) / (m) * (m))
// Register tiles: attention 8 query rows × 32 columns (16 accumulators), convolution 8 output channels ×
// 3 vectors of positions (24), the packed Linear product 8 rows × 32 output features (16); AVX-512 has 32
// registers. 4 or 12 rows and 4×6 or 6×4 tiles measured no faster; 12 or 14 Linear rows neither.
enum { ATTENTION_ROWS = 8, CONVOLUTION_CHANNELS = 8, CONVOLUTION_VECTORS = 3, LINEAR_ROWS = 8, LINEAR_PANEL = 32 };

/// A block of output rows of the Winograd convolution in 2×2 tiles: `tiles` = tile_rows · tiles_x of
/// them, each of V's and M's rows `stride` floats (whole vectors, and room for the last vector store of a
/// tile row); the band of input rows [in][band_rows][row_floats], `half` even and as many odd padded
/// columns in each, with 16 floats more. Every row and block starts 64-byte aligned if scratch does.
typedef struct { ptrdiff_t tiles_x, tile_rows, tiles, stride, half, row_floats, odds, band_rows, band_count; } winograd_block;

static winograd_block winograd_block_of(const ck_convolution *c, ptrdiff_t rows) {
    winograd_block b;
    b.tiles_x = (c->width + 1) / 2;
    b.tile_rows = (rows + 1) / 2;
    b.tiles = b.tiles_x * b.tile_rows;
    b.stride = ROUND_UP(b.tiles, 16) + 16;
    b.half = b.tiles_x + 1;
    b.odds = 16 + ROUND_UP(b.half, 16);
    b.row_floats = b.odds + ROUND_UP(b.half, 16);
    b.band_rows = 2 * b.tile_rows + 2;
    b.band_count = c->in_channels * b.band_rows * b.row_floats + 16;
    return b;
}

// Passing 16-float vectors between functions without AVX-512 uses another calling convention; every
// such helper is inlined within its own copy, so the warning does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

// Independent chains enough to cover 2 pipes × 4 cycles of latency where the registers allow: a
// 16-float vector is 4 SSE registers (16 in all), 2 AVX2 ones (16), 1 AVX-512 one (32).
// The register tiles of the direct convolution and of the packed Linear product need AVX-512's 32
// registers: with AVX2 the convolution's spilled and ran at 47 GFLOP/s where im2col + OpenBLAS gives 79
// (conv2d 32→32 at 160², Zen 4 with avx2 selected), so only that copy has them and the others leave
// convolutions and Linear layers to OpenBLAS.
#define MULTIPLY_ADD_CHAINS 3
#define REGISTER_TILES 0
#define KERNEL(name) name##_sse2
#include "VectorKernels.h"
#undef KERNEL
#undef MULTIPLY_ADD_CHAINS
#undef REGISTER_TILES

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define MULTIPLY_ADD_CHAINS 6
#define REGISTER_TILES 0
#define KERNEL(name) name##_avx2
#include "VectorKernels.h"
#undef KERNEL
#undef MULTIPLY_ADD_CHAINS
#undef REGISTER_TILES
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma"))), apply_to = function)
#define MULTIPLY_ADD_CHAINS 12
#define REGISTER_TILES 1
#define KERNEL(name) name##_avx512
#include "VectorKernels.h"
#undef KERNEL
#undef MULTIPLY_ADD_CHAINS
#undef REGISTER_TILES
#pragma clang attribute pop
#endif

typedef struct {
    const char *name;
    int (*runs_here)(void);
    float (*multiply_add_loop)(ptrdiff_t, float);
    double (*multiply_add_flops)(ptrdiff_t);
    void (*softmax_row)(const float *, ptrdiff_t, float *);
    void (*sigmoid)(const float *, float *, ptrdiff_t);
    void (*fill_rows)(float *, ptrdiff_t, ptrdiff_t, const float *, const float *);
    void (*layer_norm)(const float *, float *, ptrdiff_t, ptrdiff_t, const float *, const float *, float);
    void (*attention)(const ck_attention_problem *, float *);
    void (*moments)(const float *, ptrdiff_t, double *, double *);
    void (*scale_shift)(const float *, float *, ptrdiff_t, float, float, ck_activation);
    void (*convolve_rows)(const ck_convolution *, const float *, const float *, ptrdiff_t, ptrdiff_t, float *, float *);
    void (*winograd_rows)(const ck_convolution *, const float *, const float *, ptrdiff_t, ptrdiff_t, float *, float *);
    void (*linear_rows)(const ck_linear *, const float *, ptrdiff_t, const float *, float *);
} kernel_set;

#define KERNEL_SET(suffix, label, convolve_rows, winograd_rows, linear_rows) \
    { label, runs_##suffix, multiply_add_loop_##suffix, multiply_add_flops_##suffix, \
      softmax_row_##suffix, sigmoid_map_##suffix, fill_rows_##suffix, \
      layer_norm_##suffix, attention_##suffix, moments_##suffix, scale_shift_##suffix, convolve_rows, winograd_rows, linear_rows }

// __builtin_cpu_supports also checks that the OS saves the wider registers (XSAVE state).
static int runs_sse2(void) { return 1; }
#if defined(__x86_64__)
static int runs_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
static int runs_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw");
}
#endif

/// Widest first.
static const kernel_set sets[] = {
#if defined(__x86_64__)
    KERNEL_SET(avx512, "avx512f", convolve_rows_avx512, winograd_rows_avx512, linear_rows_avx512),
    KERNEL_SET(avx2, "avx2", NULL, NULL, NULL),
#endif
    KERNEL_SET(sse2, "sse2", NULL, NULL, NULL),
};

static _Atomic(const kernel_set *) selected;

/// The set named by MIMOOD_VECTOR_KERNELS if this CPU runs it, else the widest it runs, unless
/// `ck_select_instruction_set` picked another.
static const kernel_set *chosen(void) {
    const kernel_set *set = atomic_load_explicit(&selected, memory_order_relaxed);
    if (set) return set;
    const char *wanted = getenv("MIMOOD_VECTOR_KERNELS");
    if (wanted && ck_select_instruction_set(wanted)) return atomic_load_explicit(&selected, memory_order_relaxed);
    for (set = sets; !set->runs_here(); set++) {}
    atomic_store_explicit(&selected, set, memory_order_relaxed);
    return set;
}

const char *ck_instruction_set(void) { return chosen()->name; }

int ck_select_instruction_set(const char *name) {
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (strcmp(sets[i].name, name) == 0 && sets[i].runs_here()) {
            atomic_store_explicit(&selected, &sets[i], memory_order_relaxed);
            return 1;
        }
    return 0;
}

float ck_multiply_add_loop(ptrdiff_t iterations, float seed) { return chosen()->multiply_add_loop(iterations, seed); }

double ck_multiply_add_flops(ptrdiff_t iterations) { return chosen()->multiply_add_flops(iterations); }

void ck_softmax_row(const float *row, ptrdiff_t count, float *out) { chosen()->softmax_row(row, count, out); }

void ck_sigmoid(const float *x, float *y, ptrdiff_t count) { chosen()->sigmoid(x, y, count); }

void ck_fill_rows(float *y, ptrdiff_t rows, ptrdiff_t width, const float *bias, const float *residual) {
    chosen()->fill_rows(y, rows, width, bias, residual);
}

void ck_layer_norm(const float *x, float *y, ptrdiff_t rows, ptrdiff_t dim, const float *weight, const float *bias,
                   float eps) {
    chosen()->layer_norm(x, y, rows, dim, weight, bias, eps);
}

size_t ck_attention_scratch_count(ptrdiff_t tokens, ptrdiff_t depth) {
    ptrdiff_t keys = ROUND_UP(tokens, 32), features = ROUND_UP(depth, 32);
    return (size_t)(2 * keys * features + ATTENTION_ROWS * features + ATTENTION_ROWS * keys + ATTENTION_ROWS);
}

void ck_attention(const ck_attention_problem *problem, float *scratch) { chosen()->attention(problem, scratch); }

void ck_moments(const float *x, ptrdiff_t count, double *mean, double *variance) {
    chosen()->moments(x, count, mean, variance);
}

void ck_scale_shift(const float *x, float *y, ptrdiff_t count, float scale, float shift, ck_activation activation) {
    chosen()->scale_shift(x, y, count, scale, shift, activation);
}

size_t ck_convolution_packed_count(const ck_convolution *c) {
    ptrdiff_t outputs = ROUND_UP(c->out_channels, CONVOLUTION_CHANNELS);
    return (size_t)(c->method == CK_WINOGRAD ? 16 * outputs * c->in_channels
                                             : outputs * c->in_channels * c->kernel_height * c->kernel_width);
}

/// A weight of `outputs` rows of `depth` values as [groups of `group` rows][depth][row in the group]: a
/// tile's weights for one input value are adjacent; rows past `outputs` are zero.
static void pack_row_groups(const float *weight, ptrdiff_t outputs, ptrdiff_t depth, ptrdiff_t group, float *packed) {
    ptrdiff_t groups = ROUND_UP(outputs, group) / group;
    for (ptrdiff_t g = 0; g < groups; g++)
        for (ptrdiff_t k = 0; k < depth; k++)
            for (ptrdiff_t r = 0; r < group; r++) {
                ptrdiff_t output = g * group + r;
                packed[(g * depth + k) * group + r] = output < outputs ? weight[output * depth + k] : 0;
            }
}

/// U = G·g·Gᵀ of every (output, input) channel pair, as [ξ][group of CONVOLUTION_CHANNELS outputs][input][output
/// in the group], outputs past out_channels zero.
static void pack_winograd(const ck_convolution *c, float *packed) {
    const ptrdiff_t groups = ROUND_UP(c->out_channels, CONVOLUTION_CHANNELS) / CONVOLUTION_CHANNELS;
    memset(packed, 0, ck_convolution_packed_count(c) * sizeof(float));
    for (ptrdiff_t out = 0; out < c->out_channels; out++)
        for (ptrdiff_t in = 0; in < c->in_channels; in++) {
            const float *g = c->weight + (out * c->in_channels + in) * 9;
            float rows[4][3];  // G·g
            for (int x = 0; x < 3; x++) {
                rows[0][x] = g[x];
                rows[1][x] = (g[x] + g[3 + x] + g[6 + x]) * 0.5f;
                rows[2][x] = (g[x] - g[3 + x] + g[6 + x]) * 0.5f;
                rows[3][x] = g[6 + x];
            }
            for (int i = 0; i < 4; i++) {
                float u[4] = {rows[i][0], (rows[i][0] + rows[i][1] + rows[i][2]) * 0.5f,
                              (rows[i][0] - rows[i][1] + rows[i][2]) * 0.5f, rows[i][2]};
                for (int j = 0; j < 4; j++) {
                    ptrdiff_t group = out / CONVOLUTION_CHANNELS, lane = out % CONVOLUTION_CHANNELS;
                    packed[(((i * 4 + j) * groups + group) * c->in_channels + in) * CONVOLUTION_CHANNELS + lane] = u[j];
                }
            }
        }
}

/// CK_DIRECT: groups of CONVOLUTION_CHANNELS output channels over in_channels · kernel_height · kernel_width taps.
void ck_pack_convolution(const ck_convolution *c, float *packed) {
    if (c->method == CK_WINOGRAD)
        pack_winograd(c, packed);
    else
        pack_row_groups(c->weight, c->out_channels, c->in_channels * c->kernel_height * c->kernel_width,
                        CONVOLUTION_CHANNELS, packed);
}

size_t ck_convolution_scratch_count(const ck_convolution *c, ptrdiff_t rows) {
    if (c->method == CK_WINOGRAD) {
        winograd_block b = winograd_block_of(c, rows);
        return (size_t)(b.band_count + 16 * (c->in_channels + ROUND_UP(c->out_channels, CONVOLUTION_CHANNELS)) * b.stride);
    }
    ptrdiff_t depth = c->in_channels * c->kernel_height * c->kernel_width;
    ptrdiff_t band = c->in_channels * (rows + c->kernel_height - 1) * (c->width + c->pad_left + c->pad_right);
    // One 32-bit offset per tap, the band and what the last tile reads past it.
    return (size_t)(depth + band + 16 * CONVOLUTION_VECTORS);
}

int ck_has_direct_convolution(void) { return chosen()->convolve_rows != NULL; }

void ck_convolve_rows(const ck_convolution *convolution, const float *packed, const float *input, ptrdiff_t first_row,
                      ptrdiff_t rows, float *output, float *scratch) {
    (convolution->method == CK_WINOGRAD ? chosen()->winograd_rows : chosen()->convolve_rows)(
        convolution, packed, input, first_row, rows, output, scratch);
}

size_t ck_linear_packed_count(ptrdiff_t out_features, ptrdiff_t in_features) {
    return (size_t)(ROUND_UP(out_features, LINEAR_PANEL) * in_features);
}

/// Panels of LINEAR_PANEL output features over the in_features inputs.
void ck_pack_linear(const float *weight, ptrdiff_t out_features, ptrdiff_t in_features, float *packed) {
    pack_row_groups(weight, out_features, in_features, LINEAR_PANEL, packed);
}

int ck_has_packed_linear(void) { return chosen()->linear_rows != NULL; }

void ck_linear_rows(const ck_linear *layer, const float *x, ptrdiff_t rows, const float *residual, float *y) {
    chosen()->linear_rows(layer, x, rows, residual, y);
}

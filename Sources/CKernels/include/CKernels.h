// The Transformers' and the VQ-VAE's inner loops in C, compiled once per x86-64 instruction-set level
// and picked at the first call by what the CPU has (AVX-512, AVX2 with FMA, or baseline SSE2): Swift
// cannot compile one function for several targets, and these loops are where the time goes that GEMM
// does not take. Every function works on raw rows; the Swift kernels own shapes, checks and threads.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>

/// Tells the core that this thread is waiting in a spin loop (x86 `pause`): the waiting costs less power
/// and leaves the core's resources to a sibling hyper-thread.
static inline void ck_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/// Which copy of the kernels runs: "avx512f", "avx2" or "sse2", the widest this CPU has unless the
/// environment variable MIMOOD_VECTOR_KERNELS names another it runs, or `ck_select_instruction_set` chose one.
const char *ck_instruction_set(void);

/// Makes the named copy the one that runs, if this CPU can run it (returns 1; otherwise 0 and nothing
/// changes): for tests of every copy, and for comparing them.
int ck_select_instruction_set(const char *name);

/// `iterations` rounds of independent 16-wide multiply-add chains, as many as this copy keeps in
/// registers, for measuring the peak rate; returns their sum, so that nothing is optimised away.
float ck_multiply_add_loop(ptrdiff_t iterations, float seed);

/// The floating-point operations of `ck_multiply_add_loop(iterations, …)`.
double ck_multiply_add_flops(ptrdiff_t iterations);

/// out[i] = e^(row[i] − max) / Σ e^(row − max) for i < count; out may be row.
void ck_softmax_row(const float *row, ptrdiff_t count, float *out);

/// y[i] = 1/(1 + e^−x[i]) for i < count; y may be x.
void ck_sigmoid(const float *x, float *y, ptrdiff_t count);

/// A non-linearity applied inside another kernel's pass (SiLU: x·σ(x)).
typedef enum { CK_IDENTITY = 0, CK_GELU = 1, CK_SILU = 2 } ck_activation;

/// The start of a Linear layer's output, before GEMM adds x·Wᵀ onto it: every one of `rows` rows of
/// `width` floats set to bias + residual row, bias [width] and residual [rows, width] each optional (NULL).
void ck_fill_rows(float *y, ptrdiff_t rows, ptrdiff_t width, const float *bias, const float *residual);

/// LayerNorm of `rows` rows of `dim` values: (x − mean)/√(var + eps)·weight + bias; y may be x.
void ck_layer_norm(const float *x, float *y, ptrdiff_t rows, ptrdiff_t dim, const float *weight,
                   const float *bias, float eps);

/// One sequence and one head of attention, softmax(q·kᵀ·scale)·v. Element (token t, feature f) of q, k
/// and v is at [t·token_stride + f·feature_stride]. `causal`: token t sees tokens 0...t only. With
/// `query_tokens` NULL every token is a query and query t's output goes to out at [t·out_token_stride +
/// f·out_feature_stride]; otherwise only the `queries` tokens listed there (ascending) are, the i-th
/// written at [i·out_token_stride + …]: the rows a caller needs, the keys and values still of every token.
typedef struct {
    ptrdiff_t tokens, depth;
    float scale;
    int causal;
    const float *q, *k, *v;
    ptrdiff_t token_stride, feature_stride;
    float *out;
    ptrdiff_t out_token_stride, out_feature_stride;
    ptrdiff_t queries;
    const ptrdiff_t *query_tokens;
} ck_attention_problem;

/// The floats of scratch memory `ck_attention` needs for this many tokens and features.
size_t ck_attention_scratch_count(ptrdiff_t tokens, ptrdiff_t depth);

/// Computes one problem in blocks of query rows: no tokens×tokens score matrix is ever stored, only
/// a few rows of it, which stay in the L1 cache between the two products and the softmax.
void ck_attention(const ck_attention_problem *problem, float *scratch);

/// Mean and variance (biased) of count floats, two passes (the second over x − mean), float lanes over
/// runs of 256 values added up in double.
void ck_moments(const float *x, ptrdiff_t count, double *mean, double *variance);

/// y = activation(x·scale + shift) over count floats; y may be x.
void ck_scale_shift(const float *x, float *y, ptrdiff_t count, float scale, float shift, ck_activation activation);

/// How `ck_convolve_rows` computes a convolution. CK_DIRECT: any kernel size and padding; the block's input
/// rows are copied once with their zero padding, and each output pixel reads them at kernel_height ×
/// kernel_width fixed offsets, no im2col matrix. CK_WINOGRAD: a 3×3 kernel with padding 1 on every side
/// only, by Winograd's F(2×2, 3×3), 16 products per 2×2 outputs and channel pair instead of 36; its blocks
/// start at even rows. Both: docs/kernels.md.
typedef enum { CK_DIRECT = 0, CK_WINOGRAD = 1 } ck_convolution_method;

/// A stride-1 2-D cross-correlation of one [in_channels, height, width] image with weight
/// [out_channels, in_channels, kernel_height, kernel_width] and bias [out_channels] (or NULL), zero padding
/// on each side; the output is [out_channels, height + pad_top + pad_bottom − kernel_height + 1, width + … + 1].
typedef struct {
    ptrdiff_t in_channels, out_channels, height, width, kernel_height, kernel_width;
    ptrdiff_t pad_top, pad_left, pad_bottom, pad_right;
    const float *weight, *bias;
    ck_convolution_method method;
} ck_convolution;

/// Whether the copy that runs has `ck_convolve_rows` (only the AVX-512 one: the tiles need 32 registers);
/// without it, convolutions go to im2col + GEMM.
int ck_has_direct_convolution(void);

/// The floats of the weights as `ck_convolve_rows` reads them for the convolution's method, and that layout
/// written by `ck_pack_convolution`: once per call of a layer, shared by every block and thread.
size_t ck_convolution_packed_count(const ck_convolution *convolution);
void ck_pack_convolution(const ck_convolution *convolution, float *packed);

/// The floats of scratch memory `ck_convolve_rows` needs for blocks of up to `rows` output rows; 64-byte
/// aligned memory makes CK_WINOGRAD's stores aligned (any alignment works).
size_t ck_convolution_scratch_count(const ck_convolution *convolution, ptrdiff_t rows);

/// Output rows first_row ..< first_row + rows of every output channel, written into output (the whole
/// output image); for CK_WINOGRAD first_row is even.
void ck_convolve_rows(const ck_convolution *convolution, const float *packed, const float *input, ptrdiff_t first_row,
                      ptrdiff_t rows, float *output, float *scratch);

/// A Linear layer for `ck_linear_rows`: y = activation(x·Wᵀ + bias) + residual, the weight W [out_features,
/// in_features] packed once by `ck_pack_linear` into panels of 32 output features (each [in_features][32],
/// features past out_features zero), the bias [out_features] or NULL. Only one of the activation and
/// the residual may be used.
typedef struct {
    ptrdiff_t in_features, out_features;
    const float *packed, *bias;
    ck_activation activation;
} ck_linear;

/// The floats of a weight [out_features, in_features] as `ck_pack_linear` writes it.
size_t ck_linear_packed_count(ptrdiff_t out_features, ptrdiff_t in_features);
void ck_pack_linear(const float *weight, ptrdiff_t out_features, ptrdiff_t in_features, float *packed);

/// Whether the copy that runs has `ck_linear_rows` (only the AVX-512 one: the tile needs 32 registers);
/// without it, Linear layers go to OpenBLAS.
int ck_has_packed_linear(void);

/// `rows` rows of x [rows, in_features] through the layer into y [rows, out_features], residual [rows,
/// out_features] or NULL; the bias, the residual and the activation applied while the tile is in registers.
void ck_linear_rows(const ck_linear *layer, const float *x, ptrdiff_t rows, const float *residual, float *y);

#endif

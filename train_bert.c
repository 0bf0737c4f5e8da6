/*
BERT fine-tuning for sequence classification, in plain C.

This file is the CPU reference of bert.c: the forward pass, the backward pass,
AdamW, LoRA and the metrics, written to be read. It computes exactly what
Hugging Face `BertForSequenceClassification` computes (and PEFT's LoRA on
query/key/value), and test_bert.c checks that against PyTorch tensor by tensor.
Clarity wins over speed; OpenMP pragmas and a cache-blocked matmul are the only
concessions. train_bert.cu mirrors it function for function on the GPU.

It is not a general transformer library: one architecture (post-LN BERT with
absolute positions and exact GELU), one task (single-sentence classification).

Run: make train_bert && ./train_bert -s full      (see -h for every flag)
*/
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef OMP
#include <omp.h>
#endif
// stb_ds: growing lists (per-epoch history) and the tokenizer's vocabulary hash map.
// This is the one file that defines the implementation.
#define STB_DS_IMPLEMENTATION
#include <stb/stb_ds.h>
#undef STB_DS_IMPLEMENTATION
#include "tokenizer.h" // defines: tokenizer_init, tokenizer_encode, tokenizer_free (classify mode, -t)

// ----------------------------------------------------------------------------
// checked I/O and allocation: every failure names the file and line and exits

static void fopen_check(FILE** fp, const char* path, const char* mode, const char* file, int line) {
    *fp = fopen(path, mode);
    if (*fp == NULL) {
        fprintf(stderr, "Error: could not open %s (mode %s): %s\n  at %s:%d\n", path, mode, strerror(errno), file, line);
        exit(EXIT_FAILURE);
    }
}
#define fopenCheck(fp, path, mode) fopen_check(fp, path, mode, __FILE__, __LINE__)

static void fread_check(void* ptr, size_t size, size_t nmemb, FILE* fp, const char* path, const char* file, int line) {
    if (fread(ptr, size, nmemb, fp) != nmemb) {
        fprintf(stderr, "Error: short read from %s (wanted %zu items of %zu bytes)\n  at %s:%d\n", path, nmemb, size, file, line);
        exit(EXIT_FAILURE);
    }
}
#define freadCheck(ptr, size, nmemb, fp, path) fread_check(ptr, size, nmemb, fp, path, __FILE__, __LINE__)

static void fwrite_check(const void* ptr, size_t size, size_t nmemb, FILE* fp, const char* path, const char* file, int line) {
    if (fwrite(ptr, size, nmemb, fp) != nmemb) {
        fprintf(stderr, "Error: short write to %s: %s\n  at %s:%d\n", path, strerror(errno), file, line);
        exit(EXIT_FAILURE);
    }
}
#define fwriteCheck(ptr, size, nmemb, fp, path) fwrite_check(ptr, size, nmemb, fp, path, __FILE__, __LINE__)

static void fclose_check(FILE* fp, const char* path, const char* file, int line) {
    if (fclose(fp) != 0) {
        fprintf(stderr, "Error: could not close %s: %s\n  at %s:%d\n", path, strerror(errno), file, line);
        exit(EXIT_FAILURE);
    }
}
#define fcloseCheck(fp, path) fclose_check(fp, path, __FILE__, __LINE__)

// Atomic writes: everything goes to path.tmp, which is renamed over path only once it is
// complete, so a crash leaves either the old file or the new one, never half of one.
static FILE* atomic_open_(const char* path, char* tmp, size_t tmp_size) {
    snprintf(tmp, tmp_size, "%s.tmp", path);
    FILE* fp;
    fopenCheck(&fp, tmp, "wb");
    return fp;
}

static void atomic_commit_(FILE* fp, const char* tmp, const char* path) {
    fcloseCheck(fp, tmp);
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "Error: could not rename %s to %s: %s\n", tmp, path, strerror(errno));
        exit(EXIT_FAILURE);
    }
}

static void* malloc_check(size_t size, const char* file, int line) {
    void* p = malloc(size == 0 ? 1 : size);
    if (p == NULL) {
        fprintf(stderr, "Error: out of memory allocating %zu bytes\n  at %s:%d\n", size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static void* calloc_check(size_t n, size_t size, const char* file, int line) {
    void* p = calloc(n == 0 ? 1 : n, size);
    if (p == NULL) {
        fprintf(stderr, "Error: out of memory allocating %zu x %zu bytes\n  at %s:%d\n", n, size, file, line);
        exit(EXIT_FAILURE);
    }
    return p;
}
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)

static inline long file_size_(FILE* fp) {
    long here = ftell(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, here, SEEK_SET);
    return size;
}

#define HEADER_INTS 256 // every binary file starts with this many int32

// Read the 256-int header every binary starts with and check its magic and version;
// what names the kind of file ("model file"), hint says how to fix it. Returns the file size.
static long header_read_(FILE* fp, const char* path, int32_t* header, int32_t magic, int32_t version,
                         const char* what, const char* hint) {
    long fsize = file_size_(fp);
    if (fsize < (long)(HEADER_INTS * sizeof(int32_t))) {
        fprintf(stderr, "Error: %s is too small to be a %s (%ld bytes)\n---> HINT: %s\n", path, what, fsize, hint);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int32_t), HEADER_INTS, fp, path);
    if (header[0] != magic) {
        fprintf(stderr, "Error: bad magic in %s %s (got %d, want %d)\n---> HINT: %s\n", what, path, header[0], magic, hint);
        exit(EXIT_FAILURE);
    }
    if (header[1] != version) {
        fprintf(stderr, "Error: bad version in %s %s (got %d, want %d)\n---> HINT: %s\n", what, path, header[1], version, hint);
        exit(EXIT_FAILURE);
    }
    return fsize;
}

static inline double now_seconds_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float bits_to_float_(int32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
static int32_t float_to_bits_(float f) { int32_t bits; memcpy(&bits, &f, 4); return bits; }

// ----------------------------------------------------------------------------
// dropout randomness: a counter-based generator, so a mask is a pure function
// of (seed, step, site, index). Backward regenerates the forward's mask instead
// of storing it, and the GPU computes the very same masks.

static inline uint64_t mix64_(uint64_t x) {
    // the splitmix64 finaliser: a bijection on 64 bits with good avalanche
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

// one stream per (step, site); sites are numbered by dropout_site()
static inline uint64_t dropout_stream(uint64_t seed, uint64_t step, uint64_t site) {
    return mix64_(mix64_(seed + 0x9e3779b97f4a7c15ULL) ^ (step << 16) ^ site);
}

// uniform in [0, 1) with 24 random bits; element i keeps its value iff u >= p
static inline float dropout_uniform(uint64_t stream, uint64_t i) {
    return (float)(mix64_(stream + i) >> 40) * (1.0f / 16777216.0f);
}

// ----------------------------------------------------------------------------
// all the individual layers' forward and backward passes
// B = batch, T = padded sequence length, C = hidden, NH = heads, FF = intermediate

// Matrix product out (M,N) += a (M,K) @ b (K,N). b and out are row-major; a is read
// through strides so that the same loop serves x @ W^T (a = x), dout @ W (a = dout)
// and dout^T @ x (a = dout read by columns). The inner loop runs along a row of b,
// so it vectorises without reassociating any sum: each output is a plain sequential
// sum over k, which keeps results independent of the thread count.
// Tile sizes: the MM_TM x MM_TN accumulators must stay in vector registers. With AVX-512
// (32 registers of 16 floats, -mprefer-vector-width=512) 8 x 48 measured fastest on an AMD EPYC
// (dev/bench_step.py); with 16 registers of 8 floats (AVX2) 4 x 32 is the largest that fits.
#ifndef MM_TM
#ifdef __AVX512F__
#define MM_TM 8   // rows of out per tile
#define MM_TN 48  // columns of out per tile
#else
#define MM_TM 4
#define MM_TN 32
#endif
#endif
static void matmul_(float* out, const float* a, size_t a_rs, size_t a_cs, const float* b, int M, int K, int N) {
    int mtiles = (M + MM_TM - 1) / MM_TM;
    int ntiles = (N + MM_TN - 1) / MM_TN;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int jt = 0; jt < ntiles; jt++) {
        for (int it = 0; it < mtiles; it++) {
            int i0 = it * MM_TM, j0 = jt * MM_TN;
            if (i0 + MM_TM <= M && j0 + MM_TN <= N) {
                float acc[MM_TM][MM_TN];
                for (int i = 0; i < MM_TM; i++) {
                    for (int j = 0; j < MM_TN; j++) { acc[i][j] = out[(size_t)(i0 + i) * N + j0 + j]; }
                }
                for (int k = 0; k < K; k++) {
                    const float* brow = b + (size_t)k * N + j0;
                    for (int i = 0; i < MM_TM; i++) {
                        float aik = a[(i0 + i) * a_rs + k * a_cs];
                        for (int j = 0; j < MM_TN; j++) { acc[i][j] += aik * brow[j]; }
                    }
                }
                for (int i = 0; i < MM_TM; i++) {
                    for (int j = 0; j < MM_TN; j++) { out[(size_t)(i0 + i) * N + j0 + j] = acc[i][j]; }
                }
            } else {
                // ragged edge tile: the same sums, without the fixed-size fast path
                int im = M - i0 < MM_TM ? M - i0 : MM_TM;
                int jn = N - j0 < MM_TN ? N - j0 : MM_TN;
                for (int i = 0; i < im; i++) {
                    for (int j = 0; j < jn; j++) {
                        float sum = out[(size_t)(i0 + i) * N + j0 + j];
                        for (int k = 0; k < K; k++) { sum += a[(i0 + i) * a_rs + k * a_cs] * b[(size_t)k * N + j0 + j]; }
                        out[(size_t)(i0 + i) * N + j0 + j] = sum;
                    }
                }
            }
        }
    }
}

// out (OC, C) = w (C, OC) transposed; scratch for matmul_forward
static void transpose_(float* out, const float* w, int R, int Cc) {
    #pragma omp parallel for
    for (int c = 0; c < Cc; c++) {
        for (int r = 0; r < R; r++) { out[(size_t)c * R + r] = w[(size_t)r * Cc + c]; }
    }
}

// nn.Linear: out (N, OC) = inp (N, C) @ weight^T + bias, weight (OC, C) as PyTorch stores it.
// wt_scratch holds weight^T (C, OC) so the inner loop runs along contiguous memory.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    float* wt_scratch, int N, int C, int OC) {
    transpose_(wt_scratch, weight, OC, C);
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) { out[(size_t)n * OC + o] = bias != NULL ? bias[o] : 0.0f; }
    }
    matmul_(out, inp, C, 1, wt_scratch, N, C, OC);
}

// backward of out = inp @ weight^T + bias; any of dinp, dweight, dbias may be NULL
// (a frozen weight, or an input that needs no gradient). All three accumulate.
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int C, int OC) {
    if (dinp != NULL) { matmul_(dinp, dout, OC, 1, weight, N, OC, C); }        // dinp += dout @ W
    if (dweight != NULL) { matmul_(dweight, dout, 1, OC, inp, OC, N, C); }     // dW += dout^T @ inp
    if (dbias != NULL) {
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++) { sum += dout[(size_t)n * OC + o]; }
            dbias[o] += sum;
        }
    }
}

// BertEmbeddings before its LayerNorm: word + position + token type (all type 0:
// single sentences). Padded positions are computed too; nothing reads them.
void embedding_forward(float* out, const int* ids, const float* wte, const float* wpe, const float* wtt,
                       int B, int T, int C) {
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* o = out + ((size_t)b * T + t) * C;
            const float* we = wte + (size_t)ids[b * T + t] * C;
            const float* pe = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) { o[i] = we[i] + pe[i] + wtt[i]; }
        }
    }
}

// backward of o = wte[id] + wpe[t] + wtt[0]. Padded positions are skipped: their
// gradient is exactly zero, and Hugging Face's padding_idx keeps wte[pad] unchanged.
void embedding_backward(float* dwte, float* dwpe, float* dwtt, const float* dout, const int* ids,
                        const int* lengths, int B, int T, int C) {
    // serial over tokens: two tokens with the same id add into the same row
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < lengths[b]; t++) {
            const float* d = dout + ((size_t)b * T + t) * C;
            float* dwe = dwte + (size_t)ids[b * T + t] * C;
            float* dpe = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) { dwe[i] += d[i]; dpe[i] += d[i]; dwtt[i] += d[i]; }
        }
    }
}

// nn.LayerNorm over the last dim (biased variance), https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, int N, int C, float eps) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) { m += x[i]; }
        m /= C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) { float d = x[i] - m; v += d * d; }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        float* o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) { o[i] = (x[i] - m) * s * weight[i] + bias[i]; }
        mean[n] = m;
        rstd[n] = s;
    }
}

// backward of out = (x - mean) * rstd * w + b; dweight/dbias may be NULL (frozen)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * C;
        const float* x = inp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        // dnorm = dout * w; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * d[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float* dx = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = weight[i] * d[i];
            dx[i] += s * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
        }
    }
    if (dweight != NULL) {
        // separate loop over channels: parallel without two threads adding into one dw[i]
        #pragma omp parallel for
        for (int i = 0; i < C; i++) {
            float dw = 0.0f, db = 0.0f;
            for (int n = 0; n < N; n++) {
                float norm = (inp[(size_t)n * C + i] - mean[n]) * rstd[n];
                dw += norm * dout[(size_t)n * C + i];
                db += dout[(size_t)n * C + i];
            }
            dweight[i] += dw;
            dbias[i] += db;
        }
    }
}

// out = dropout(inp) (+ residual if not NULL), inverted dropout: kept values scale by 1/(1-p).
// p == 0 (evaluation, or tests) is the identity. out may alias inp.
void dropout_forward(float* out, const float* inp, const float* residual, size_t N, float p, uint64_t stream) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        if (p > 0.0f) { x = dropout_uniform(stream, i) >= p ? x * scale : 0.0f; }
        out[i] = residual != NULL ? x + residual[i] : x;
    }
}

// dinp += dropout mask (regenerated from the stream) * dout
void dropout_backward(float* dinp, const float* dout, size_t N, float p, uint64_t stream) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float d = dout[i];
        if (p > 0.0f) { d = dropout_uniform(stream, i) >= p ? d * scale : 0.0f; }
        dinp[i] += d;
    }
}

// Bidirectional self-attention with a key padding mask, as BertSelfAttention:
// scores = q k^T / sqrt(hs), padded keys masked out, softmax, dropout, @ v.
// qkv (B, T, 3C) holds q, k, v side by side; att (B, NH, T, T) keeps the softmax
// (before dropout) for the backward pass; out (B, T, C) has the heads concatenated.
// Padded query rows still attend to the real keys, so they never produce NaN.
void attention_forward(float* out, float* att, const float* qkv, const int* lengths,
                       int B, int T, int C, int NH, float p, uint64_t stream) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float pscale = 1.0f / (1.0f - p);
    #pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                int len = lengths[b];
                const float* q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                float* a = att + (((size_t)b * NH + h) * T + t) * T;
                float maxval = -INFINITY;
                for (int t2 = 0; t2 < len; t2++) {
                    const float* k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    float s = 0.0f;
                    for (int i = 0; i < hs; i++) { s += q[i] * k[i]; }
                    s *= scale;
                    a[t2] = s;
                    if (s > maxval) { maxval = s; }
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 < len; t2++) { a[t2] = expf(a[t2] - maxval); sum += a[t2]; }
                for (int t2 = 0; t2 < len; t2++) { a[t2] /= sum; }
                for (int t2 = len; t2 < T; t2++) { a[t2] = 0.0f; }
                float* o = out + ((size_t)b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) { o[i] = 0.0f; }
                size_t row = (((size_t)b * NH + h) * T + t) * T;
                for (int t2 = 0; t2 < len; t2++) {
                    float w = a[t2];
                    if (p > 0.0f) { w = dropout_uniform(stream, row + t2) >= p ? w * pscale : 0.0f; }
                    const float* v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++) { o[i] += w * v[i]; }
                }
            }
        }
    }
}

// backward of the above into dqkv (B, T, 3C), which it accumulates.
// Parallel over (b, h): every write of one (b, h) lands in its own slice of dqkv.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att, const int* lengths,
                        int B, int T, int C, int NH, float p, uint64_t stream) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float pscale = 1.0f / (1.0f - p);
    #pragma omp parallel
    {
        float* datt = (float*)mallocCheck((size_t)T * sizeof(float)); // one row of d(softmax)
        #pragma omp for collapse(2)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                int len = lengths[b];
                for (int t = 0; t < T; t++) {
                    const float* a = att + (((size_t)b * NH + h) * T + t) * T;
                    const float* d = dout + ((size_t)b * T + t) * C + h * hs;
                    const float* q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                    float* dq = dqkv + ((size_t)b * T + t) * 3 * C + h * hs;
                    size_t row = (((size_t)b * NH + h) * T + t) * T;
                    // o = sum_t2 dropout(a)[t2] * v[t2]
                    float dot = 0.0f;
                    for (int t2 = 0; t2 < len; t2++) {
                        float m = 1.0f;
                        if (p > 0.0f) { m = dropout_uniform(stream, row + t2) >= p ? pscale : 0.0f; }
                        const float* v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                        float* dv = dqkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                        float dw = 0.0f;
                        for (int i = 0; i < hs; i++) { dw += d[i] * v[i]; dv[i] += a[t2] * m * d[i]; }
                        datt[t2] = dw * m;
                        dot += datt[t2] * a[t2];
                    }
                    // a = softmax(s): ds = a * (datt - sum(datt * a)); s = q . k * scale
                    for (int t2 = 0; t2 < len; t2++) {
                        float ds = a[t2] * (datt[t2] - dot) * scale;
                        const float* k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                        float* dk = dqkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                        for (int i = 0; i < hs; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
                    }
                }
            }
        }
        free(datt);
    }
}

// exact GELU, as Hugging Face's "gelu": 0.5 x (1 + erf(x / sqrt 2))
#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f
void gelu_forward(float* out, const float* inp, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) { out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2)); }
}

// dinp = dout * (Phi(x) + x phi(x)); dinp may alias dout
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float grad = 0.5f * (1.0f + erff(x * INV_SQRT2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] = dout[i] * grad;
    }
}

// BertPooler on the [CLS] position: out (B, C) = tanh(dense(h[:, 0]))
void pooler_forward(float* out, float* cls_scratch, const float* h, const float* w, const float* bias,
                    float* wt_scratch, int B, int T, int C) {
    for (int b = 0; b < B; b++) { memcpy(cls_scratch + (size_t)b * C, h + (size_t)b * T * C, C * sizeof(float)); }
    matmul_forward(out, cls_scratch, w, bias, wt_scratch, B, C, C);
    for (size_t i = 0; i < (size_t)B * C; i++) { out[i] = tanhf(out[i]); }
}

// backward of out = tanh(cls @ w^T + b) into dh (B, T, C), which only gets its [CLS] rows
void pooler_backward(float* dh, float* dw, float* db, float* dpre_scratch, float* dcls_scratch, const float* dout,
                     const float* out, const float* cls, const float* w, int B, int T, int C) {
    for (size_t i = 0; i < (size_t)B * C; i++) { dpre_scratch[i] = dout[i] * (1.0f - out[i] * out[i]); }
    memset(dcls_scratch, 0, (size_t)B * C * sizeof(float));
    matmul_backward(dcls_scratch, dw, db, dpre_scratch, cls, w, B, C, C);
    for (int b = 0; b < B; b++) {
        float* d = dh + (size_t)b * T * C;
        for (int i = 0; i < C; i++) { d[i] += dcls_scratch[(size_t)b * C + i]; }
    }
}

// softmax cross-entropy, mean over the batch (nn.CrossEntropyLoss); returns the mean loss
float crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels, int B, int NC) {
    float mean = 0.0f;
    for (int b = 0; b < B; b++) {
        const float* z = logits + (size_t)b * NC;
        float* pr = probs + (size_t)b * NC;
        float maxval = z[0];
        for (int c = 1; c < NC; c++) { if (z[c] > maxval) { maxval = z[c]; } }
        float sum = 0.0f;
        for (int c = 0; c < NC; c++) { pr[c] = expf(z[c] - maxval); sum += pr[c]; }
        for (int c = 0; c < NC; c++) { pr[c] /= sum; }
        losses[b] = logf(sum) + maxval - z[labels[b]];
        mean += losses[b];
    }
    return mean / B;
}

// d(mean loss)/dlogits = (probs - onehot(label)) / B
void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int NC) {
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < NC; c++) {
            dlogits[(size_t)b * NC + c] = (probs[(size_t)b * NC + c] - (c == labels[b] ? 1.0f : 0.0f)) / B;
        }
    }
}

// LoRA on one projection (PEFT's lora.Linear): out += s * (dropout(x) @ A^T) @ B^T, s = alpha / r.
// x (N, C), A (r, C), B (OC, r). u (N, r) is kept for backward; xd_scratch (N, C) holds dropout(x).
// out has row stride out_stride, so q, k and v write straight into their part of qkv.
void lora_forward(float* out, size_t out_stride, float* u, float* xd_scratch, const float* x, const float* A,
                  const float* Bw, int N, int C, int OC, int r, float s, float p, uint64_t stream) {
    dropout_forward(xd_scratch, x, NULL, (size_t)N * C, p, stream);
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* xn = xd_scratch + (size_t)n * C;
        float* un = u + (size_t)n * r;
        for (int j = 0; j < r; j++) {
            const float* a = A + (size_t)j * C;
            float sum = 0.0f;
            for (int i = 0; i < C; i++) { sum += xn[i] * a[i]; }
            un[j] = sum;
        }
        float* o = out + (size_t)n * out_stride;
        for (int o_ = 0; o_ < OC; o_++) {
            const float* bw = Bw + (size_t)o_ * r;
            float sum = 0.0f;
            for (int j = 0; j < r; j++) { sum += un[j] * bw[j]; }
            o[o_] += s * sum;
        }
    }
}

// backward of the above. dout (N, OC) is read with row stride dout_stride. dA, dB accumulate;
// dx (may be NULL) accumulates through the dropout mask. du_scratch (N, r).
void lora_backward(float* dx, float* dA, float* dBw, float* du_scratch, float* xd_scratch, const float* dout,
                   size_t dout_stride, const float* u, const float* x, const float* A, const float* Bw,
                   int N, int C, int OC, int r, float s, float p, uint64_t stream) {
    // du = s * dout @ B
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * dout_stride;
        for (int j = 0; j < r; j++) {
            float sum = 0.0f;
            for (int o = 0; o < OC; o++) { sum += d[o] * Bw[(size_t)o * r + j]; }
            du_scratch[(size_t)n * r + j] = s * sum;
        }
    }
    // dB += s * dout^T @ u
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        for (int j = 0; j < r; j++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++) { sum += dout[(size_t)n * dout_stride + o] * u[(size_t)n * r + j]; }
            dBw[(size_t)o * r + j] += s * sum;
        }
    }
    // dA += du^T @ dropout(x)
    dropout_forward(xd_scratch, x, NULL, (size_t)N * C, p, stream);
    #pragma omp parallel for
    for (int j = 0; j < r; j++) {
        float* da = dA + (size_t)j * C;
        for (int n = 0; n < N; n++) {
            float dun = du_scratch[(size_t)n * r + j];
            const float* xn = xd_scratch + (size_t)n * C;
            for (int i = 0; i < C; i++) { da[i] += dun * xn[i]; }
        }
    }
    // dx += dropout_backward(du @ A), unless nothing below needs it
    if (dx == NULL) { return; }
    memset(xd_scratch, 0, (size_t)N * C * sizeof(float));
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float* dxn = xd_scratch + (size_t)n * C;
        for (int j = 0; j < r; j++) {
            float dun = du_scratch[(size_t)n * r + j];
            const float* a = A + (size_t)j * C;
            for (int i = 0; i < C; i++) { dxn[i] += dun * a[i]; }
        }
    }
    dropout_backward(dx, xd_scratch, (size_t)N * C, p, stream);
}

// ----------------------------------------------------------------------------
// BERT model definition

#define MODEL_MAGIC 20261127
#define MODEL_VERSION 1     // version 1: the first layout (README.md, "File formats")
#define SPLIT_MAGIC 20261128
#define SPLIT_VERSION 1
#define NUM_PARAMETER_TENSORS 21
#define NUM_LORA_TENSORS 2

enum Strategy { STRATEGY_FULL = 0, STRATEGY_FROZEN = 1, STRATEGY_LORA = 2 };
static const char* STRATEGY_NAMES[] = {"full", "frozen", "lora"};

typedef struct {
    int V;      // vocabulary size, e.g. 30522
    int P;      // max position embeddings, e.g. 512
    int TV;     // token type vocabulary, 2
    int C;      // hidden size, e.g. 768
    int L;      // number of layers, e.g. 12
    int NH;     // number of heads, e.g. 12
    int FF;     // intermediate size, e.g. 3072
    int NC;     // number of labels, 6
    float eps;  // layer-norm epsilon, 1e-12
    int pad_id; // id of [PAD]
    int lower;  // the tokenizer lower-cases
    char name[257];
} BertConfig;

typedef struct {
    float* wte;      // (V, C)
    float* wpe;      // (P, C)
    float* wtt;      // (TV, C)
    float* embln_w;  // (C)
    float* embln_b;  // (C)
    float* qkvw;     // (L, 3*C, C)
    float* qkvb;     // (L, 3*C)
    float* attprojw; // (L, C, C)
    float* attprojb; // (L, C)
    float* ln1w;     // (L, C)
    float* ln1b;     // (L, C)
    float* fcw;      // (L, FF, C)
    float* fcb;      // (L, FF)
    float* fcprojw;  // (L, C, FF)
    float* fcprojb;  // (L, C)
    float* ln2w;     // (L, C)
    float* ln2b;     // (L, C)
    float* poolw;    // (C, C)
    float* poolb;    // (C)
    float* clsw;     // (NC, C)
    float* clsb;     // (NC)
} ParameterTensors;

typedef struct {
    float* lora_a; // (L, 3, r, C): query, key, value
    float* lora_b; // (L, 3, C, r)
} LoraTensors;

// One row per tensor: its name, size, whether it trains under the strategy and
// whether AdamW decays it (Hugging Face's Trainer decays all but biases and LayerNorm).
typedef struct {
    const char* name;
    size_t size;
    int trainable;
    int decay;
} TensorInfo;

static const char* PARAMETER_NAMES[NUM_PARAMETER_TENSORS] = {
    "wte", "wpe", "wtt", "embln_w", "embln_b", "qkvw", "qkvb", "attprojw", "attprojb", "ln1w", "ln1b",
    "fcw", "fcb", "fcprojw", "fcprojb", "ln2w", "ln2b", "poolw", "poolb", "clsw", "clsb"};
static const int PARAMETER_DECAY[NUM_PARAMETER_TENSORS] = {
    1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0};

void fill_in_parameter_sizes(TensorInfo* info, const BertConfig* cfg, int strategy) {
    size_t V = cfg->V, P = cfg->P, TV = cfg->TV, C = cfg->C, L = cfg->L, FF = cfg->FF, NC = cfg->NC;
    size_t sizes[NUM_PARAMETER_TENSORS] = {
        V * C, P * C, TV * C, C, C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C,
        L * FF * C, L * FF, L * C * FF, L * C, L * C, L * C, C * C, C, NC * C, NC};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        info[i].name = PARAMETER_NAMES[i];
        info[i].size = sizes[i];
        info[i].decay = PARAMETER_DECAY[i];
        // full trains everything; frozen and lora train the classifier (the last two) of the base model
        info[i].trainable = strategy == STRATEGY_FULL || i >= NUM_PARAMETER_TENSORS - 2;
    }
}

void fill_in_lora_sizes(TensorInfo* info, const BertConfig* cfg, int r) {
    const char* names[NUM_LORA_TENSORS] = {"lora_a", "lora_b"};
    for (int i = 0; i < NUM_LORA_TENSORS; i++) {
        info[i].name = names[i];
        info[i].size = (size_t)cfg->L * 3 * r * cfg->C; // (L, 3, r, C) and (L, 3, C, r)
        info[i].trainable = 1;
        info[i].decay = 1;
    }
}

// One allocation for a table of tensors: sizes in, one pointer per row out.
// A row of size 0 (a frozen tensor's gradient, say) gets NULL. Returns the zeroed block.
float* malloc_and_point(float** ptrs, const size_t* sizes, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) { total += sizes[i]; }
    float* mem = (float*)callocCheck(total, sizeof(float));
    float* p = mem;
    for (int i = 0; i < n; i++) {
        ptrs[i] = sizes[i] > 0 ? p : NULL;
        p += sizes[i];
    }
    return mem;
}

// the sizes column of a table; only_trainable zeroes the rows that do not train
static void table_sizes_(size_t* sizes, const TensorInfo* info, int n, int only_trainable) {
    for (int i = 0; i < n; i++) { sizes[i] = (!only_trainable || info[i].trainable) ? info[i].size : 0; }
}

typedef struct {
    float* encoded;  // (B, T, C) embeddings before their LayerNorm
    float* emb_mean; // (B, T)
    float* emb_rstd; // (B, T)
    float* hs;       // (L+1, B, T, C) input of each layer; hs[0] = dropout(LN(encoded)), hs[L] = encoder output
    float* qkv;      // (L, B, T, 3*C)
    float* att;      // (L, B, NH, T, T) softmax before dropout
    float* atty;     // (L, B, T, C) attention output, heads concatenated
    float* r1;       // (L, B, T, C) dropout(attention dense) + layer input
    float* ln1;      // (L, B, T, C)
    float* ln1_mean; // (L, B, T)
    float* ln1_rstd; // (L, B, T)
    float* fch;      // (L, B, T, FF) before GELU
    float* fch_gelu; // (L, B, T, FF)
    float* r2;       // (L, B, T, C) dropout(output dense) + ln1
    float* ln2_mean; // (L, B, T)
    float* ln2_rstd; // (L, B, T)
    float* lora_u;   // (L, 3, B, T, r) LoRA's A x, only with LoRA
    float* cls;      // (B, C) hs[L] at [CLS]
    float* pooled;   // (B, C) tanh(dense(cls))
    float* pooled_d; // (B, C) dropout(pooled): the classifier's input
    float* logits;   // (B, NC)
    float* probs;    // (B, NC)
    float* losses;   // (B)
} ActivationTensors;
#define NUM_ACTIVATION_TENSORS 23

// scratch for one layer at a time in forward and backward
typedef struct {
    float* wt;     // (max(3C, FF) * max(C, FF)) a transposed weight
    float* tmp;    // (B, T, C) a dense output before its dropout
    float* dh;     // (B, T, C) gradient flowing down the residual stream
    float* dr;     // (B, T, C) gradient of a residual sum
    float* dln1;   // (B, T, C)
    float* datty;  // (B, T, C)
    float* dqkv;   // (B, T, 3*C)
    float* dfch;   // (B, T, FF)
    float* xd;     // (B, T, C) LoRA's dropped-out input and its gradient
    float* du;     // (B, T, r)
    float* dsmall; // (4, B, C) pooler and classifier gradients
    float* dlogits;// (B, NC)
} ScratchTensors;
#define NUM_SCRATCH_TENSORS 12

typedef struct {
    BertConfig config;
    int strategy;
    ParameterTensors params;
    TensorInfo param_info[NUM_PARAMETER_TENSORS];
    float* params_memory;
    size_t num_parameters;
    ParameterTensors grads; // NULL for tensors that do not train
    float* grads_memory;
    float* m_memory;        // AdamW moments, trainable tensors only, in table order
    float* v_memory;
    // LoRA (strategy lora only)
    int lora_r;
    float lora_alpha;
    float lora_dropout;
    LoraTensors lora;
    LoraTensors lora_grads;
    TensorInfo lora_info[NUM_LORA_TENSORS];
    float* lora_memory;
    float* lora_grads_memory;
    size_t num_lora_parameters;
    // activations, allocated once for the largest batch (B_max, T_max)
    int B_max, T_max;
    ActivationTensors acts;
    float* acts_memory;
    ScratchTensors scratch;
    float* scratch_memory;
    // the current batch
    int B, T;
    int* ids;     // (B_max * T_max)
    int* lengths; // (B_max)
    int* labels;  // (B_max)
    float mean_loss;
    // training state
    float dropout;  // hidden, attention and classifier dropout (0.1 in BERT)
    uint64_t seed;
    int step;       // optimizer steps taken; also numbers the dropout streams
} Bert;

// read a model file (or a checkpoint, which starts with the same layout) into model
void bert_build_from_file(Bert* model, const char* path) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t header[HEADER_INTS];
    long fsize = header_read_(fp, path, header, MODEL_MAGIC, MODEL_VERSION, "model file", "re-run `python prepro_emotion.py`");
    BertConfig* cfg = &model->config;
    cfg->V = header[2]; cfg->P = header[3]; cfg->TV = header[4]; cfg->C = header[5]; cfg->L = header[6];
    cfg->NH = header[7]; cfg->FF = header[8]; cfg->NC = header[9]; cfg->eps = bits_to_float_(header[10]);
    cfg->pad_id = header[12]; cfg->lower = header[13];
    memcpy(cfg->name, &header[32], 256);
    cfg->name[256] = '\0';
    if (cfg->V <= 0 || cfg->P <= 0 || cfg->TV <= 0 || cfg->C <= 0 || cfg->L <= 0 || cfg->NH <= 0 || cfg->FF <= 0 ||
        cfg->NC <= 1 || cfg->C % cfg->NH != 0 || !(cfg->eps > 0.0f) || cfg->pad_id < 0 || cfg->pad_id >= cfg->V) {
        fprintf(stderr, "Error: model file %s has an invalid config (V %d P %d TV %d C %d L %d NH %d FF %d NC %d eps %g pad %d)\n",
                path, cfg->V, cfg->P, cfg->TV, cfg->C, cfg->L, cfg->NH, cfg->FF, cfg->NC, cfg->eps, cfg->pad_id);
        exit(EXIT_FAILURE);
    }
    if (header[11] != 1) {
        fprintf(stderr, "Error: model file %s asks for activation %d; only 1 (exact erf GELU) is supported\n", path, header[11]);
        exit(EXIT_FAILURE);
    }
    fill_in_parameter_sizes(model->param_info, cfg, model->strategy);
    model->num_parameters = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { model->num_parameters += model->param_info[i].size; }
    // a checkpoint (header[14] == 1) carries LoRA tensors after the parameters
    size_t extra = 0;
    if (header[14] == 1 && header[16] > 0) { extra = (size_t)cfg->L * 3 * header[16] * cfg->C * 2; }
    long want = (long)(sizeof(header) + (model->num_parameters + extra) * sizeof(float));
    if (fsize != want) {
        fprintf(stderr, "Error: model file %s has %ld bytes, its header says %ld\n---> HINT: re-run `python prepro_emotion.py`\n", path, fsize, want);
        exit(EXIT_FAILURE);
    }
    size_t sizes[NUM_PARAMETER_TENSORS];
    table_sizes_(sizes, model->param_info, NUM_PARAMETER_TENSORS, 0);
    model->params_memory = malloc_and_point((float**)&model->params, sizes, NUM_PARAMETER_TENSORS);
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    fcloseCheck(fp, path);
}

// Set up training state for model->strategy: gradient and AdamW memory for what trains,
// LoRA adapters initialised like PEFT (A kaiming-uniform with a = sqrt 5, B zero).
void bert_init_training(Bert* model) {
    size_t sizes[NUM_PARAMETER_TENSORS];
    fill_in_parameter_sizes(model->param_info, &model->config, model->strategy);
    table_sizes_(sizes, model->param_info, NUM_PARAMETER_TENSORS, 1);
    model->grads_memory = malloc_and_point((float**)&model->grads, sizes, NUM_PARAMETER_TENSORS);
    size_t ntrain = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { ntrain += sizes[i]; }
    model->num_lora_parameters = 0;
    if (model->strategy == STRATEGY_LORA) {
        const BertConfig* cfg = &model->config;
        fill_in_lora_sizes(model->lora_info, cfg, model->lora_r);
        size_t lsizes[NUM_LORA_TENSORS];
        table_sizes_(lsizes, model->lora_info, NUM_LORA_TENSORS, 0);
        model->lora_memory = malloc_and_point((float**)&model->lora, lsizes, NUM_LORA_TENSORS);
        model->lora_grads_memory = malloc_and_point((float**)&model->lora_grads, lsizes, NUM_LORA_TENSORS);
        model->num_lora_parameters = model->lora_info[0].size + model->lora_info[1].size;
        // kaiming_uniform_(a=sqrt(5)) on (r, C): bound = gain * sqrt(3 / fan_in) = 1 / sqrt(C)
        float bound = 1.0f / sqrtf((float)cfg->C);
        uint64_t stream = dropout_stream(model->seed, 0xffffffffULL, 0xffff);
        for (size_t i = 0; i < model->lora_info[0].size; i++) {
            model->lora.lora_a[i] = (2.0f * dropout_uniform(stream, i) - 1.0f) * bound;
        }
        ntrain += model->num_lora_parameters;
    }
    model->m_memory = (float*)callocCheck(ntrain, sizeof(float));
    model->v_memory = (float*)callocCheck(ntrain, sizeof(float));
    model->step = 0;
}

size_t bert_num_trainable(const Bert* model) {
    size_t n = model->num_lora_parameters;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { if (model->param_info[i].trainable) { n += model->param_info[i].size; } }
    return n;
}

// activations and scratch for batches up to (B_max, T_max)
void bert_alloc_activations(Bert* model, int B_max, int T_max) {
    const BertConfig* cfg = &model->config;
    size_t B = B_max, T = T_max, C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC;
    size_t r = model->strategy == STRATEGY_LORA ? model->lora_r : 0;
    model->B_max = B_max;
    model->T_max = T_max;
    // in the order of ActivationTensors
    size_t a[NUM_ACTIVATION_TENSORS] = {
        B * T * C, B * T, B * T, (L + 1) * B * T * C, L * B * T * 3 * C, L * B * NH * T * T, L * B * T * C,
        L * B * T * C, L * B * T * C, L * B * T, L * B * T, L * B * T * FF, L * B * T * FF, L * B * T * C,
        L * B * T, L * B * T, L * 3 * B * T * r, B * C, B * C, B * C, B * NC, B * NC, B};
    model->acts_memory = malloc_and_point((float**)&model->acts, a, NUM_ACTIVATION_TENSORS);
    // in the order of ScratchTensors
    size_t wmax = (3 * C > FF ? 3 * C : FF) * (C > FF ? C : FF);
    size_t s[NUM_SCRATCH_TENSORS] = {
        wmax, B * T * C, B * T * C, B * T * C, B * T * C, B * T * C, B * T * 3 * C, B * T * FF, B * T * C,
        B * T * r, 4 * B * C, B * NC};
    model->scratch_memory = malloc_and_point((float**)&model->scratch, s, NUM_SCRATCH_TENSORS);
    model->ids = (int*)mallocCheck(B * T * sizeof(int));
    model->lengths = (int*)mallocCheck(B * sizeof(int));
    model->labels = (int*)mallocCheck(B * sizeof(int));
}

// dropout sites: a fixed number per layer plus the embedding and classifier ones
enum { SITE_ATT = 0, SITE_ATTPROJ, SITE_FCPROJ, SITE_LORA_Q, SITE_LORA_K, SITE_LORA_V, SITES_PER_LAYER };
static inline uint64_t bert_stream(const Bert* model, int layer, int site) {
    // layer -1: embeddings, layer L: classifier
    return dropout_stream(model->seed, (uint64_t)model->step, (uint64_t)(layer + 1) * SITES_PER_LAYER + site);
}

// ----------------------------------------------------------------------------
// forward, backward, update

// the slice of layer l of a (L, n) tensor; NULL stays NULL (a frozen tensor's gradient)
#define LAYER_(ptr, l, n) ((ptr) != NULL ? (ptr) + (size_t)(l) * (n) : NULL)

// Forward pass over the batch in model->ids / lengths (B, T). With labels, also the
// mean cross-entropy in model->mean_loss. train = 1 turns dropout on.
void bert_forward(Bert* model, int B, int T, const int* labels, int train) {
    const BertConfig* cfg = &model->config;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    int r = model->lora_r;
    if (B > model->B_max || T > model->T_max) {
        fprintf(stderr, "Error: batch (%d, %d) exceeds the allocated (%d, %d)\n", B, T, model->B_max, model->T_max);
        exit(EXIT_FAILURE);
    }
    model->B = B;
    model->T = T;
    float p = train ? model->dropout : 0.0f;
    float plora = train ? model->lora_dropout : 0.0f;
    float lora_scale = model->strategy == STRATEGY_LORA ? model->lora_alpha / r : 0.0f;
    ParameterTensors w = model->params;
    ActivationTensors a = model->acts;
    ScratchTensors s = model->scratch;
    size_t BTC = (size_t)BT * C;

    embedding_forward(a.encoded, model->ids, w.wte, w.wpe, w.wtt, B, T, C);
    layernorm_forward(a.hs, a.emb_mean, a.emb_rstd, a.encoded, w.embln_w, w.embln_b, BT, C, cfg->eps);
    dropout_forward(a.hs, a.hs, NULL, BTC, p, bert_stream(model, -1, 0));
    for (int l = 0; l < L; l++) {
        float* x = a.hs + l * BTC;
        float* qkv = a.qkv + l * BTC * 3;
        float* atty = a.atty + l * BTC;
        float* r1 = a.r1 + l * BTC;
        float* ln1 = a.ln1 + l * BTC;
        float* fch = a.fch + (size_t)l * BT * FF;
        float* fch_gelu = a.fch_gelu + (size_t)l * BT * FF;
        float* r2 = a.r2 + l * BTC;
        matmul_forward(qkv, x, LAYER_(w.qkvw, l, 3 * C * C), LAYER_(w.qkvb, l, 3 * C), s.wt, BT, C, 3 * C);
        if (model->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_forward(qkv + j * C, 3 * C, a.lora_u + lj * BT * r, s.xd, x, model->lora.lora_a + lj * r * C,
                             model->lora.lora_b + lj * C * r, BT, C, C, r, lora_scale, plora, bert_stream(model, l, SITE_LORA_Q + j));
            }
        }
        attention_forward(atty, a.att + (size_t)l * B * NH * T * T, qkv, model->lengths, B, T, C, NH, p, bert_stream(model, l, SITE_ATT));
        matmul_forward(s.tmp, atty, LAYER_(w.attprojw, l, C * C), LAYER_(w.attprojb, l, C), s.wt, BT, C, C);
        dropout_forward(r1, s.tmp, x, BTC, p, bert_stream(model, l, SITE_ATTPROJ));
        layernorm_forward(ln1, a.ln1_mean + l * BT, a.ln1_rstd + l * BT, r1, LAYER_(w.ln1w, l, C), LAYER_(w.ln1b, l, C), BT, C, cfg->eps);
        matmul_forward(fch, ln1, LAYER_(w.fcw, l, FF * C), LAYER_(w.fcb, l, FF), s.wt, BT, C, FF);
        gelu_forward(fch_gelu, fch, (size_t)BT * FF);
        matmul_forward(s.tmp, fch_gelu, LAYER_(w.fcprojw, l, C * FF), LAYER_(w.fcprojb, l, C), s.wt, BT, FF, C);
        dropout_forward(r2, s.tmp, ln1, BTC, p, bert_stream(model, l, SITE_FCPROJ));
        layernorm_forward(x + BTC, a.ln2_mean + l * BT, a.ln2_rstd + l * BT, r2, LAYER_(w.ln2w, l, C), LAYER_(w.ln2b, l, C), BT, C, cfg->eps);
    }
    pooler_forward(a.pooled, a.cls, a.hs + L * BTC, w.poolw, w.poolb, s.wt, B, T, C);
    dropout_forward(a.pooled_d, a.pooled, NULL, (size_t)B * C, p, bert_stream(model, L, 0));
    matmul_forward(a.logits, a.pooled_d, w.clsw, w.clsb, s.wt, B, C, NC);
    if (labels != NULL) {
        memcpy(model->labels, labels, B * sizeof(int));
        model->mean_loss = crossentropy_forward(a.losses, a.probs, a.logits, labels, B, NC);
    }
}

void bert_zero_grad(Bert* model) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        float* g = ((float**)&model->grads)[i];
        if (g != NULL) { memset(g, 0, model->param_info[i].size * sizeof(float)); }
    }
    if (model->lora_grads_memory != NULL) { memset(model->lora_grads_memory, 0, model->num_lora_parameters * sizeof(float)); }
}

// Backward pass of the last training forward; accumulates into the gradients of
// what trains. Frozen tensors get no gradient, and no work is done below the
// lowest trainable tensor (classifier only: none below the classifier).
void bert_backward(Bert* model) {
    const BertConfig* cfg = &model->config;
    int B = model->B, T = model->T;
    int C = cfg->C, L = cfg->L, NH = cfg->NH, FF = cfg->FF, NC = cfg->NC, BT = B * T;
    int r = model->lora_r;
    float p = model->dropout, plora = model->lora_dropout;
    float lora_scale = model->strategy == STRATEGY_LORA ? model->lora_alpha / r : 0.0f;
    ParameterTensors w = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    ScratchTensors s = model->scratch;
    size_t BTC = (size_t)BT * C;

    crossentropy_backward(s.dlogits, a.probs, model->labels, B, NC);
    if (model->strategy == STRATEGY_FROZEN) {
        matmul_backward(NULL, g.clsw, g.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
        return;
    }
    float* dpooled_d = s.dsmall;
    float* dpooled = s.dsmall + (size_t)B * C;
    memset(s.dsmall, 0, 2 * (size_t)B * C * sizeof(float));
    matmul_backward(dpooled_d, g.clsw, g.clsb, s.dlogits, a.pooled_d, w.clsw, B, C, NC);
    dropout_backward(dpooled, dpooled_d, (size_t)B * C, p, bert_stream(model, L, 0));
    memset(s.dh, 0, BTC * sizeof(float));
    pooler_backward(s.dh, g.poolw, g.poolb, s.dsmall + 2 * (size_t)B * C, s.dsmall + 3 * (size_t)B * C, dpooled,
                    a.pooled, a.cls, w.poolw, B, T, C);
    for (int l = L - 1; l >= 0; l--) {
        float* x = a.hs + l * BTC;
        float* qkv = a.qkv + l * BTC * 3;
        float* atty = a.atty + l * BTC;
        float* r1 = a.r1 + l * BTC;
        float* ln1 = a.ln1 + l * BTC;
        float* fch = a.fch + (size_t)l * BT * FF;
        float* fch_gelu = a.fch_gelu + (size_t)l * BT * FF;
        float* r2 = a.r2 + l * BTC;
        // hs[l+1] = LN2(r2)
        memset(s.dr, 0, BTC * sizeof(float));
        layernorm_backward(s.dr, LAYER_(g.ln2w, l, C), LAYER_(g.ln2b, l, C), s.dh, r2, LAYER_(w.ln2w, l, C),
                           a.ln2_mean + l * BT, a.ln2_rstd + l * BT, BT, C);
        // r2 = dropout(fch_gelu @ fcprojw^T + fcprojb) + ln1
        memcpy(s.dln1, s.dr, BTC * sizeof(float));
        memset(s.tmp, 0, BTC * sizeof(float));
        dropout_backward(s.tmp, s.dr, BTC, p, bert_stream(model, l, SITE_FCPROJ));
        memset(s.dfch, 0, (size_t)BT * FF * sizeof(float));
        matmul_backward(s.dfch, LAYER_(g.fcprojw, l, C * FF), LAYER_(g.fcprojb, l, C), s.tmp, fch_gelu,
                        LAYER_(w.fcprojw, l, C * FF), BT, FF, C);
        // fch_gelu = gelu(ln1 @ fcw^T + fcb)
        gelu_backward(s.dfch, fch, s.dfch, (size_t)BT * FF);
        matmul_backward(s.dln1, LAYER_(g.fcw, l, FF * C), LAYER_(g.fcb, l, FF), s.dfch, ln1, LAYER_(w.fcw, l, FF * C), BT, C, FF);
        // ln1 = LN1(r1)
        memset(s.dr, 0, BTC * sizeof(float));
        layernorm_backward(s.dr, LAYER_(g.ln1w, l, C), LAYER_(g.ln1b, l, C), s.dln1, r1, LAYER_(w.ln1w, l, C),
                           a.ln1_mean + l * BT, a.ln1_rstd + l * BT, BT, C);
        // r1 = dropout(atty @ attprojw^T + attprojb) + x: dh now collects d(x)
        memcpy(s.dh, s.dr, BTC * sizeof(float));
        memset(s.tmp, 0, BTC * sizeof(float));
        dropout_backward(s.tmp, s.dr, BTC, p, bert_stream(model, l, SITE_ATTPROJ));
        memset(s.datty, 0, BTC * sizeof(float));
        matmul_backward(s.datty, LAYER_(g.attprojw, l, C * C), LAYER_(g.attprojb, l, C), s.tmp, atty,
                        LAYER_(w.attprojw, l, C * C), BT, C, C);
        // atty = attention(qkv)
        memset(s.dqkv, 0, BTC * 3 * sizeof(float));
        attention_backward(s.dqkv, s.datty, qkv, a.att + (size_t)l * B * NH * T * T, model->lengths, B, T, C, NH, p,
                           bert_stream(model, l, SITE_ATT));
        // qkv = x @ qkvw^T + qkvb (+ LoRA); below layer 0 only the full strategy needs d(x)
        float* dx = (l > 0 || model->strategy == STRATEGY_FULL) ? s.dh : NULL;
        matmul_backward(dx, LAYER_(g.qkvw, l, 3 * C * C), LAYER_(g.qkvb, l, 3 * C), s.dqkv, x, LAYER_(w.qkvw, l, 3 * C * C), BT, C, 3 * C);
        if (model->strategy == STRATEGY_LORA) {
            for (int j = 0; j < 3; j++) {
                size_t lj = (size_t)l * 3 + j;
                lora_backward(dx, model->lora_grads.lora_a + lj * r * C, model->lora_grads.lora_b + lj * C * r, s.du, s.xd,
                              s.dqkv + j * C, 3 * C, a.lora_u + lj * BT * r, x, model->lora.lora_a + lj * r * C,
                              model->lora.lora_b + lj * C * r, BT, C, C, r, lora_scale, plora, bert_stream(model, l, SITE_LORA_Q + j));
            }
        }
    }
    if (model->strategy != STRATEGY_FULL) { return; }
    // hs[0] = dropout(LN(encoded))
    memset(s.dr, 0, BTC * sizeof(float));
    dropout_backward(s.dr, s.dh, BTC, p, bert_stream(model, -1, 0));
    memset(s.tmp, 0, BTC * sizeof(float));
    layernorm_backward(s.tmp, g.embln_w, g.embln_b, s.dr, a.encoded, w.embln_w, a.emb_mean, a.emb_rstd, BT, C);
    embedding_backward(g.wte, g.wpe, g.wtt, s.tmp, model->ids, model->lengths, B, T, C);
}

// the trainable tensors as flat (param, grad, size, decay) rows, base model first, then LoRA
typedef struct { float* param; float* grad; size_t size; int decay; } OptTensor;

static int bert_opt_tensors_(Bert* model, OptTensor* out) {
    int n = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (!model->param_info[i].trainable) { continue; }
        OptTensor t = {((float**)&model->params)[i], ((float**)&model->grads)[i], model->param_info[i].size, model->param_info[i].decay};
        out[n++] = t;
    }
    if (model->strategy == STRATEGY_LORA) {
        for (int i = 0; i < NUM_LORA_TENSORS; i++) {
            OptTensor t = {((float**)&model->lora)[i], ((float**)&model->lora_grads)[i], model->lora_info[i].size, model->lora_info[i].decay};
            out[n++] = t;
        }
    }
    return n;
}

// global L2 norm of the trainable gradients, as torch.nn.utils.clip_grad_norm_ computes it
float bert_grad_norm(Bert* model) {
    OptTensor t[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    int n = bert_opt_tensors_(model, t);
    double sumsq = 0.0;
    for (int k = 0; k < n; k++) {
        double s = 0.0;
        #pragma omp parallel for reduction(+:s)
        for (size_t i = 0; i < t[k].size; i++) { s += (double)t[k].grad[i] * t[k].grad[i]; }
        sumsq += s;
    }
    return (float)sqrt(sumsq);
}

// One optimizer step: clip the global gradient norm to max_norm (clip_grad_norm_),
// then torch.optim.AdamW (decoupled weight decay, bias correction). Returns the norm before clipping.
float bert_update(Bert* model, float lr, float beta1, float beta2, float eps, float weight_decay, float max_norm) {
    OptTensor t[NUM_PARAMETER_TENSORS + NUM_LORA_TENSORS];
    int n = bert_opt_tensors_(model, t);
    float norm = bert_grad_norm(model);
    // clip_coef = max_norm / (norm + 1e-6), clamped to 1: multiplying by 1 changes nothing, so skip it
    float clip = max_norm > 0.0f ? max_norm / (norm + 1e-6f) : 1.0f;
    model->step++;
    // bias corrections in double, as torch computes them from Python floats
    double bc1 = 1.0 - pow(beta1, model->step);
    double bc2 = 1.0 - pow(beta2, model->step);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    size_t offset = 0;
    for (int k = 0; k < n; k++) {
        float* param = t[k].param;
        float* grad = t[k].grad;
        float* m = model->m_memory + offset;
        float* v = model->v_memory + offset;
        float wd = t[k].decay ? weight_decay : 0.0f;
        #pragma omp parallel for
        for (size_t i = 0; i < t[k].size; i++) {
            float gi = clip < 1.0f ? grad[i] * clip : grad[i];
            param[i] *= 1.0f - lr * wd;
            m[i] += (1.0f - beta1) * (gi - m[i]);          // exp_avg.lerp_(grad, 1 - beta1)
            v[i] = v[i] * beta2 + (1.0f - beta2) * gi * gi; // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            param[i] -= step_size * m[i] / denom;
        }
        offset += t[k].size;
    }
    return norm;
}

// linear schedule (get_linear_schedule_with_warmup): the lr of the update at 0-based step
float lr_at_step(float lr, int step, int warmup, int total) {
    if (step < warmup) { return lr * (float)step / (float)warmup; }
    float frac = (float)(total - step) / (float)(total - warmup > 0 ? total - warmup : 1);
    return lr * (frac > 0.0f ? frac : 0.0f);
}

void bert_free(Bert* model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->lora_memory);
    free(model->lora_grads_memory);
    free(model->acts_memory);
    free(model->scratch_memory);
    free(model->ids);
    free(model->lengths);
    free(model->labels);
}

// ----------------------------------------------------------------------------
// checkpoints: the model file layout, header[14] = 1, then the LoRA tensors if any.
// Written to a temp file and renamed, so a crash never leaves half a checkpoint.

#define CHECKPOINT_KIND 1

void bert_save_checkpoint(const Bert* model, const char* path, int epoch) {
    const BertConfig* cfg = &model->config;
    int32_t header[HEADER_INTS] = {0};
    header[0] = MODEL_MAGIC; header[1] = MODEL_VERSION;
    header[2] = cfg->V; header[3] = cfg->P; header[4] = cfg->TV; header[5] = cfg->C; header[6] = cfg->L;
    header[7] = cfg->NH; header[8] = cfg->FF; header[9] = cfg->NC; header[10] = float_to_bits_(cfg->eps);
    header[11] = 1; header[12] = cfg->pad_id; header[13] = cfg->lower;
    header[14] = CHECKPOINT_KIND;
    header[15] = model->strategy;
    header[16] = model->strategy == STRATEGY_LORA ? model->lora_r : 0;
    header[17] = float_to_bits_(model->lora_alpha);
    header[18] = epoch;
    header[19] = model->step;
    memcpy(&header[32], cfg->name, 256);
    char tmp[4096];
    FILE* fp = atomic_open_(path, tmp, sizeof(tmp));
    fwriteCheck(header, sizeof(int32_t), HEADER_INTS, fp, tmp);
    fwriteCheck(model->params_memory, sizeof(float), model->num_parameters, fp, tmp);
    if (model->strategy == STRATEGY_LORA) { fwriteCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, tmp); }
    atomic_commit_(fp, tmp, path);
}

// load a checkpoint written by bert_save_checkpoint into a model of the same config and strategy
void bert_load_checkpoint(Bert* model, const char* path) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t header[HEADER_INTS];
    long fsize = file_size_(fp);
    size_t want = sizeof(header) + (model->num_parameters + model->num_lora_parameters) * sizeof(float);
    if (fsize != (long)want) {
        fprintf(stderr, "Error: checkpoint %s has %ld bytes, this model and strategy need %zu\n", path, fsize, want);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int32_t), HEADER_INTS, fp, path);
    const BertConfig* cfg = &model->config;
    if (header[0] != MODEL_MAGIC || header[1] != MODEL_VERSION || header[14] != CHECKPOINT_KIND ||
        header[15] != model->strategy || header[2] != cfg->V || header[5] != cfg->C || header[6] != cfg->L ||
        header[9] != cfg->NC || (model->strategy == STRATEGY_LORA && header[16] != model->lora_r)) {
        fprintf(stderr, "Error: %s is not a %s checkpoint of this model (magic %d, version %d, kind %d, strategy %d)\n",
                path, STRATEGY_NAMES[model->strategy], header[0], header[1], header[14], header[15]);
        exit(EXIT_FAILURE);
    }
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    if (model->strategy == STRATEGY_LORA) { freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path); }
    fcloseCheck(fp, path);
}

// Build a model for inference from a checkpoint alone: the strategy, LoRA rank and alpha
// come from its header. No gradients or optimizer state are allocated.
void bert_build_from_checkpoint(Bert* model, const char* path) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t header[HEADER_INTS];
    if (file_size_(fp) < (long)sizeof(header)) {
        fprintf(stderr, "Error: %s is too small to be a checkpoint\n", path);
        exit(EXIT_FAILURE);
    }
    freadCheck(header, sizeof(int32_t), HEADER_INTS, fp, path);
    if (header[0] != MODEL_MAGIC || header[14] != CHECKPOINT_KIND || header[15] < 0 || header[15] > 2 ||
        (header[15] == STRATEGY_LORA && header[16] < 1)) {
        fprintf(stderr, "Error: %s is not a train_bert checkpoint (magic %d, header[14] %d, strategy %d)\n"
                "---> HINT: pass out/checkpoint_best.bin (or _last) written by ./train_bert\n", path, header[0], header[14], header[15]);
        exit(EXIT_FAILURE);
    }
    model->strategy = header[15];
    model->lora_r = header[16];
    model->lora_alpha = bits_to_float_(header[17]);
    bert_build_from_file(model, path); // checks the size, reads the base parameters
    if (model->strategy == STRATEGY_LORA) {
        fill_in_lora_sizes(model->lora_info, &model->config, model->lora_r);
        size_t lsizes[NUM_LORA_TENSORS];
        table_sizes_(lsizes, model->lora_info, NUM_LORA_TENSORS, 0);
        model->lora_memory = malloc_and_point((float**)&model->lora, lsizes, NUM_LORA_TENSORS);
        model->num_lora_parameters = lsizes[0] + lsizes[1];
        fseek(fp, (long)(sizeof(header) + model->num_parameters * sizeof(float)), SEEK_SET);
        freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path);
    }
    fcloseCheck(fp, path);
}

// ----------------------------------------------------------------------------
// data: a tokenized split, and a loader that shuffles and pads per batch

typedef struct {
    int N;          // examples
    int T_max;      // longest example, [CLS] and [SEP] included
    int NC;         // labels
    int V;          // vocabulary of the tokenizer
    int* lengths;   // (N)
    int* labels;    // (N)
    int* ids;       // (sum of lengths) examples back to back, no padding
    size_t* starts; // (N) where each example begins in ids
} Dataset;

// read and validate a split written by prepro_emotion.py against the model's config
void dataset_load(Dataset* ds, const char* path, const BertConfig* cfg) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t header[HEADER_INTS];
    long fsize = header_read_(fp, path, header, SPLIT_MAGIC, SPLIT_VERSION, "split file", "re-run `python prepro_emotion.py`");
    ds->N = header[2]; ds->T_max = header[3]; ds->NC = header[4]; ds->V = header[5];
    long ntok = header[6];
    long want = (long)sizeof(header) + (2L * ds->N + ntok) * (long)sizeof(int32_t);
    if (ds->N <= 0 || ntok <= 0 || fsize != want) {
        fprintf(stderr, "Error: split file %s has %ld bytes, its header (N %d, tokens %ld) says %ld\n---> HINT: re-run `python prepro_emotion.py`\n",
                path, fsize, ds->N, ntok, want);
        exit(EXIT_FAILURE);
    }
    if (ds->V != cfg->V || ds->NC != cfg->NC) {
        fprintf(stderr, "Error: split file %s was made for V %d and %d labels; the model has V %d and %d labels\n---> HINT: re-run `python prepro_emotion.py` with the same --model\n",
                path, ds->V, ds->NC, cfg->V, cfg->NC);
        exit(EXIT_FAILURE);
    }
    if (ds->T_max > cfg->P) {
        fprintf(stderr, "Error: split file %s has examples of %d tokens; the model has %d positions\n", path, ds->T_max, cfg->P);
        exit(EXIT_FAILURE);
    }
    ds->lengths = (int*)mallocCheck(ds->N * sizeof(int));
    ds->labels = (int*)mallocCheck(ds->N * sizeof(int));
    ds->ids = (int*)mallocCheck(ntok * sizeof(int));
    ds->starts = (size_t*)mallocCheck(ds->N * sizeof(size_t));
    freadCheck(ds->lengths, sizeof(int), ds->N, fp, path);
    freadCheck(ds->labels, sizeof(int), ds->N, fp, path);
    freadCheck(ds->ids, sizeof(int), ntok, fp, path);
    fcloseCheck(fp, path);
    long sum = 0;
    for (int n = 0; n < ds->N; n++) {
        if (ds->lengths[n] < 1 || ds->lengths[n] > ds->T_max) {
            fprintf(stderr, "Error: split file %s: example %d has length %d (T_max %d)\n", path, n, ds->lengths[n], ds->T_max);
            exit(EXIT_FAILURE);
        }
        if (ds->labels[n] < 0 || ds->labels[n] >= ds->NC) {
            fprintf(stderr, "Error: split file %s: example %d has label %d (NC %d)\n", path, n, ds->labels[n], ds->NC);
            exit(EXIT_FAILURE);
        }
        ds->starts[n] = sum;
        sum += ds->lengths[n];
    }
    if (sum != ntok) {
        fprintf(stderr, "Error: split file %s: lengths add up to %ld tokens, the header says %ld\n", path, sum, ntok);
        exit(EXIT_FAILURE);
    }
    for (long i = 0; i < ntok; i++) {
        if (ds->ids[i] < 0 || ds->ids[i] >= cfg->V) {
            fprintf(stderr, "Error: split file %s: token %ld has id %d, outside the vocabulary [0, %d)\n", path, i, ds->ids[i], cfg->V);
            exit(EXIT_FAILURE);
        }
    }
}

void dataset_free(Dataset* ds) {
    free(ds->lengths);
    free(ds->labels);
    free(ds->ids);
    free(ds->starts);
}

typedef struct {
    const Dataset* ds;
    int B;          // batch size; the last batch of an epoch may be smaller
    int* order;     // (N) the visiting order of this epoch
    int pos;        // next position in order
    uint64_t seed;
} DataLoader;

void loader_init(DataLoader* loader, const Dataset* ds, int B, uint64_t seed) {
    loader->ds = ds;
    loader->B = B;
    loader->seed = seed;
    loader->order = (int*)mallocCheck(ds->N * sizeof(int));
    for (int n = 0; n < ds->N; n++) { loader->order[n] = n; }
    loader->pos = 0;
}

// start an epoch: in order (shuffle == 0, evaluation) or in a Fisher-Yates shuffle
// that depends only on (seed, epoch), so a run is reproducible epoch by epoch
void loader_start_epoch(DataLoader* loader, int epoch, int shuffle) {
    int N = loader->ds->N;
    for (int n = 0; n < N; n++) { loader->order[n] = n; }
    if (shuffle) {
        uint64_t stream = dropout_stream(loader->seed, (uint64_t)epoch, 0xfffe);
        for (int i = N - 1; i > 0; i--) {
            int j = (int)(((unsigned __int128)mix64_(stream + i) * (unsigned)(i + 1)) >> 64);
            int tmp = loader->order[i]; loader->order[i] = loader->order[j]; loader->order[j] = tmp;
        }
    }
    loader->pos = 0;
}

// Fill the next batch, padded to its own longest example: ids (B, T) with the pad id,
// lengths (B), labels (B). Returns 0 when the epoch is over.
int loader_next_batch(DataLoader* loader, int* ids, int* lengths, int* labels, int pad_id, int* B_out, int* T_out) {
    const Dataset* ds = loader->ds;
    int B = ds->N - loader->pos < loader->B ? ds->N - loader->pos : loader->B;
    if (B <= 0) { return 0; }
    int T = 0;
    for (int b = 0; b < B; b++) {
        int n = loader->order[loader->pos + b];
        if (ds->lengths[n] > T) { T = ds->lengths[n]; }
    }
    for (int b = 0; b < B; b++) {
        int n = loader->order[loader->pos + b];
        lengths[b] = ds->lengths[n];
        labels[b] = ds->labels[n];
        for (int t = 0; t < T; t++) { ids[b * T + t] = t < ds->lengths[n] ? ds->ids[ds->starts[n] + t] : pad_id; }
    }
    loader->pos += B;
    *B_out = B;
    *T_out = T;
    return 1;
}

void loader_free(DataLoader* loader) { free(loader->order); }

// ----------------------------------------------------------------------------
// metrics: accuracy and support-weighted precision / recall / F1, as scikit-learn's
// precision_recall_fscore_support(average="weighted", zero_division=0)

typedef struct {
    float loss;      // mean cross-entropy per example
    float accuracy;
    float precision; // weighted by support
    float recall;
    float f1;
    int NC;
    int* confusion;  // (NC, NC) rows: true label, columns: prediction
    float* class_precision; // (NC)
    float* class_recall;    // (NC)
    float* class_f1;        // (NC)
    int* support;           // (NC)
} Metrics;

void metrics_init(Metrics* m, int NC) {
    memset(m, 0, sizeof(*m));
    m->NC = NC;
    m->confusion = (int*)callocCheck((size_t)NC * NC, sizeof(int));
    m->class_precision = (float*)callocCheck(NC, sizeof(float));
    m->class_recall = (float*)callocCheck(NC, sizeof(float));
    m->class_f1 = (float*)callocCheck(NC, sizeof(float));
    m->support = (int*)callocCheck(NC, sizeof(int));
}

void metrics_free(Metrics* m) {
    free(m->confusion); free(m->class_precision); free(m->class_recall); free(m->class_f1); free(m->support);
}

void metrics_compute(Metrics* m, const int* preds, const int* labels, int N) {
    int NC = m->NC;
    memset(m->confusion, 0, (size_t)NC * NC * sizeof(int));
    for (int n = 0; n < N; n++) { m->confusion[labels[n] * NC + preds[n]]++; }
    int correct = 0;
    double precision = 0.0, recall = 0.0, f1 = 0.0;
    for (int c = 0; c < NC; c++) {
        int tp = m->confusion[c * NC + c], support = 0, predicted = 0;
        for (int k = 0; k < NC; k++) { support += m->confusion[c * NC + k]; predicted += m->confusion[k * NC + c]; }
        correct += tp;
        m->support[c] = support;
        // zero_division = 0: an empty denominator scores 0
        m->class_precision[c] = predicted > 0 ? (float)tp / predicted : 0.0f;
        m->class_recall[c] = support > 0 ? (float)tp / support : 0.0f;
        int f1_denom = support + predicted; // 2 tp + fp + fn
        m->class_f1[c] = f1_denom > 0 ? 2.0f * tp / f1_denom : 0.0f;
        precision += (double)m->class_precision[c] * support;
        recall += (double)m->class_recall[c] * support;
        f1 += (double)m->class_f1[c] * support;
    }
    m->accuracy = (float)correct / N;
    m->precision = (float)(precision / N);
    m->recall = (float)(recall / N);
    m->f1 = (float)(f1 / N);
}

static const char* LABEL_NAMES[] = {"sadness", "joy", "love", "anger", "fear", "surprise"};
static const char* label_name(int c, int NC) {
    static char buf[32];
    if (NC == 6) { return LABEL_NAMES[c]; }
    snprintf(buf, sizeof(buf), "label %d", c);
    return buf;
}

// Evaluate on a whole split in order, dropout off. Slow-ish, but only once per epoch.
void bert_evaluate(Bert* model, const Dataset* ds, int B, Metrics* m) {
    DataLoader loader;
    loader_init(&loader, ds, B, 0);
    loader_start_epoch(&loader, 0, 0);
    int* preds = (int*)mallocCheck(ds->N * sizeof(int));
    int* labels = (int*)mallocCheck(ds->N * sizeof(int));
    int Bb, T, n = 0;
    double loss = 0.0;
    int NC = model->config.NC;
    while (loader_next_batch(&loader, model->ids, model->lengths, labels + n, model->config.pad_id, &Bb, &T)) {
        bert_forward(model, Bb, T, labels + n, 0);
        loss += (double)model->mean_loss * Bb;
        for (int b = 0; b < Bb; b++) {
            const float* z = model->acts.logits + (size_t)b * NC;
            int best = 0;
            for (int c = 1; c < NC; c++) { if (z[c] > z[best]) { best = c; } }
            preds[n + b] = best;
        }
        n += Bb;
    }
    metrics_compute(m, preds, labels, ds->N);
    m->loss = (float)(loss / ds->N);
    free(preds);
    free(labels);
    loader_free(&loader);
}

void metrics_print_report(const Metrics* m, const char* split) {
    int NC = m->NC;
    printf("%s | loss %.4f | acc %.4f | precision %.4f | recall %.4f | F1 (weighted) %.4f\n",
           split, m->loss, m->accuracy, m->precision, m->recall, m->f1);
    printf("%-10s %9s %9s %9s %8s\n", "class", "precision", "recall", "F1", "support");
    for (int c = 0; c < NC; c++) {
        printf("%-10s %9.4f %9.4f %9.4f %8d\n", label_name(c, NC), m->class_precision[c], m->class_recall[c], m->class_f1[c], m->support[c]);
    }
    printf("confusion matrix (rows: true label, columns: predicted)\n%-10s", "");
    for (int c = 0; c < NC; c++) { printf(" %8.8s", label_name(c, NC)); }
    printf("\n");
    for (int r = 0; r < NC; r++) {
        printf("%-10s", label_name(r, NC));
        for (int c = 0; c < NC; c++) { printf(" %8d", m->confusion[r * NC + c]); }
        printf("\n");
    }
}

// Early stopping as the Trainer's EarlyStoppingCallback with metric_for_best_model f1:
// a strictly higher F1 is an improvement; stop after `patience` epochs without one.
typedef struct {
    int patience;
    int has_best;
    float best_f1;
    int best_epoch;
    int bad_epochs;
} EarlyStopping;

// returns 1 if this epoch is the new best
int early_stopping_update(EarlyStopping* es, float f1, int epoch) {
    if (!es->has_best || f1 > es->best_f1) {
        es->has_best = 1;
        es->best_f1 = f1;
        es->best_epoch = epoch;
        es->bad_epochs = 0;
        return 1;
    }
    es->bad_epochs++;
    return 0;
}

int early_stopping_should_stop(const EarlyStopping* es) { return es->patience > 0 && es->bad_epochs >= es->patience; }

// ----------------------------------------------------------------------------
// TensorBoard event files, written by hand: a TFRecord stream of Event protobufs.
// https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/util/event.proto
// Each record is: uint64 length, uint32 masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes.

// CRC-32C (Castagnoli), bit by bit: slow, but the records are a few dozen bytes
uint32_t crc32c(const uint8_t* data, size_t n) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) { crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u))); }
    }
    return crc ^ 0xffffffffu;
}

// TFRecord's masking, so that a CRC of data containing CRCs stays well distributed
static uint32_t crc32c_masked_(const uint8_t* data, size_t n) {
    uint32_t crc = crc32c(data, n);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// protobuf wire format: varints, and (field << 3 | wire type) keys
static size_t pb_varint_(uint8_t* out, uint64_t x) {
    size_t n = 0;
    while (x >= 0x80) { out[n++] = (uint8_t)(x | 0x80); x >>= 7; }
    out[n++] = (uint8_t)x;
    return n;
}
static size_t pb_bytes_(uint8_t* out, int field, const void* data, size_t len) { // wire type 2
    size_t n = pb_varint_(out, (uint64_t)field << 3 | 2);
    n += pb_varint_(out + n, len);
    memcpy(out + n, data, len);
    return n + len;
}

typedef struct {
    FILE* fp;
    char path[4096];
} EventWriter;

static void events_write_record_(EventWriter* w, const uint8_t* data, size_t len) {
    uint8_t head[12];
    uint64_t len64 = len;
    memcpy(head, &len64, 8); // little-endian, as every file here
    uint32_t crc = crc32c_masked_(head, 8);
    memcpy(head + 8, &crc, 4);
    fwriteCheck(head, 1, 12, w->fp, w->path);
    fwriteCheck(data, 1, len, w->fp, w->path);
    crc = crc32c_masked_(data, len);
    fwriteCheck(&crc, 4, 1, w->fp, w->path);
    fflush(w->fp);
}

// Event { double wall_time = 1; int64 step = 2; oneof { string file_version = 3; Summary summary = 5; SessionLog session_log = 7; } }
static size_t event_head_(uint8_t* out, double wall_time, int64_t step) {
    size_t n = 0;
    out[n++] = 1 << 3 | 1; // wall_time, fixed64
    memcpy(out + n, &wall_time, 8);
    n += 8;
    out[n++] = 2 << 3 | 0; // step, varint
    return n + pb_varint_(out + n, (uint64_t)step);
}

static double wall_time_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// a new events.out.tfevents.<seconds>.<pid> file in dir, starting with the file_version event
void events_open(EventWriter* w, const char* dir) {
    snprintf(w->path, sizeof(w->path), "%s/events.out.tfevents.%ld.bert_c.%ld", dir, (long)time(NULL), (long)getpid());
    fopenCheck(&w->fp, w->path, "wb");
    uint8_t buf[64];
    size_t n = event_head_(buf, wall_time_(), 0);
    n += pb_bytes_(buf + n, 3, "brain.Event:2", 13);
    events_write_record_(w, buf, n);
}

// Summary { repeated Value value = 1; }, Value { string tag = 1; float simple_value = 2; }
void events_add_scalar(EventWriter* w, const char* tag, int64_t step, float value) {
    uint8_t val[320], summary[340], buf[400];
    size_t tag_len = strlen(tag) < 256 ? strlen(tag) : 256;
    size_t nv = pb_bytes_(val, 1, tag, tag_len);
    val[nv++] = 2 << 3 | 5; // simple_value, fixed32
    memcpy(val + nv, &value, 4);
    nv += 4;
    size_t ns = pb_bytes_(summary, 1, val, nv);
    size_t n = event_head_(buf, wall_time_(), step);
    n += pb_bytes_(buf + n, 5, summary, ns);
    events_write_record_(w, buf, n);
}

// SessionLog { status = START (1) }: TensorBoard then drops what an earlier, interrupted
// run logged at steps >= step (EventAccumulator's purge_orphaned_data), as TF does on restart
void events_add_restart(EventWriter* w, int64_t step) {
    uint8_t buf[64], slog[2] = {1 << 3 | 0, 1};
    size_t n = event_head_(buf, wall_time_(), step);
    n += pb_bytes_(buf + n, 7, slog, 2);
    events_write_record_(w, buf, n);
}

void events_close(EventWriter* w) { fcloseCheck(w->fp, w->path); }

// ----------------------------------------------------------------------------
// resumable training state (README.md, "File formats", "Training state"): everything a run needs to
// continue bit for bit. Dropout masks depend on (seed, step) and the shuffle on (seed, epoch),
// so besides weights and AdamW moments the state is a few counters.

#define TRAIN_STATE_MAGIC 20261131
#define TRAIN_STATE_VERSION 1   // version 1: the first layout
#define HISTORY_INTS 10         // one per-epoch row in the state file

typedef struct {
    int epoch;
    int step;        // optimizer steps at the end of the epoch
    float train_loss;
    Metrics val;
    double seconds;
    int best;
} EpochResult;

typedef struct {
    int epoch;       // the epoch in progress, 1-based
    int pos;         // examples of it already trained on (the loader's position)
    int nsteps;      // steps of it so far
    double loss_sum; // sum of their losses, for the epoch's mean train loss
    int done;        // training has ended (max steps or early stopping); only the test split remains
} TrainProgress;

// the settings a state only resumes under; header ints [20..32]
#define NUM_TRAIN_SETTINGS 13
typedef struct {
    int32_t v[NUM_TRAIN_SETTINGS]; // floats as their bits
} TrainSettings;
static const char* TRAIN_SETTING_NAMES[NUM_TRAIN_SETTINGS] = {"strategy (-s)", "seed (-r)", "batch size (-b)", "epochs (-e)",
    "number of train examples", "LoRA rank (-k)", "learning rate (-l)", "warmup (-u)", "weight decay (-w)", "max grad norm (-g)",
    "dropout (-q)", "LoRA alpha (-a)", "LoRA dropout (-z)"};

// Written to path.tmp and renamed, so a kill at any moment leaves the previous state or the new one.
void train_state_save(const char* path, const Bert* model, const TrainSettings* set, const TrainProgress* pr,
                      const EarlyStopping* es, const EpochResult* history, int nhistory) {
    int32_t h[HEADER_INTS] = {0};
    size_t ntrain = bert_num_trainable(model);
    h[0] = TRAIN_STATE_MAGIC; h[1] = TRAIN_STATE_VERSION;
    h[2] = model->step; h[3] = pr->epoch; h[4] = pr->pos; h[5] = pr->nsteps; h[6] = pr->done;
    memcpy(&h[7], &pr->loss_sum, 8);
    h[9] = es->has_best; h[10] = float_to_bits_(es->best_f1); h[11] = es->best_epoch; h[12] = es->bad_epochs;
    h[13] = nhistory;
    h[14] = (int32_t)model->num_parameters; h[15] = (int32_t)model->num_lora_parameters; h[16] = (int32_t)ntrain;
    memcpy(&h[20], set->v, sizeof(set->v));
    char tmp[4096];
    FILE* fp = atomic_open_(path, tmp, sizeof(tmp));
    fwriteCheck(h, sizeof(int32_t), HEADER_INTS, fp, tmp);
    fwriteCheck(model->params_memory, sizeof(float), model->num_parameters, fp, tmp);
    if (model->num_lora_parameters > 0) { fwriteCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, tmp); }
    fwriteCheck(model->m_memory, sizeof(float), ntrain, fp, tmp);
    fwriteCheck(model->v_memory, sizeof(float), ntrain, fp, tmp);
    for (int i = 0; i < nhistory; i++) {
        const EpochResult* r = &history[i];
        int32_t row[HISTORY_INTS] = {r->epoch, r->step, r->best, float_to_bits_(r->train_loss), float_to_bits_(r->val.loss),
            float_to_bits_(r->val.accuracy), float_to_bits_(r->val.precision), float_to_bits_(r->val.recall),
            float_to_bits_(r->val.f1), float_to_bits_((float)r->seconds)};
        fwriteCheck(row, sizeof(int32_t), HISTORY_INTS, fp, tmp);
    }
    atomic_commit_(fp, tmp, path);
}

// Read a state into a model set up by bert_init_training with the same settings. Returns the
// per-epoch history (stb_ds list; each row's Metrics has only the weighted numbers).
EpochResult* train_state_load(const char* path, Bert* model, const TrainSettings* set, TrainProgress* pr, EarlyStopping* es) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    long fsize = header_read_(fp, path, h, TRAIN_STATE_MAGIC, TRAIN_STATE_VERSION, "training state",
                              "start afresh without -R, or with another -o");
    for (int i = 0; i < NUM_TRAIN_SETTINGS; i++) {
        if (h[20 + i] != set->v[i]) {
            fprintf(stderr, "Error: %s was written with another %s (%d there, %d now)\n"
                    "---> HINT: resume with the flags of the interrupted run\n", path, TRAIN_SETTING_NAMES[i], h[20 + i], set->v[i]);
            exit(EXIT_FAILURE);
        }
    }
    size_t ntrain = bert_num_trainable(model);
    int nhistory = h[13];
    long want = (long)(sizeof(h) + (model->num_parameters + model->num_lora_parameters + 2 * ntrain) * sizeof(float) +
                       (size_t)nhistory * HISTORY_INTS * sizeof(int32_t));
    if ((size_t)h[14] != model->num_parameters || (size_t)h[15] != model->num_lora_parameters || (size_t)h[16] != ntrain ||
        nhistory < 0 || fsize != want) {
        fprintf(stderr, "Error: training state %s has %ld bytes and %d/%d/%d parameters; this model needs %ld bytes and %zu/%zu/%zu\n",
                path, fsize, h[14], h[15], h[16], want, model->num_parameters, model->num_lora_parameters, ntrain);
        exit(EXIT_FAILURE);
    }
    model->step = h[2];
    pr->epoch = h[3]; pr->pos = h[4]; pr->nsteps = h[5]; pr->done = h[6];
    memcpy(&pr->loss_sum, &h[7], 8);
    es->has_best = h[9]; es->best_f1 = bits_to_float_(h[10]); es->best_epoch = h[11]; es->bad_epochs = h[12];
    freadCheck(model->params_memory, sizeof(float), model->num_parameters, fp, path);
    if (model->num_lora_parameters > 0) { freadCheck(model->lora_memory, sizeof(float), model->num_lora_parameters, fp, path); }
    freadCheck(model->m_memory, sizeof(float), ntrain, fp, path);
    freadCheck(model->v_memory, sizeof(float), ntrain, fp, path);
    EpochResult* history = NULL;
    for (int i = 0; i < nhistory; i++) {
        int32_t row[HISTORY_INTS];
        freadCheck(row, sizeof(int32_t), HISTORY_INTS, fp, path);
        EpochResult r;
        memset(&r, 0, sizeof(r));
        r.epoch = row[0]; r.step = row[1]; r.best = row[2]; r.train_loss = bits_to_float_(row[3]);
        metrics_init(&r.val, model->config.NC);
        r.val.loss = bits_to_float_(row[4]); r.val.accuracy = bits_to_float_(row[5]); r.val.precision = bits_to_float_(row[6]);
        r.val.recall = bits_to_float_(row[7]); r.val.f1 = bits_to_float_(row[8]); r.seconds = bits_to_float_(row[9]);
        arrput(history, r);
    }
    fcloseCheck(fp, path);
    return history;
}

// ----------------------------------------------------------------------------
// main training loop
#ifndef TESTING

// progress within an epoch: redrawn in place on a terminal, a plain line every `every` steps otherwise
static void progress_print_(int tty, int every, int epoch, int done, int total, int examples, double seconds) {
    if (!tty && (every <= 0 || done % every != 0)) { return; }
    double rate = seconds > 0.0 ? examples / seconds : 0.0;
    double eta = done > 0 ? seconds / done * (total - done) : 0.0;
    printf("%sprogress | epoch %d | step %d/%d (%.1f%%) | %.1f examples/s | ETA %02d:%02d:%02d%s", tty ? "\r\033[K" : "",
           epoch, done, total, 100.0 * done / total, rate, (int)eta / 3600, (int)eta / 60 % 60, (int)eta % 60, tty ? "" : "\n");
    fflush(stdout);
}

// Classify mode: one line per text, "label | name prob | ...", dropout off, B = 1, no padding.
// The tokenizer truncates to the model's P positions, as prepro_emotion.py does.
static int classify_main_(const char* ckpt_path, const char* strategy_name, const char* vocab_path, const char* text,
                          int print_logits) {
    Bert model = {0};
    bert_build_from_checkpoint(&model, ckpt_path);
    const BertConfig* cfg = &model.config;
    if (strategy_name != NULL && strcmp(strategy_name, STRATEGY_NAMES[model.strategy]) != 0) {
        fprintf(stderr, "Error: %s is a %s checkpoint, not %s\n", ckpt_path, STRATEGY_NAMES[model.strategy], strategy_name);
        exit(EXIT_FAILURE);
    }
    Tokenizer tok;
    tokenizer_init(&tok, vocab_path, cfg->lower);
    if (tok.V != cfg->V) {
        fprintf(stderr, "Error: vocabulary %s has %d tokens, the model has V %d\n---> HINT: pass the model's vocab.txt with -v\n",
                vocab_path, tok.V, cfg->V);
        exit(EXIT_FAILURE);
    }
    bert_alloc_activations(&model, 1, cfg->P);
    fprintf(stderr, "classify | %s checkpoint %s (%s) | vocab %s\n", STRATEGY_NAMES[model.strategy], ckpt_path, cfg->name, vocab_path);
    int NC = cfg->NC;
    float* probs = (float*)mallocCheck(NC * sizeof(float));
    char* line = NULL;
    size_t cap = 0;
    int from_stdin = strcmp(text, "-") == 0;
    while (1) {
        const char* t = text;
        if (from_stdin) {
            ssize_t n = getline(&line, &cap, stdin);
            if (n < 0) { break; }
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) { line[--n] = '\0'; }
            t = line;
        }
        int T = tokenizer_encode(&tok, t, model.ids, cfg->P);
        model.lengths[0] = T;
        bert_forward(&model, 1, T, NULL, 0);
        const float* z = model.acts.logits;
        int best = 0;
        float maxval = z[0], sum = 0.0f;
        for (int c = 1; c < NC; c++) { if (z[c] > maxval) { maxval = z[c]; best = c; } }
        for (int c = 0; c < NC; c++) { probs[c] = expf(z[c] - maxval); sum += probs[c]; }
        printf("%s", label_name(best, NC));
        for (int c = 0; c < NC; c++) { printf(" | %s %.4f", label_name(c, NC), probs[c] / sum); }
        printf("\n");
        if (print_logits) {
            printf("logits");
            for (int c = 0; c < NC; c++) { printf(" %.9g", z[c]); }
            printf("\n");
        }
        fflush(stdout);
        if (!from_stdin) { break; }
    }
    free(line);
    free(probs);
    tokenizer_free(&tok);
    bert_free(&model);
    return 0;
}

// a missing input file is the usual first-run mistake: say how to make it
static void require_file_(const char* path) {
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "Error: cannot read %s: %s\n---> HINT: run `make data` (python prepro_emotion.py) first\n", path, strerror(errno));
        exit(EXIT_FAILURE);
    }
}

static void usage_(void) {
    fprintf(stderr, "Usage:   ./train_bert [options]\n");
    fprintf(stderr, "Fine-tunes BERT on the emotion dataset; defaults are the Hugging Face Trainer recipe.\n");
    fprintf(stderr, "Options:\n");
    fprintf(stderr, "  -s <string> strategy: full | frozen (classifier only) | lora (default full)\n");
    fprintf(stderr, "  -m <string> model file (default data/model.bin)\n");
    fprintf(stderr, "  -d <string> directory of emotion_{train,validation,test}.bin (default data)\n");
    fprintf(stderr, "  -o <string> output directory for checkpoints and the log (default out)\n");
    fprintf(stderr, "  -e <int>    epochs; also the length of the linear lr decay (default 50)\n");
    fprintf(stderr, "  -b <int>    batch size (default 16)\n");
    fprintf(stderr, "  -l <float>  learning rate (default 5e-5)\n");
    fprintf(stderr, "  -w <float>  weight decay (default 0)\n");
    fprintf(stderr, "  -g <float>  max gradient norm, 0 = no clipping (default 1.0)\n");
    fprintf(stderr, "  -u <int>    warmup steps (default 0)\n");
    fprintf(stderr, "  -q <float>  dropout: hidden, attention and classifier (default 0.1)\n");
    fprintf(stderr, "  -p <int>    early stopping patience in epochs, 0 = off (default 3)\n");
    fprintf(stderr, "  -r <int>    random seed (default 42)\n");
    fprintf(stderr, "  -x <int>    stop after this many steps, -1 = no limit (default -1)\n");
    fprintf(stderr, "  -k <int>    LoRA rank (default 8)\n");
    fprintf(stderr, "  -a <float>  LoRA alpha (default 32)\n");
    fprintf(stderr, "  -z <float>  LoRA dropout (default 0.1)\n");
    fprintf(stderr, "  -f <int>    print a step line every this many steps (default 1)\n");
    fprintf(stderr, "  -P <int>    progress line every this many steps when stdout is not a terminal, 0 = off (default 100;\n");
    fprintf(stderr, "              on a terminal it is redrawn in place every step)\n");
    fprintf(stderr, "  -S <int>    also save the resumable state every this many steps, 0 = only at epoch ends (default 0)\n");
    fprintf(stderr, "  -R <int>    1 = resume from <output dir>/state.bin, with the flags of the interrupted run (default 0)\n");
    fprintf(stderr, "  -X <int>    tests only: exit (code 3) right after this step, as if killed (default off)\n");
    fprintf(stderr, "Classify mode (no training): ./train_bert -C out/checkpoint_best.bin -t \"i feel wonderful today\"\n");
    fprintf(stderr, "  -C <string> checkpoint to classify with; its header gives the strategy (-s, if given, must agree)\n");
    fprintf(stderr, "  -t <string> text to classify, or - for one text per line from stdin\n");
    fprintf(stderr, "  -v <string> WordPiece vocabulary (default data/vocab.txt)\n");
    fprintf(stderr, "  -y <int>    1 = also print the logits, %%.9g (default 0)\n");
    fprintf(stderr, "  -h          this help\n");
    exit(EXIT_FAILURE);
}

int main(int argc, char** argv) {
    const char* strategy_name = "full";
    const char* model_path = "data/model.bin";
    const char* data_dir = "data";
    const char* out_dir = "out";
    int epochs = 50, B = 16, warmup = 0, patience = 3, seed = 42, max_steps = -1, lora_r = 8, print_every = 1;
    int progress_every = 100, save_every = 0, resume = 0, exit_after = -1, print_logits = 0, strategy_given = 0;
    const char* classify_path = NULL;
    const char* classify_text = NULL;
    const char* vocab_path = "data/vocab.txt";
    float lr = 5e-5f, weight_decay = 0.0f, max_norm = 1.0f, dropout = 0.1f, lora_alpha = 32.0f, lora_dropout = 0.1f;
    for (int i = 1; i < argc; i += 2) {
        if (argv[i][0] != '-' || strlen(argv[i]) != 2 || argv[i][1] == 'h' || i + 1 >= argc) { usage_(); }
        char f = argv[i][1];
        const char* v = argv[i + 1];
        if (f == 's') { strategy_name = v; strategy_given = 1; }
        else if (f == 'm') { model_path = v; }
        else if (f == 'd') { data_dir = v; }
        else if (f == 'o') { out_dir = v; }
        else if (f == 'e') { epochs = atoi(v); }
        else if (f == 'b') { B = atoi(v); }
        else if (f == 'l') { lr = atof(v); }
        else if (f == 'w') { weight_decay = atof(v); }
        else if (f == 'g') { max_norm = atof(v); }
        else if (f == 'u') { warmup = atoi(v); }
        else if (f == 'q') { dropout = atof(v); }
        else if (f == 'p') { patience = atoi(v); }
        else if (f == 'r') { seed = atoi(v); }
        else if (f == 'x') { max_steps = atoi(v); }
        else if (f == 'k') { lora_r = atoi(v); }
        else if (f == 'a') { lora_alpha = atof(v); }
        else if (f == 'z') { lora_dropout = atof(v); }
        else if (f == 'f') { print_every = atoi(v); }
        else if (f == 'P') { progress_every = atoi(v); }
        else if (f == 'S') { save_every = atoi(v); }
        else if (f == 'R') { resume = atoi(v); }
        else if (f == 'X') { exit_after = atoi(v); }
        else if (f == 'C') { classify_path = v; }
        else if (f == 't') { classify_text = v; }
        else if (f == 'v') { vocab_path = v; }
        else if (f == 'y') { print_logits = atoi(v); }
        else { usage_(); }
    }
    if (classify_path != NULL || classify_text != NULL) {
        if (classify_path == NULL || classify_text == NULL) { fprintf(stderr, "Error: classify mode needs both -C and -t\n"); usage_(); }
        return classify_main_(classify_path, strategy_given ? strategy_name : NULL, vocab_path, classify_text, print_logits);
    }
    int strategy = -1;
    for (int s = 0; s < 3; s++) { if (strcmp(strategy_name, STRATEGY_NAMES[s]) == 0) { strategy = s; } }
    if (strategy < 0) { fprintf(stderr, "Error: unknown strategy '%s' (full, frozen or lora)\n", strategy_name); usage_(); }
    if (epochs < 1 || B < 1 || lr <= 0.0f || warmup < 0 || dropout < 0.0f || dropout >= 1.0f || lora_r < 1 ||
        lora_dropout < 0.0f || lora_dropout >= 1.0f || print_every < 1 || progress_every < 0 || save_every < 0) {
        fprintf(stderr, "Error: a setting is out of range (see -h)\n");
        usage_();
    }

    Bert model = {0};
    model.strategy = strategy;
    model.seed = (uint64_t)seed;
    model.dropout = dropout;
    model.lora_r = lora_r;
    model.lora_alpha = lora_alpha;
    model.lora_dropout = lora_dropout;
    require_file_(model_path);
    bert_build_from_file(&model, model_path);
    bert_init_training(&model);
    const BertConfig* cfg = &model.config;

    char path[4096];
    Dataset splits[3];
    const char* split_names[3] = {"train", "validation", "test"};
    int T_max = 0;
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof(path), "%s/emotion_%s.bin", data_dir, split_names[k]);
        require_file_(path);
        dataset_load(&splits[k], path, cfg);
        if (splits[k].T_max > T_max) { T_max = splits[k].T_max; }
    }
    bert_alloc_activations(&model, B, T_max);
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "Error: could not create output directory %s: %s\n", out_dir, strerror(errno));
        exit(EXIT_FAILURE);
    }

    int steps_per_epoch = (splits[0].N + B - 1) / B;
    int total_steps = epochs * steps_per_epoch;
    int threads = 1;
#ifdef OMP
    threads = omp_get_max_threads();
#endif
    printf("+-----------------------+----------------------------------------------------+\n");
    printf("| Parameter             | Value                                              |\n");
    printf("+-----------------------+----------------------------------------------------+\n");
    printf("| strategy              | %-50s |\n", STRATEGY_NAMES[strategy]);
    printf("| model file            | %-50s |\n", model_path);
    printf("| model                 | %-50s |\n", cfg->name);
    printf("| data directory        | %-50s |\n", data_dir);
    printf("| output directory      | %-50s |\n", out_dir);
    printf("| epochs (max)          | %-50d |\n", epochs);
    printf("| batch size            | %-50d |\n", B);
    printf("| learning rate         | %-50e |\n", lr);
    printf("| schedule              | linear to 0 over %d steps, warmup %-16d |\n", total_steps, warmup);
    printf("| AdamW                 | betas (0.9, 0.999) eps 1e-8 weight decay %-9g |\n", weight_decay);
    printf("| max grad norm         | %-50g |\n", max_norm);
    printf("| dropout               | %-50g |\n", dropout);
    printf("| early stop patience   | %-50d |\n", patience);
    printf("| seed                  | %-50d |\n", seed);
    printf("| max steps             | %-50d |\n", max_steps);
    if (save_every > 0) { printf("| state every (steps)   | %-50d |\n", save_every); }
    else { printf("| state every (steps)   | %-50s |\n", "epoch ends only"); }
    printf("| resume                | %-50s |\n", resume ? "yes, from state.bin" : "no");
    if (strategy == STRATEGY_LORA) {
        printf("| LoRA r, alpha, dropout| %d, %g, %-40g |\n", lora_r, lora_alpha, lora_dropout);
    }
    printf("| threads               | %-50d |\n", threads);
    printf("+-----------------------+----------------------------------------------------+\n");
    printf("| V, P, C, L, NH, FF, NC| %d, %d, %d, %d, %d, %d, %-22d |\n", cfg->V, cfg->P, cfg->C, cfg->L, cfg->NH, cfg->FF, cfg->NC);
    printf("| parameters            | %-50zu |\n", model.num_parameters);
    printf("| trainable parameters  | %-50zu |\n", bert_num_trainable(&model));
    printf("| train / val / test    | %d / %d / %-38d |\n", splits[0].N, splits[1].N, splits[2].N);
    printf("| T_max                 | %-50d |\n", T_max);
    printf("+-----------------------+----------------------------------------------------+\n");

    char last_path[4096], best_path[4096], state_path[4096];
    snprintf(last_path, sizeof(last_path), "%s/checkpoint_last.bin", out_dir);
    snprintf(best_path, sizeof(best_path), "%s/checkpoint_best.bin", out_dir);
    snprintf(state_path, sizeof(state_path), "%s/state.bin", out_dir);
    DataLoader loader;
    loader_init(&loader, &splits[0], B, (uint64_t)seed);
    EarlyStopping es = {.patience = patience};
    EpochResult* history = NULL; // stb_ds growing list
    TrainProgress pr = {1, 0, 0, 0.0, 0};
    TrainSettings settings = {{strategy, seed, B, epochs, splits[0].N, strategy == STRATEGY_LORA ? lora_r : 0, float_to_bits_(lr), warmup,
        float_to_bits_(weight_decay), float_to_bits_(max_norm), float_to_bits_(dropout),
        float_to_bits_(strategy == STRATEGY_LORA ? lora_alpha : 0.0f), float_to_bits_(strategy == STRATEGY_LORA ? lora_dropout : 0.0f)}};
    if (resume) {
        history = train_state_load(state_path, &model, &settings, &pr, &es);
        printf("resumed from %s: step %d, epoch %d, %d examples into it%s\n", state_path, model.step, pr.epoch, pr.pos,
               pr.done ? ", training had finished" : "");
    }

    // the log is rewritten from the history, so a resumed run's log equals an uninterrupted one's
    snprintf(path, sizeof(path), "%s/log.tsv", out_dir);
    FILE* log;
    fopenCheck(&log, path, "w");
    fprintf(log, "split\tepoch\tstep\ttrain_loss\tloss\taccuracy\tprecision\trecall\tf1\tseconds\tbest\n");
    for (int i = 0; i < arrlen(history); i++) {
        const EpochResult* r = &history[i];
        fprintf(log, "validation\t%d\t%d\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t%d\n", r->epoch, r->step, r->train_loss,
                r->val.loss, r->val.accuracy, r->val.precision, r->val.recall, r->val.f1, r->seconds, r->best);
    }
    fflush(log);
    // TensorBoard: tags as the Hugging Face Trainer's; a resumed run starts a new file that
    // tells TensorBoard to drop what the interrupted run logged after the state
    EventWriter events;
    events_open(&events, out_dir);
    if (resume) { events_add_restart(&events, model.step + 1); }

    int tty = isatty(fileno(stdout));
    double run_start = now_seconds_();
    int done = pr.done;
    for (int epoch = pr.epoch; epoch <= epochs && !done; epoch++) {
        double epoch_start = now_seconds_();
        loader_start_epoch(&loader, epoch, 1);
        double loss_sum = 0.0;
        int nsteps = 0, Bb, T;
        if (epoch == pr.epoch) { loader.pos = pr.pos; loss_sum = pr.loss_sum; nsteps = pr.nsteps; }
        int first_step = nsteps, first_pos = loader.pos;
        int epoch_steps = steps_per_epoch;
        if (max_steps > 0 && model.step - nsteps + epoch_steps > max_steps) { epoch_steps = max_steps - (model.step - nsteps); }
        while (loader_next_batch(&loader, model.ids, model.lengths, model.labels, cfg->pad_id, &Bb, &T)) {
            double t0 = now_seconds_();
            float step_lr = lr_at_step(lr, model.step, warmup, total_steps);
            bert_forward(&model, Bb, T, model.labels, 1);
            bert_zero_grad(&model);
            bert_backward(&model);
            float norm = bert_update(&model, step_lr, 0.9f, 0.999f, 1e-8f, weight_decay, max_norm);
            loss_sum += model.mean_loss;
            nsteps++;
            events_add_scalar(&events, "train/loss", model.step, model.mean_loss);
            events_add_scalar(&events, "train/learning_rate", model.step, step_lr);
            events_add_scalar(&events, "train/grad_norm", model.step, norm);
            if (model.step % print_every == 0) {
                printf("%sstep %d/%d | epoch %d | loss %.4f | norm %.4f | lr %.2e | %.1f ms\n", tty ? "\r\033[K" : "", model.step,
                       total_steps, epoch, model.mean_loss, norm, step_lr, (now_seconds_() - t0) * 1000.0);
                fflush(stdout);
            }
            progress_print_(tty, progress_every, epoch, nsteps, epoch_steps, loader.pos - first_pos, now_seconds_() - epoch_start);
            if (max_steps > 0 && model.step >= max_steps) { done = 1; break; }
            if (save_every > 0 && model.step % save_every == 0) {
                TrainProgress now = {epoch, loader.pos, nsteps, loss_sum, 0};
                train_state_save(state_path, &model, &settings, &now, &es, history, (int)arrlen(history));
            }
            if (model.step == exit_after) {
                printf("%sexiting after step %d (-X)\n", tty ? "\r\033[K" : "", model.step);
                fflush(stdout);
                _exit(3);
            }
        }
        if (tty) { printf("\r\033[K"); }
        (void)first_step;
        EpochResult rec = {.epoch = epoch, .step = model.step, .train_loss = (float)(loss_sum / nsteps)};
        metrics_init(&rec.val, cfg->NC);
        bert_evaluate(&model, &splits[1], B, &rec.val);
        rec.seconds = now_seconds_() - epoch_start;
        rec.best = early_stopping_update(&es, rec.val.f1, epoch);
        bert_save_checkpoint(&model, last_path, epoch);
        if (rec.best) { bert_save_checkpoint(&model, best_path, epoch); }
        printf("epoch %d | train loss %.4f | val loss %.4f | acc %.4f | precision %.4f | recall %.4f | F1 (weighted) %.4f | %.1f s%s\n",
               epoch, rec.train_loss, rec.val.loss, rec.val.accuracy, rec.val.precision, rec.val.recall, rec.val.f1,
               rec.seconds, rec.best ? " | best" : "");
        fprintf(log, "validation\t%d\t%d\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t%d\n", epoch, model.step, rec.train_loss,
                rec.val.loss, rec.val.accuracy, rec.val.precision, rec.val.recall, rec.val.f1, rec.seconds, rec.best);
        fflush(log);
        fflush(stdout);
        events_add_scalar(&events, "train/epoch_loss", model.step, rec.train_loss);
        events_add_scalar(&events, "eval/loss", model.step, rec.val.loss);
        events_add_scalar(&events, "eval/accuracy", model.step, rec.val.accuracy);
        events_add_scalar(&events, "eval/precision", model.step, rec.val.precision);
        events_add_scalar(&events, "eval/recall", model.step, rec.val.recall);
        events_add_scalar(&events, "eval/f1", model.step, rec.val.f1);
        events_add_scalar(&events, "train/epoch", model.step, (float)epoch);
        arrput(history, rec);
        if (early_stopping_should_stop(&es)) {
            printf("early stopping: no F1 improvement for %d epochs (best %.4f at epoch %d)\n", patience, es.best_f1, es.best_epoch);
            done = 1;
        }
        TrainProgress next = {epoch + 1, 0, 0, 0.0, done || epoch == epochs};
        train_state_save(state_path, &model, &settings, &next, &es, history, (int)arrlen(history));
    }
    double train_seconds = now_seconds_() - run_start;

    // the best checkpoint by validation F1, then the test split
    bert_load_checkpoint(&model, best_path);
    printf("loaded the best checkpoint (epoch %d, validation F1 %.4f) from %s\n", es.best_epoch, es.best_f1, best_path);
    Metrics test;
    metrics_init(&test, cfg->NC);
    bert_evaluate(&model, &splits[2], B, &test);
    metrics_print_report(&test, "test");
    fprintf(log, "test\t%d\t%d\t\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.3f\t1\n", es.best_epoch, model.step, test.loss, test.accuracy,
            test.precision, test.recall, test.f1, train_seconds);
    fcloseCheck(log, path);
    events_add_scalar(&events, "test/loss", model.step, test.loss);
    events_add_scalar(&events, "test/accuracy", model.step, test.accuracy);
    events_add_scalar(&events, "test/precision", model.step, test.precision);
    events_add_scalar(&events, "test/recall", model.step, test.recall);
    events_add_scalar(&events, "test/f1", model.step, test.f1);
    events_close(&events);
    printf("summary | strategy %s | trainable %zu | epochs %d | train runtime %.1f s | test acc %.4f | precision %.4f | recall %.4f | F1 %.4f | loss %.4f\n",
           STRATEGY_NAMES[strategy], bert_num_trainable(&model), (int)arrlen(history), train_seconds, test.accuracy,
           test.precision, test.recall, test.f1, test.loss);

    for (int i = 0; i < arrlen(history); i++) { metrics_free(&history[i].val); }
    arrfree(history);
    metrics_free(&test);
    loader_free(&loader);
    for (int k = 0; k < 3; k++) { dataset_free(&splits[k]); }
    bert_free(&model);
    return 0;
}
#endif

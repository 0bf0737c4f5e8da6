/*
nn.Linear forward and backward (train_bert.c's matmul_forward / matmul_backward) through cuBLAS, with the bias.

Versions (cuda/matmul.cuh; each runs the forward, then the backward with all three gradients):
  1: forward: a kernel fills out with the bias, then cublasGemmEx accumulates the product into it; backward:
     cublasGemmEx for dinp and dW, the two-stage column reduction for dbias (kernel sets 2 and 3)
  2: cuBLASLt with epilogues: the forward's bias added by the product (CUBLASLT_EPILOGUE_BIAS), the dW product
     also writing dout's column sums (CUBLASLT_EPILOGUE_BGRADB) and one small kernel adding them into dbias
     (kernel set 4). Each problem's algorithm is chosen once for its shape less the token count N and its
     operands' alignments; a new N only checks the chosen algorithm (cublasLtMatmulAlgoCheck).

  make matmul && ./matmul 1
  make matmul && ./matmul 2
Results (card, ms): not run yet; fill in on a GPU.
Prediction: the forward saves the fill (N OC 4 bytes written) and the product's read of it (beta 1 -> 0): at
bert-base FFN shapes (712 x 3072) ~17 us of traffic in ~60 us, so ~10-25% per biased forward and 74 launches a
step fewer; the backward saves the bias reduction's read of dout and one of its two launches.
Checked here: fp32 against the CPU (rounding only: the bias is added last instead of first), bf16 at its own
tolerance (operands rounded to bf16), a bias pointer aligned to 4 bytes only (the classifier's place in the
parameter block), the same shape again with a 256-byte aligned bias (a choice is cached per alignment), an
odd N (the packed token count of kernel set 3 is any number), and the first shape at another N: on the emulator
that must ask the heuristic nothing new (the plan is not keyed by N); `EMU_LT_CHECK_REFUSES=1` makes the check
refuse every other N, so that the path that asks again runs too, and `EMU_LT_NO_ALGORITHM=1` makes the heuristic
find nothing, so that each plan asks at most LT_ALGOS times and then runs kernel set 3's path (make check-emu
runs all three).
*/
#include "common.h"
#include "../../cuda/matmul.cuh" // defines: cu::Matmul, cu::matmul_forward, cu::matmul_backward

int main(int argc, char** argv) {
    int version = argc > 1 ? atoi(argv[1]) : 1;
    if (version != 1 && version != 2) { fprintf(stderr, "unknown version %d\n", version); return 1; }
    if (!require_device("matmul")) { return 2; }
    int kernels = version == 1 ? 3 : 4;
    // N, C, OC, the bias's offset in floats from a 256-byte boundary; the first five run on the emulator, the
    // third is the first at another N
    int cfgs[][4] = {{37, 64, 192, 0}, {37, 64, 192, 1}, {29, 64, 192, 0}, {5, 64, 6, 2}, {33, 96, 64, 0},
                     {712, 768, 2304, 0}, {712, 768, 768, 0}, {712, 768, 3072, 0}, {712, 3072, 768, 0},
                     {1664, 768, 3072, 0}, {32, 768, 768, 0}, {32, 768, 6, 1}};
    int ncfgs = sizeof(cfgs) / sizeof(cfgs[0]);
    for (int prec = 0; prec < 2; prec++) {
        double tol = prec == cu::PRECISION_FP32 ? 1e-5 : 1e-2; // bf16: operands rounded to 8 bits of mantissa
        // one context for all shapes, as a model has: its cached choices meet every shape and alignment in turn
        cu::Matmul mm;
        size_t rows = 0, cols = 0; // bf16 casts every operand here, the weight too
        for (int c = 0; c < ncfgs; c++) {
            size_t r = cfgs[c][0] > cfgs[c][2] ? cfgs[c][0] : cfgs[c][2];
            size_t w = cfgs[c][1] > cfgs[c][2] ? cfgs[c][1] : cfgs[c][2];
            rows = r > rows ? r : rows; cols = w > cols ? w : cols;
        }
        cu::matmul_init(&mm, prec, kernels, rows * cols, rows, cols);
        for (int c = 0; c < ncfgs; c++) {
            if (EMULATED && c >= 5) { continue; }
            long asked = mm.lt != NULL ? mm.lt->heuristics : 0;
            int N = cfgs[c][0], C = cfgs[c][1], OC = cfgs[c][2], off = cfgs[c][3];
            float* inp = make_random((size_t)N * C, 1.0f);
            float* weight = make_random((size_t)OC * C, 0.05f);
            float* bias = make_random(OC, 0.1f);
            float* dout = make_random((size_t)N * OC, 1.0f);
            // the gradients accumulate: start both sides from the same values
            float* dinp = make_random((size_t)N * C, 0.1f);
            float* dweight = make_random((size_t)OC * C, 0.1f);
            float* dbias = make_random(OC, 0.1f);
            float* d_inp = to_device(inp, (size_t)N * C);
            float* d_weight = to_device(weight, (size_t)OC * C);
            float* d_bias_block;
            cudaCheck(cudaMalloc(&d_bias_block, (OC + off) * sizeof(float)));
            float* d_bias = d_bias_block + off;
            cudaCheck(cudaMemcpy(d_bias, bias, OC * sizeof(float), cudaMemcpyHostToDevice));
            float* d_dout = to_device(dout, (size_t)N * OC);
            float* d_dinp = to_device(dinp, (size_t)N * C);
            float* d_dweight = to_device(dweight, (size_t)OC * C);
            float* d_dbias = to_device(dbias, OC);
            float* d_out;
            cudaCheck(cudaMalloc(&d_out, (size_t)N * OC * sizeof(float)));
            poison(d_out, (size_t)N * OC);
            // the CPU reference
            float* out = (float*)mallocCheck((size_t)N * OC * sizeof(float));
            float* wt = (float*)mallocCheck((size_t)OC * C * sizeof(float));
            matmul_forward(out, inp, weight, bias, wt, N, C, OC);
            matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
            // the version
            cu::matmul_forward(&mm, d_out, d_inp, d_weight, d_bias, N, C, OC);
            cu::matmul_backward(&mm, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, N, C, OC);
            printf("N %d C %d OC %d bias +%d floats, %s, v%d\n", N, C, OC, off, cu::precision_name(prec), version);
            EXPECT(validate("out", d_out, out, (size_t)N * OC, tol));
            EXPECT(validate("dinp", d_dinp, dinp, (size_t)N * C, tol));
            EXPECT(validate("dweight", d_dweight, dweight, (size_t)OC * C, tol));
            EXPECT(validate("dbias", d_dbias, dbias, OC, tol));
            if (mm.lt != NULL) {
                printf("  cuBLASLt: %ld heuristic queries, %ld checks so far\n", mm.lt->heuristics, mm.lt->checks);
                const char* refuses = getenv("EMU_LT_CHECK_REFUSES");
                const char* none = getenv("EMU_LT_NO_ALGORITHM");
                int found = none == NULL || strcmp(none, "1") != 0;
                if (EMULATED && c == 2 && found && (refuses == NULL || strcmp(refuses, "1") != 0)) {
                    printf("    another N of a planned shape asks the heuristic nothing new: %s\n",
                           mm.lt->heuristics == asked ? "ok" : "FAIL");
                    EXPECT(mm.lt->heuristics == asked);
                }
            }
            double flops = 2.0 * N * C * OC;
            float ms_f = time_ms([&] { cu::matmul_forward(&mm, d_out, d_inp, d_weight, d_bias, N, C, OC); });
            float ms_b = time_ms([&] {
                cu::matmul_backward(&mm, d_dinp, d_dweight, d_dbias, d_dout, d_inp, d_weight, N, C, OC);
            });
            printf("  forward %.4f ms %.1f TFLOP/s, backward %.4f ms %.1f TFLOP/s\n", ms_f, flops / ms_f / 1e9, ms_b,
                   2.0 * flops / ms_b / 1e9);
            float* host[] = {inp, weight, bias, dout, dinp, dweight, dbias, out, wt};
            for (size_t i = 0; i < sizeof(host) / sizeof(host[0]); i++) { free(host[i]); }
            float* dev[] = {d_inp, d_weight, d_bias_block, d_dout, d_dinp, d_dweight, d_dbias, d_out};
            for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) { cudaCheck(cudaFree(dev[i])); }
        }
        // where the heuristic finds nothing, one plan met at ten token counts asks it at most LT_ALGOS times
        const char* none = getenv("EMU_LT_NO_ALGORITHM");
        if (EMULATED && mm.lt != NULL && none != NULL && strcmp(none, "1") == 0) {
            int C = 64, OC = 192, Nmax = 10;
            float* inp = make_random((size_t)Nmax * C, 1.0f);
            float* weight = make_random((size_t)OC * C, 0.05f);
            float* bias = make_random(OC, 0.1f);
            float* d_inp = to_device(inp, (size_t)Nmax * C);
            float* d_weight = to_device(weight, (size_t)OC * C);
            float* d_bias = to_device(bias, OC);
            free(inp); free(weight); free(bias);
            float* d_out;
            cudaCheck(cudaMalloc(&d_out, (size_t)Nmax * OC * sizeof(float)));
            long before = mm.lt->heuristics;
            for (int N = 1; N <= Nmax; N++) { cu::matmul_forward(&mm, d_out, d_inp, d_weight, d_bias, N, C, OC); }
            long asked = mm.lt->heuristics - before;
            printf("  no algorithm: one plan at %d token counts asks the heuristic %ld times (at most %d): %s\n",
                   Nmax, asked, LT_ALGOS, asked <= LT_ALGOS ? "ok" : "FAIL");
            EXPECT(asked <= LT_ALGOS);
            float* dev[] = {d_inp, d_weight, d_bias, d_out};
            for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) { cudaCheck(cudaFree(dev[i])); }
        }
        cu::matmul_free(&mm);
    }
    printf("matmul: %s\n", failures_ == 0 ? "all versions valid" : "VALIDATION FAILED");
    return failures_ == 0 ? 0 : 1;
}

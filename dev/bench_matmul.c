/*
Times train_bert.c's CPU matmul_forward / matmul_backward on BERT's linear layers against the kernel they replaced
(a copy of it below, old_*), and checks on every shape that the two give the same bits (all but the old kernel's
ragged edge tiles, which it rounded differently: count_diff_). Prints the CPU, its
measured FMA peak (one core and all threads), then one line per layer: ms, GFLOP/s, % of peak, new / old.
A benchmark, not a test: min of REPEATS runs after one warm-up, old and new taking turns; on a shared machine take
the min of several runs.

    make dev/bench_matmul && ./dev/bench_matmul [N] [REPEATS]      (N tokens, default 1024; OMP_NUM_THREADS)
*/
#define TESTING
#include "../train_bert.c"

// ----------------------------------------------------------------------------
// the kernel before issue 22, verbatim but for the names: register tiles over all of K, no packing, forward
// through a transposed copy of the weight

#ifdef __AVX512F__
#define MM_TM_OLD 8
#define MM_TN_OLD 48
#else
#define MM_TM_OLD 4
#define MM_TN_OLD 32
#endif
static void old_matmul_(float* out, const float* a, size_t a_rs, size_t a_cs, const float* b, int M, int K, int N) {
    int mtiles = (M + MM_TM_OLD - 1) / MM_TM_OLD;
    int ntiles = (N + MM_TN_OLD - 1) / MM_TN_OLD;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int jt = 0; jt < ntiles; jt++) {
        for (int it = 0; it < mtiles; it++) {
            int i0 = it * MM_TM_OLD, j0 = jt * MM_TN_OLD;
            if (i0 + MM_TM_OLD <= M && j0 + MM_TN_OLD <= N) {
                float acc[MM_TM_OLD][MM_TN_OLD];
                for (int i = 0; i < MM_TM_OLD; i++) {
                    for (int j = 0; j < MM_TN_OLD; j++) { acc[i][j] = out[(size_t)(i0 + i) * N + j0 + j]; }
                }
                for (int k = 0; k < K; k++) {
                    const float* brow = b + (size_t)k * N + j0;
                    for (int i = 0; i < MM_TM_OLD; i++) {
                        float aik = a[(i0 + i) * a_rs + k * a_cs];
                        for (int j = 0; j < MM_TN_OLD; j++) { acc[i][j] += aik * brow[j]; }
                    }
                }
                for (int i = 0; i < MM_TM_OLD; i++) {
                    for (int j = 0; j < MM_TN_OLD; j++) { out[(size_t)(i0 + i) * N + j0 + j] = acc[i][j]; }
                }
            } else {
                int im = M - i0 < MM_TM_OLD ? M - i0 : MM_TM_OLD;
                int jn = N - j0 < MM_TN_OLD ? N - j0 : MM_TN_OLD;
                for (int i = 0; i < im; i++) {
                    for (int j = 0; j < jn; j++) {
                        float sum = out[(size_t)(i0 + i) * N + j0 + j];
                        for (int k = 0; k < K; k++) {
                            sum += a[(i0 + i) * a_rs + k * a_cs] * b[(size_t)k * N + j0 + j];
                        }
                        out[(size_t)(i0 + i) * N + j0 + j] = sum;
                    }
                }
            }
        }
    }
}

static void old_transpose_(float* out, const float* w, int R, int Cc) {
    #pragma omp parallel for
    for (int c = 0; c < Cc; c++) {
        for (int r = 0; r < R; r++) { out[(size_t)c * R + r] = w[(size_t)r * Cc + c]; }
    }
}

static void old_matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                               float* wt_scratch, int N, int C, int OC) {
    old_transpose_(wt_scratch, weight, OC, C);
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) { out[(size_t)n * OC + o] = bias != NULL ? bias[o] : 0.0f; }
    }
    old_matmul_(out, inp, C, 1, wt_scratch, N, C, OC);
}

static void old_matmul_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                                const float* weight, int N, int C, int OC) {
    if (dinp != NULL) { old_matmul_(dinp, dout, OC, 1, weight, N, OC, C); }
    if (dweight != NULL) { old_matmul_(dweight, dout, 1, OC, inp, OC, N, C); }
}

// ----------------------------------------------------------------------------
// the machine: its name and what its FMA units can do

static void cpu_name_(char* name, size_t n) {
    snprintf(name, n, "unknown CPU");
    FILE* f = fopen("/proc/cpuinfo", "r");
    if (f == NULL) { return; }
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            char* p = strchr(line, ':');
            if (p != NULL) { snprintf(name, n, "%s", p + 2); name[strcspn(name, "\n")] = 0; }
            break;
        }
    }
    fclose(f);
}

// FMA throughput: PEAK_CHAINS independent chains acc = acc * m + c of one vector width each, enough to hide the
// FMA latency (4 cycles on Zen 4 and Skylake) on two pipes. The compiler contracts each line into one FMA and
// keeps the accumulators in registers; returns GFLOP/s of one thread (2 flops per FMA lane)
#define PEAK_CHAINS 12
#define PEAK_LANES 16
static double fma_gflops_one_(long iters) {
    float acc[PEAK_CHAINS][PEAK_LANES];
    for (int c = 0; c < PEAK_CHAINS; c++) {
        for (int j = 0; j < PEAK_LANES; j++) { acc[c][j] = (float)(c * PEAK_LANES + j) * 1e-3f; }
    }
    volatile float vm = 0.999999f, vc = 1e-6f; // volatile: not constants the compiler could fold
    float m = vm, c0 = vc;
    double t0 = now_seconds();
    for (long it = 0; it < iters; it++) {
        for (int c = 0; c < PEAK_CHAINS; c++) {
            for (int j = 0; j < PEAK_LANES; j++) { acc[c][j] = acc[c][j] * m + c0; }
        }
    }
    double dt = now_seconds() - t0;
    float s = 0.0f;
    for (int c = 0; c < PEAK_CHAINS; c++) {
        for (int j = 0; j < PEAK_LANES; j++) { s += acc[c][j]; }
    }
    volatile float sink = s; // keep the loop alive
    (void)sink;
    return 2.0 * PEAK_CHAINS * PEAK_LANES * (double)iters / dt * 1e-9;
}

// min time over a few tries, one thread alone; then every thread at once (their GFLOP/s summed)
static void fma_peak_(double* one, double* all, int threads) {
    long iters = 20 * 1000 * 1000;
    *one = 0.0;
    for (int r = 0; r < 5; r++) { double g = fma_gflops_one_(iters); if (g > *one) { *one = g; } }
    *all = 0.0;
    for (int r = 0; r < 5; r++) {
        double sum = 0.0;
        #pragma omp parallel num_threads(threads) reduction(+:sum)
        { sum += fma_gflops_one_(iters); }
        if (sum > *all) { *all = sum; }
    }
}

// ----------------------------------------------------------------------------

// CPU time of the whole process (every thread): on a shared machine the wall time also counts the time this
// process waited for a core, the CPU time does not
static double cpu_seconds_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float* rand_floats_(size_t n, uint64_t seed) {
    float* x = (float*)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((seed >> 40) & 0xFFFF) / 65536.0f - 0.5f;
    }
    return x;
}

// Elements where x and y (M, N) differ, and how many of those lie outside the old kernel's ragged edge tiles (the
// last M % MM_TM_OLD rows, the last N % MM_TN_OLD columns). Its edge loop ran k innermost, which gcc vectorises as
// all the products and then an ordered sum, with no FMA; its full tiles and every tile of the new kernel fuse
// out += a * b into one FMA (gcc's default -ffp-contract=fast). So on edges the two round differently.
static size_t count_diff_(const float* x, const float* y, int M, int N, size_t* interior) {
    size_t n = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            if (x[(size_t)i * N + j] == y[(size_t)i * N + j]) { continue; }
            n++;
            if (i < M - M % MM_TM_OLD && j < N - N % MM_TN_OLD) { (*interior)++; }
        }
    }
    return n;
}

typedef struct { const char* name; int C, OC; } Layer; // C = in features (K of the forward), OC = out

int main(int argc, char** argv) {
    int peak_only = argc > 1 && strcmp(argv[1], "--peak") == 0; // the peak line alone (dev/bench_epoch.py reads it)
    int N = argc > 1 && !peak_only ? atoi(argv[1]) : 1024;
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    int threads = 1;
#ifdef OMP
    threads = omp_get_max_threads();
#endif
    char cpu[256];
    cpu_name_(cpu, sizeof(cpu));
    double peak1, peakall;
    fma_peak_(&peak1, &peakall, threads);
    printf("CPU: %s | threads %d | FMA peak (measured) %.1f GFLOP/s one thread, %.1f all threads\n",
           cpu, threads, peak1, peakall);
    if (peak_only) { return 0; }
    printf("N %d tokens, min of %d runs; ms and GFLOP/s old -> new; %% of the all-thread peak\n", N, repeats);
    // MiniLM (C 384) and bert-base (C 768): qkv, attention projection, FC, FC projection
    Layer layers[] = {
        {"minilm qkv", 384, 1152}, {"minilm attproj", 384, 384}, {"minilm fc", 384, 1536}, {"minilm fcproj", 1536, 384},
        {"base qkv", 768, 2304}, {"base attproj", 768, 768}, {"base fc", 768, 3072}, {"base fcproj", 3072, 768},
    };
    int nlayers = sizeof(layers) / sizeof(layers[0]);
    int all_same = 1;
    double tot_old[2] = {0}, tot_new[2] = {0};
    for (int li = 0; li < nlayers; li++) {
        int C = layers[li].C, OC = layers[li].OC;
        float* inp = rand_floats_((size_t)N * C, 1);
        float* w = rand_floats_((size_t)OC * C, 2);
        float* bias = rand_floats_(OC, 3);
        float* dout = rand_floats_((size_t)N * OC, 4);
        float* wt = (float*)mallocCheck((size_t)OC * C * sizeof(float));
        float* out[2], *dinp[2], *dw[2];
        for (int v = 0; v < 2; v++) {
            out[v] = (float*)mallocCheck((size_t)N * OC * sizeof(float));
            dinp[v] = (float*)mallocCheck((size_t)N * C * sizeof(float));
            dw[v] = (float*)mallocCheck((size_t)OC * C * sizeof(float));
        }
        // old and new take turns, so that both see the same load from whatever else runs on the machine
        double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}}; // [old, new][forward, backward], seconds
        double cpu[2][2] = {{1e30, 1e30}, {1e30, 1e30}};  // the same, CPU seconds
        for (int r = -1; r < repeats; r++) {
            for (int v = 0; v < 2; v++) {
                // gradients start at zero each run, so the two versions' outputs are comparable at the end
                memset(dinp[v], 0, (size_t)N * C * sizeof(float));
                memset(dw[v], 0, (size_t)OC * C * sizeof(float));
                double c0 = cpu_seconds_(), t0 = now_seconds();
                if (v == 0) { old_matmul_forward(out[v], inp, w, bias, wt, N, C, OC); }
                else { matmul_forward(out[v], inp, w, bias, wt, N, C, OC); }
                double c1 = cpu_seconds_(), t1 = now_seconds();
                if (v == 0) { old_matmul_backward(dinp[v], dw[v], dout, inp, w, N, C, OC); }
                else { matmul_backward(dinp[v], dw[v], NULL, dout, inp, w, N, C, OC); }
                double c2 = cpu_seconds_(), t2 = now_seconds();
                if (r >= 0 && t1 - t0 < best[v][0]) { best[v][0] = t1 - t0; }
                if (r >= 0 && t2 - t1 < best[v][1]) { best[v][1] = t2 - t1; }
                if (r >= 0 && c1 - c0 < cpu[v][0]) { cpu[v][0] = c1 - c0; }
                if (r >= 0 && c2 - c1 < cpu[v][1]) { cpu[v][1] = c2 - c1; }
            }
        }
        size_t interior = 0;
        size_t ndiff = count_diff_(out[0], out[1], N, OC, &interior) + count_diff_(dinp[0], dinp[1], N, C, &interior)
                       + count_diff_(dw[0], dw[1], OC, C, &interior);
        all_same &= interior == 0;
        char bits[64];
        snprintf(bits, sizeof(bits), ndiff == 0 ? "same" : interior == 0 ? "same but %zu on old edges" : "DIFFER",
                 ndiff);
        double flops[2] = {2.0 * N * C * OC, 4.0 * N * C * OC}; // backward: dinp and dweight
        for (int p = 0; p < 2; p++) {
            double g_old = flops[p] / best[0][p] * 1e-9, g_new = flops[p] / best[1][p] * 1e-9;
            tot_old[p] += best[0][p];
            tot_new[p] += best[1][p];
            printf("%-15s %-8s (%4d x %4d x %4d) | %8.2f -> %7.2f ms | %6.1f -> %6.1f GFLOP/s | %3.0f%% -> %3.0f%% "
                   "| speedup %.2fx | cpu %.2f -> %.2f ms | bits %s\n", layers[li].name,
                   p == 0 ? "forward" : "backward", N, C, OC, best[0][p] * 1e3, best[1][p] * 1e3, g_old, g_new,
                   100.0 * g_old / peakall, 100.0 * g_new / peakall, best[0][p] / best[1][p], cpu[0][p] * 1e3,
                   cpu[1][p] * 1e3, bits);
        }
        free(inp); free(w); free(bias); free(dout); free(wt);
        for (int v = 0; v < 2; v++) { free(out[v]); free(dinp[v]); free(dw[v]); }
    }
    printf("sum over the layers: forward %.1f -> %.1f ms (%.2fx), backward %.1f -> %.1f ms (%.2fx)\n",
           tot_old[0] * 1e3, tot_new[0] * 1e3, tot_old[0] / tot_new[0],
           tot_old[1] * 1e3, tot_new[1] * 1e3, tot_old[1] / tot_new[1]);
    printf("old and new outputs bit-identical on every shape, but for the old kernel's unfused edge tiles: %s\n",
           all_same ? "yes" : "NO");
    return all_same ? 0 : 1;
}

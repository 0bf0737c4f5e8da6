/*
Shared by the kernel notebooks in dev/cuda: train_bert.c's layers as the CPU reference
(the very functions the trainer is tested against), random inputs, poisoned outputs,
the relative error ||out - ref|| / ||ref||, and event timing (warm-up, median of repeats).
*/
#pragma once
#define TESTING
#include "../../train_bert.c"      // defines: the CPU reference layers
#include "../../cuda/common.cuh"   // defines: cudaCheck, ceil_div, reductions, the dropout generator

// uniform in [-1, 1) from a seeded xorshift: fresh inputs every check, never zeros
static uint64_t rng_state_ = 0x2545F4914F6CDD1DULL;
static float rand_uniform_(void) {
    rng_state_ ^= rng_state_ << 13; rng_state_ ^= rng_state_ >> 7; rng_state_ ^= rng_state_ << 17;
    return (float)(rng_state_ >> 40) / 8388608.0f - 1.0f;
}
float* make_random(size_t n, float scale) {
    float* x = (float*)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { x[i] = scale * rand_uniform_(); }
    return x;
}

// device copy of a host array
float* to_device(const float* h, size_t n) {
    float* d;
    cudaCheck(cudaMalloc(&d, n * sizeof(float)));
    cudaCheck(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

// fill with NaN so an unwritten element fails the check
void poison(float* d, size_t n) { cudaCheck(cudaMemset(d, 0xff, n * sizeof(float))); }

// ||got - ref|| / ||ref|| of a device array against a host one; prints and returns pass/fail
int validate(const char* name, const float* d_got, const float* ref, size_t n, double tol) {
    float* got = (float*)mallocCheck(n * sizeof(float));
    cudaCheck(cudaMemcpy(got, d_got, n * sizeof(float), cudaMemcpyDeviceToHost));
    double num = 0.0, den = 0.0;
    size_t nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i])) { nan++; }
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    int ok = nan == 0 && rel <= tol;
    printf("    %-10s rel err %.2e %s%s\n", name, rel, ok ? "ok" : "FAIL", nan ? " (NaN: unwritten or invalid)" : "");
    free(got);
    return ok;
}

// On the CPU emulation of CUDA (dev/emu defines EMU_CUDA; `make -C dev/cuda check-emu`) the notebooks validate
// every version on their smaller shapes (each skips the rest with `if (EMULATED && ...) continue;`), and time
// nothing: time_ms is NaN there
#ifdef EMU_CUDA
#define EMULATED 1
#else
#define EMULATED 0
#endif

// median ms of `repeats` runs of fn(args...) after `warmup` runs, timed with events (NaN on the emulator)
template <class F>
float time_ms(F fn, int warmup = 5, int repeats = 50) {
    if (EMULATED) { return NAN; }
    for (int i = 0; i < warmup; i++) { fn(); }
    cudaCheck(cudaDeviceSynchronize());
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    float* t = (float*)mallocCheck(repeats * sizeof(float));
    for (int i = 0; i < repeats; i++) {
        cudaCheck(cudaEventRecord(start));
        fn();
        cudaCheck(cudaEventRecord(stop));
        cudaCheck(cudaEventSynchronize(stop));
        cudaCheck(cudaEventElapsedTime(&t[i], start, stop));
    }
    for (int i = 1; i < repeats; i++) { // insertion sort; the median is the middle
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { float x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    }
    float median = t[repeats / 2];
    free(t);
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    return median;
}

// 0 with a note when there is no device (the caller exits 2): the CPU references still build
int require_device(const char* name) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("%s: no CUDA device, nothing to validate or time here\n", name);
        return 0;
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("%s on %s\n", name, prop.name);
    return 1;
}

static int failures_ = 0;
#define EXPECT(ok) do { if (!(ok)) { failures_++; } } while (0)

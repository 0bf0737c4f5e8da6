/*
bertc/testing.h: what test_bert.c and test_bert.cu share. A check that counts and prints, tensor
comparisons with a written-down tolerance, the reader of dev/reference.py's PyTorch states, and
a runner for "this must fail with that message" checks.

Defines: check, tests_summary, scratch_path, compare_tensor, compare_norm, RefState, ref_state_load, ref_state_free,
expect_failure, write_corrupt.
Used by: test_bert.c, test_bert.cu.
*/
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "utils.h"   // defines: fopenCheck, freadCheck, error_exit
#include "formats.h" // defines: the reference state's header slots (REF_*)

// a reference state's strategies: full, frozen, lora, as train_bert.h's enum Strategy numbers them
#define REF_NUM_STRATEGIES 3

static int tests_passed = 0, tests_failed = 0;

// one check: counted, and printed as "OK   what" or "FAIL what"
static inline void check(int ok, const char* what) {
    if (ok) { tests_passed++; } else { tests_failed++; }
    printf("%s %s\n", ok ? "OK  " : "FAIL", what);
    fflush(stdout);
}

// the last lines of a test program, and its exit code
static inline int tests_summary(void) {
    printf("\noverall okay: %d\n", tests_failed == 0);
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}

// a fresh file name under /tmp from a "/tmp/name_XXXXXX" template (mkstemp): test programs that run side by side
// (make test-emu runs the plain and the sanitized test_bertcu at once) must not rename or remove each other's files
static inline void scratch_path(char* tmpl) {
    int fd = mkstemp(tmpl);
    if (fd < 0) { fprintf(stderr, "Error: could not create a scratch file from %s\n", tmpl); exit(EXIT_FAILURE); }
    close(fd);
}

// Compare n floats elementwise with tolerance abs_tol + rel_tol * |ref|; prints the first few pairs
// and the max difference. Returns 1 if every element is within tolerance (NaN anywhere fails).
static inline int compare_tensor(const char* label, const float* got, const float* ref, size_t n, float abs_tol,
                                 float rel_tol,
                          int print_first) {
    float max_diff = 0.0f;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float diff = fabsf(got[i] - ref[i]);
        if (!(diff <= abs_tol + rel_tol * fabsf(ref[i]))) { bad++; }
        if (diff > max_diff || isnan(diff)) { max_diff = isnan(diff) ? INFINITY : diff; }
    }
    for (int i = 0; i < print_first && (size_t)i < n; i++) {
        printf("    %s[%d] %+.6e %+.6e\n", label, i, got[i], ref[i]);
    }
    printf("TENSOR %s %-12s max diff %.2e  (%zu elements, %zu outside %.0e + %.0e |ref|)\n", bad == 0 ? "OK " : "BAD",
           label, max_diff, n, bad, abs_tol, rel_tol);
    return bad == 0;
}

// ||got - ref|| / ||ref|| <= tol: for reduced precision, where single elements near zero mean nothing
static inline int compare_norm(const char* label, const float* got, const float* ref, size_t n, double tol) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) { double d = (double)got[i] - ref[i]; num += d * d; den += (double)ref[i] * ref[i]; }
    double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    int ok = rel <= tol; // NaN fails
    printf("TENSOR %s %-12s rel err %.2e  (%zu elements, tol %.0e)\n", ok ? "OK " : "BAD", label, rel, n, tol);
    return ok;
}

// ----------------------------------------------------------------------------
// reference states (docs/formats.md, "Reference state"): one batch through Hugging Face
// BertForSequenceClassification (PEFT for LoRA) with dropout 0, and 10 AdamW steps on it

typedef struct {
    int B, T, NC, strategy, r, nsteps, total_steps, warmup;
    float alpha, lr, weight_decay, max_norm;
    size_t num_params, num_lora;
    int* ids;          // (B, T)
    int* types;        // (B, T) token types: 1 on the second text of a sentence pair
    int* lengths;      // (B)
    int* labels;       // (B)
    float* lora_init;  // (num_lora)
    float* logits;     // (B, NC)
    float loss;
    float* grads;      // (num_params), zeros for frozen tensors
    float* lora_grads; // (num_lora)
    float* losses;     // (nsteps) the loss before each AdamW step
} RefState;

// Read a state; a missing file returns 0 (the caller records a failed check and goes on, so one
// missing state does not hide every later test). A malformed one is an error.
static inline int ref_state_load(RefState* st, const char* path) {
    memset(st, 0, sizeof(*st));
    if (access(path, R_OK) != 0) {
        printf("missing reference state %s: %s (make reference writes it)\n", path, strerror(errno));
        return 0;
    }
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    int32_t h[HEADER_INTS];
    long fsize = header_read(fp, path, h, REF_MAGIC, REF_VERSION, "reference state", "run `make reference`");
    st->B = h[REF_B]; st->T = h[REF_T]; st->NC = h[REF_NC]; st->strategy = h[REF_STRATEGY]; st->r = h[REF_LORA_R];
    st->alpha = bits_to_float(h[REF_LORA_ALPHA]); st->nsteps = h[REF_NSTEPS]; st->num_params = (size_t)h[REF_NPARAMS];
    st->num_lora = (size_t)h[REF_NLORA]; st->lr = bits_to_float(h[REF_LR]); st->total_steps = h[REF_TOTAL_STEPS];
    st->warmup = h[REF_WARMUP]; st->weight_decay = bits_to_float(h[REF_WEIGHT_DECAY]);
    st->max_norm = bits_to_float(h[REF_MAX_NORM]);
    if (st->B < 1 || st->T < 1 || st->NC < 2 || st->nsteps < 0 || st->nsteps > 64 || st->strategy < 0 ||
        st->strategy >= REF_NUM_STRATEGIES || h[REF_NPARAMS] < 0 || h[REF_NLORA] < 0) {
        error_exit("reference state %s has a bad header\n---> HINT: run `make reference`", path);
    }
    size_t BT = (size_t)st->B * st->T;
    size_t want = sizeof(h) + (2 * BT + 2 * (size_t)st->B) * sizeof(int32_t) +
                  (2 * st->num_lora + (size_t)st->B * st->NC + 1 + st->num_params + (size_t)st->nsteps) * sizeof(float);
    if ((size_t)fsize != want) {
        error_exit("reference state %s has %ld bytes, its header says %zu", path, fsize, want);
    }
    st->ids = (int*)mallocCheck(BT * sizeof(int));
    st->types = (int*)mallocCheck(BT * sizeof(int));
    st->lengths = (int*)mallocCheck(st->B * sizeof(int));
    st->labels = (int*)mallocCheck(st->B * sizeof(int));
    st->lora_init = (float*)mallocCheck(st->num_lora * sizeof(float));
    st->logits = (float*)mallocCheck((size_t)st->B * st->NC * sizeof(float));
    st->grads = (float*)mallocCheck(st->num_params * sizeof(float));
    st->lora_grads = (float*)mallocCheck(st->num_lora * sizeof(float));
    st->losses = (float*)mallocCheck((st->nsteps > 0 ? st->nsteps : 1) * sizeof(float));
    freadCheck(st->ids, sizeof(int), BT, fp, path);
    freadCheck(st->types, sizeof(int), BT, fp, path);
    for (size_t i = 0; i < BT; i++) {
        if (st->types[i] != 0 && st->types[i] != 1) {
            error_exit("reference state %s: token type %d", path, st->types[i]);
        }
    }
    freadCheck(st->lengths, sizeof(int), st->B, fp, path);
    freadCheck(st->labels, sizeof(int), st->B, fp, path);
    freadCheck(st->lora_init, sizeof(float), st->num_lora, fp, path);
    freadCheck(st->logits, sizeof(float), (size_t)st->B * st->NC, fp, path);
    freadCheck(&st->loss, sizeof(float), 1, fp, path);
    freadCheck(st->grads, sizeof(float), st->num_params, fp, path);
    freadCheck(st->lora_grads, sizeof(float), st->num_lora, fp, path);
    freadCheck(st->losses, sizeof(float), st->nsteps, fp, path);
    fcloseCheck(fp, path);
    return 1;
}

static inline void ref_state_free(RefState* st) {
    free(st->ids); free(st->types);
    free(st->lengths); free(st->labels); free(st->lora_init); free(st->logits);
    free(st->grads); free(st->lora_grads); free(st->losses);
}

// ----------------------------------------------------------------------------
// bad input: a corrupted copy of a file, and a child process that must reject it

// copy src to dst with one change: cut to `truncate` bytes (if > 0), or write int32 `value` at byte `offset` (if >= 0)
static inline void write_corrupt(const char* src, const char* dst, long truncate, long offset, int32_t value) {
    long n;
    char* buf = file_read_all(src, &n);
    if (offset >= 0 && offset + 4 <= n) { memcpy(buf + offset, &value, 4); }
    FILE* out;
    fopenCheck(&out, dst, "wb");
    fwriteCheck(buf, 1, truncate > 0 ? truncate : n, out, dst);
    fcloseCheck(out, dst);
    free(buf);
}

// Run fn(arg) in a child process: it must exit non-zero and say `want` (and `arg`, if name_arg) on stderr.
static inline void expect_failure(void (*fn)(const char*), const char* arg, const char* want, int name_arg,
                                  const char* what) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(EXIT_FAILURE); }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    char buf[8192] = {0};
    size_t n = 0;
    ssize_t k;
    while (n < sizeof(buf) - 1 && (k = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0) { n += k; }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) != 0 && strstr(buf, want) != NULL &&
             (!name_arg || strstr(buf, arg) != NULL);
    printf("    stderr: %s", buf);
    check(ok, what);
}

/*
bertc/dist.h: data-parallel processes (ranks) over MPI, or none. Built with -DUSE_MPI (make
USE_MPI=1, mpicc) these are MPI calls on MPI_COMM_WORLD; without it there is one process, rank 0 of
1, and every function below is a no-op, so the program reads the same with or without MPI.

Failures end the whole job: MPI calls return their errors (MPI_ERRORS_RETURN) and each is checked;
an error on any rank (an MPI call, or error_exit anywhere in the program) prints "Error (rank r of
K)" and calls MPI_Abort, which ends every rank. A rank that dies outright (kill -9) is seen by
mpirun, which ends the others. One that lives but is stuck (stopped, or blocked on a file) would
hold the others in their next collective for ever: a watchdog thread ends a rank whose collective
has waited longer than BERTC_DIST_TIMEOUT seconds (environment; default 600, longer than any wait
of a healthy job: rank 0's saves, a slow model load), and mpirun then ends the rest. Settings and
files that differ across ranks are caught at the start by dist_agree on checksums.

Defines: dist_init, dist_rank, dist_size, dist_sum_floats, dist_sum_doubles, dist_sum_ints,
dist_max_int, dist_barrier, dist_checksum, dist_agree, dist_finalize.
Used by: trainer.h (the batch split, the gradient and evaluation sums, rank 0's files), train_bert.c
(the CPU back end's gradient sum), cuda/dist.cuh (the GPU's: NCCL, its id sent through MPI).
*/
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include "utils.h" // defines: error_exit (and its hooks, which name the rank and end the job)
#ifdef USE_MPI
// C++ (nvcc, the emulator): MPI's C interface alone, without Open MPI's C++ bindings and warnings
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <pthread.h>
#endif

static int dist_rank_ = 0, dist_size_ = 1;

static inline int dist_rank(void) { return dist_rank_; }
static inline int dist_size(void) { return dist_size_; }

// FNV-1a over n bytes, continuing from h (start with DIST_CHECKSUM_START): what dist_agree compares
#define DIST_CHECKSUM_START 0xcbf29ce484222325ULL
static inline uint64_t dist_checksum(uint64_t h, const void* data, size_t n) {
    const unsigned char* p = (const unsigned char*)data;
    for (size_t i = 0; i < n; i++) { h = (h ^ p[i]) * 0x100000001b3ULL; }
    return h;
}

#ifdef USE_MPI

// error_exit's last act under MPI: end every rank of the job, not this one alone (an exit here
// would leave the others waiting in their next collective)
static void dist_abort_(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

static inline void mpi_check(int err, const char* call, const char* file, int line) {
    if (err == MPI_SUCCESS) { return; }
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(err, msg, &n);
    error_exit("MPI call %s failed: %s\n  at %s:%d", call, msg, file, line);
}
#define mpiCheck(call) mpi_check((call), #call, __FILE__, __LINE__)

// The watchdog: the collective in progress (its name, and when it began in ms; 0: none), checked
// every second by a thread that makes no MPI call of its own. A timed-out rank ends with _exit,
// which mpirun sees as a failed rank: MPI_Abort from this thread would need MPI_THREAD_MULTIPLE.
// gcc's __atomic builtins, not C11's _Atomic: nvcc compiles this file as C++ (train_bertcu).
static long long dist_wait_since_ms_;
static const char* volatile dist_wait_what_;
static int dist_timeout_s_ = 600;

static inline long long dist_now_ms_(void) { return (long long)(now_seconds() * 1000.0); }
static void* dist_watchdog_(void* arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        long long since = __atomic_load_n(&dist_wait_since_ms_, __ATOMIC_SEQ_CST);
        if (since != 0 && dist_now_ms_() - since > dist_timeout_s_ * 1000LL) {
            fprintf(stderr, "Error%s: %s waited more than %d s for the other ranks: one is stuck "
                    "or gone\n---> HINT: BERTC_DIST_TIMEOUT sets the limit in seconds\n",
                    error_who_, dist_wait_what_, dist_timeout_s_);
            _exit(EXIT_FAILURE);
        }
    }
    return NULL;
}
#define DIST_WAIT_(what, call) do { \
        dist_wait_what_ = what; \
        __atomic_store_n(&dist_wait_since_ms_, dist_now_ms_(), __ATOMIC_SEQ_CST); \
        mpiCheck(call); \
        __atomic_store_n(&dist_wait_since_ms_, 0, __ATOMIC_SEQ_CST); \
    } while (0)

// a collective on n elements, in pieces MPI's int counts can hold
#define DIST_ALLREDUCE_(x, n, type, op) do { \
        for (size_t i_ = 0; i_ < (n); i_ += (size_t)INT_MAX / 2) { \
            size_t k_ = (n) - i_ < (size_t)INT_MAX / 2 ? (n) - i_ : (size_t)INT_MAX / 2; \
            DIST_WAIT_("MPI_Allreduce", \
                       MPI_Allreduce(MPI_IN_PLACE, (x) + i_, (int)k_, type, op, MPI_COMM_WORLD)); \
        } \
    } while (0)

// MPI_Finalize once, however the program ends well (a return from main, exit after -h or a signal)
static inline void dist_finalize(void) {
    int done = 1;
    if (MPI_Finalized(&done) == MPI_SUCCESS && !done) { MPI_Finalize(); }
}
static void dist_finalize_at_exit_(void) { dist_finalize(); }

// Start MPI (mpirun gives the rank and size). From here errors name the rank and end the job. A
// program started without mpirun is rank 0 of 1.
static inline void dist_init(int* argc, char*** argv) {
    if (MPI_Init(argc, argv) != MPI_SUCCESS) { error_exit("MPI_Init failed"); }
    atexit(dist_finalize_at_exit_);
    error_exit_end_ = dist_abort_;
    mpiCheck(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank_));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &dist_size_));
    // one process speaks as it always has; several say who speaks
    if (dist_size_ > 1) {
        snprintf(error_who_, sizeof(error_who_), " (rank %d of %d)", dist_rank_, dist_size_);
    }
    const char* t = getenv("BERTC_DIST_TIMEOUT");
    if (t != NULL) {
        char* end;
        long v = strtol(t, &end, 10);
        if (*t == '\0' || *end != '\0' || v < 1 || v > 86400) {
            error_exit("BERTC_DIST_TIMEOUT=%s: want whole seconds, 1..86400", t);
        }
        dist_timeout_s_ = (int)v;
    }
    pthread_t watchdog;
    if (dist_size_ > 1 && pthread_create(&watchdog, NULL, dist_watchdog_, NULL) != 0) {
        error_exit("could not start the thread that watches for stuck ranks");
    }
}

static inline void dist_sum_floats(float* x, size_t n) {
    if (dist_size_ > 1) { DIST_ALLREDUCE_(x, n, MPI_FLOAT, MPI_SUM); }
}
static inline void dist_sum_doubles(double* x, size_t n) {
    if (dist_size_ > 1) { DIST_ALLREDUCE_(x, n, MPI_DOUBLE, MPI_SUM); }
}
static inline void dist_sum_ints(int* x, size_t n) {
    if (dist_size_ > 1) { DIST_ALLREDUCE_(x, n, MPI_INT, MPI_SUM); }
}
static inline int dist_max_int(int x) {
    if (dist_size_ > 1) { DIST_ALLREDUCE_(&x, (size_t)1, MPI_INT, MPI_MAX); }
    return x;
}
static inline void dist_barrier(void) {
    if (dist_size_ > 1) { DIST_WAIT_("MPI_Barrier", MPI_Barrier(MPI_COMM_WORLD)); }
}

// Every rank must hold rank 0's checksum of `what` (the flags, a file, the weights): one that does
// not stops the job, and every rank names the first that differs.
static inline void dist_agree(uint64_t checksum, const char* what) {
    if (dist_size_ == 1) { return; }
    uint64_t* all = (uint64_t*)mallocCheck((size_t)dist_size_ * sizeof(uint64_t));
    DIST_WAIT_("MPI_Allgather",
               MPI_Allgather(&checksum, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD));
    for (int r = 1; r < dist_size_; r++) {
        if (all[r] != all[0]) {
            error_exit("rank %d's %s differs from rank 0's (checksum %016llx, rank 0 %016llx)\n"
                       "---> HINT: every rank needs the same flags and the same files",
                       r, what, (unsigned long long)all[r], (unsigned long long)all[0]);
        }
    }
    free(all);
}

#else // one process: rank 0 of 1, nothing to reduce or agree on

static inline void dist_init(int* argc, char*** argv) { (void)argc; (void)argv; }
static inline void dist_sum_floats(float* x, size_t n) { (void)x; (void)n; }
static inline void dist_sum_doubles(double* x, size_t n) { (void)x; (void)n; }
static inline void dist_sum_ints(int* x, size_t n) { (void)x; (void)n; }
static inline int dist_max_int(int x) { return x; }
static inline void dist_barrier(void) {}
static inline void dist_agree(uint64_t checksum, const char* what) { (void)checksum; (void)what; }
static inline void dist_finalize(void) {}

#endif

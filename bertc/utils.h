/*
bertc/utils.h: checked I/O and allocation, atomic file writes, overflow-checked sizes, clocks.
Every failure prints one message naming the file (and the source line for I/O), removes a
half-written temp file, and exits non-zero.

Defines: error_exit, ErrorTrap, error_trap_, error_exit_hook_, error_who_, error_exit_end_,
fopenCheck, freadCheck, fwriteCheck, fflushCheck, fcloseCheck, mallocCheck, callocCheck,
reallocCheck, file_size, path_join, atomic_open, atomic_commit, size_mul, size_add, check_finite,
now_seconds.
Used by: every other bertc/ header, train_bert.c, train_bert.cu, the tests and dev/fuzz.

Fuzz builds (-DFUZZING, dev/fuzz/) turn error exits into a longjmp back to the harness,
so a rejected input is an ordinary outcome there, not a crash.
*/
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdarg.h>
#include <math.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <setjmp.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#ifdef FUZZING
extern jmp_buf fuzz_escape;        // set by the fuzz harness around each input
static FILE* fuzz_open_files[16];  // what a rejected input left open; the harness closes it
#define exit_failure_() longjmp(fuzz_escape, 1)
#else
#define exit_failure_() exit(EXIT_FAILURE)
#endif

// ----------------------------------------------------------------------------
// errors

// The temp file an atomic write has open, if any: closed and removed when the write fails. One per thread: the
// GPU back end's save thread writes its own files while the main thread goes on.
static __thread char pending_tmp_[4200];
static __thread FILE* pending_fp_;

// A thread that must not end the process (the save thread, trainer.h) sets error_trap_ around its
// work: error_exit then keeps the message there and jumps back to the thread's setjmp, and the main
// thread reports it once it has joined the thread. exit() under a live thread would tear down what
// the thread still uses.
typedef struct {
    jmp_buf env;
    char message[8192];
} ErrorTrap;
static __thread ErrorTrap* error_trap_;

// Called once before error_exit ends the process (the trainer joins a save still in flight, see above).
static void (*error_exit_hook_)(void);
// Where several processes share one stderr, who speaks (dist.h: " (rank 1 of 4)"), and what
// ends the process in place of exit(1) (dist.h: MPI_Abort, which ends every rank). One process:
// "" and exit.
static char error_who_[64];
static void (*error_exit_end_)(void);

// the message of a printf-style format into buf, inside a variadic function whose last named argument is fmt
#define FORMAT_MESSAGE(buf, fmt) do { va_list ap_; va_start(ap_, fmt); vsnprintf(buf, sizeof(buf), fmt, ap_); \
    va_end(ap_); } while (0)

// the temp file of a failed atomic write, closed and removed
static inline void pending_remove_(void) {
    if (pending_fp_ != NULL) {
#ifdef FUZZING
        for (int i = 0; i < 16; i++) { if (fuzz_open_files[i] == pending_fp_) { fuzz_open_files[i] = NULL; } }
#endif
        fclose(pending_fp_);
        pending_fp_ = NULL;
    }
    if (pending_tmp_[0] != '\0') { remove(pending_tmp_); pending_tmp_[0] = '\0'; }
}

// print "Error: <message>" (the message may carry its own "---> HINT:" line) and exit(1); in a thread with an
// error trap, keep the message there and jump back instead. The message comes first: it may name the temp file.
static inline void error_exit(const char* fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void error_exit(const char* fmt, ...) {
    if (error_trap_ != NULL) {
        FORMAT_MESSAGE(error_trap_->message, fmt);
        pending_remove_();
        longjmp(error_trap_->env, 1);
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "Error%s: ", error_who_);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    pending_remove_();
    void (*hook)(void) = error_exit_hook_;
    error_exit_hook_ = NULL; // an error inside the hook must not call it again
    if (hook != NULL) { hook(); }
    if (error_exit_end_ != NULL) { error_exit_end_(); }
    exit_failure_();
}

// ----------------------------------------------------------------------------
// checked stdio: fooCheck(...) is foo(...) that exits with the path and the calling line on failure

// Reading, only a regular file is opened: open() on a FIFO would wait for a writer forever, and a directory or a
// device is no input file. O_NONBLOCK keeps open() from waiting; it is cleared again before reading.
static inline FILE* fopen_regular_(const char* path, const char* mode, const char* file, int line) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { return NULL; }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        error_exit("%s is not a regular file (%s): refused, reading it could block or never end\n  at %s:%d", path,
                   S_ISDIR(sb.st_mode) ? "a directory" : S_ISFIFO(sb.st_mode) ? "a FIFO" : "a device or socket",
                   file, line);
    }
    FILE* fp = fcntl(fd, F_SETFL, 0) == 0 ? fdopen(fd, mode) : NULL;
    if (fp == NULL) { int e = errno; close(fd); errno = e; }
    return fp;
}

static inline void fopen_check(FILE** fp, const char* path, const char* mode, const char* file, int line) {
    int reading = mode[0] == 'r' && strchr(mode, '+') == NULL;
    *fp = reading ? fopen_regular_(path, mode, file, line) : fopen(path, mode);
    if (*fp == NULL) {
        error_exit("could not open %s (mode %s): %s\n  at %s:%d", path, mode, strerror(errno), file, line);
    }
#ifdef FUZZING
    for (int i = 0; i < 16; i++) { if (fuzz_open_files[i] == NULL) { fuzz_open_files[i] = *fp; break; } }
#endif
}
#define fopenCheck(fp, path, mode) fopen_check(fp, path, mode, __FILE__, __LINE__)

static inline void fread_check(void* ptr, size_t size, size_t nmemb, FILE* fp, const char* path, const char* file,
                               int line) {
    if (fread(ptr, size, nmemb, fp) != nmemb) {
        error_exit("short read from %s (wanted %zu items of %zu bytes)\n  at %s:%d", path, nmemb, size, file, line);
    }
}
#define freadCheck(ptr, size, nmemb, fp, path) fread_check(ptr, size, nmemb, fp, path, __FILE__, __LINE__)

static inline void fwrite_check(const void* ptr, size_t size, size_t nmemb, FILE* fp, const char* path,
                                const char* file,
                         int line) {
    if (fwrite(ptr, size, nmemb, fp) != nmemb) {
        error_exit("short write to %s: %s\n  at %s:%d", path, strerror(errno), file, line);
    }
}
#define fwriteCheck(ptr, size, nmemb, fp, path) fwrite_check(ptr, size, nmemb, fp, path, __FILE__, __LINE__)

// a full disk often shows up only here, when the buffered bytes finally go out
static inline void fflush_check(FILE* fp, const char* path, const char* file, int line) {
    if (fflush(fp) != 0 || ferror(fp)) {
        error_exit("could not write %s: %s\n  at %s:%d", path, strerror(errno), file, line);
    }
}
#define fflushCheck(fp, path) fflush_check(fp, path, __FILE__, __LINE__)

static inline void fclose_check(FILE* fp, const char* path, const char* file, int line) {
#ifdef FUZZING
    for (int i = 0; i < 16; i++) { if (fuzz_open_files[i] == fp) { fuzz_open_files[i] = NULL; } }
#endif
    int bad = ferror(fp);
    if (fclose(fp) != 0 || bad) { error_exit("could not close %s: %s\n  at %s:%d", path, strerror(errno), file, line); }
}
#define fcloseCheck(fp, path) fclose_check(fp, path, __FILE__, __LINE__)

static inline void* malloc_check(size_t size, const char* file, int line) {
    void* p = malloc(size == 0 ? 1 : size);
    if (p == NULL) { error_exit("out of memory allocating %zu bytes\n  at %s:%d", size, file, line); }
    return p;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

static inline void* calloc_check(size_t n, size_t size, const char* file, int line) {
    void* p = calloc(n == 0 ? 1 : n, size);
    if (p == NULL) { error_exit("out of memory allocating %zu x %zu bytes\n  at %s:%d", n, size, file, line); }
    return p;
}
#define callocCheck(n, size) calloc_check(n, size, __FILE__, __LINE__)

static inline void* realloc_check(void* old, size_t size, const char* file, int line) {
    void* p = realloc(old, size == 0 ? 1 : size);
    if (p == NULL) { error_exit("out of memory allocating %zu bytes\n  at %s:%d", size, file, line); }
    return p;
}
#define reallocCheck(old, size) realloc_check(old, size, __FILE__, __LINE__)

// size in bytes of an open file; the position is left where it was
static inline long file_size(FILE* fp, const char* path) {
    long here = ftell(fp);
    if (here < 0 || fseek(fp, 0, SEEK_END) != 0) { error_exit("could not seek in %s: %s", path, strerror(errno)); }
    long size = ftell(fp);
    if (size < 0 || fseek(fp, here, SEEK_SET) != 0) { error_exit("could not seek in %s: %s", path, strerror(errno)); }
    return size;
}

// a whole file in memory (malloc'd); its size in *n
static inline char* file_read_all(const char* path, long* n) {
    FILE* fp;
    fopenCheck(&fp, path, "rb");
    *n = file_size(fp, path);
    char* buf = (char*)mallocCheck(*n);
    freadCheck(buf, 1, *n, fp, path);
    fcloseCheck(fp, path);
    return buf;
}

// out = dir/name; a path that does not fit is an error, never silently cut short
static inline void path_join(char* out, size_t out_size, const char* dir, const char* name) {
    int n = snprintf(out, out_size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= out_size) {
        error_exit("path too long (%zu bytes at most): %s/%s", out_size - 1, dir, name);
    }
}

// ----------------------------------------------------------------------------
// Atomic writes: everything goes to path.<pid>.tmp, renamed over path only once it is complete, so
// a crash leaves the old file or the new one, never half of one. The pid keeps two processes' temp
// files apart (the output directory's lock, trainer.h, keeps two runs out of one directory; this
// keeps any other writer's temp file from being ours). A failed write closes and removes the temp
// file (error_exit does, through pending_tmp_).

static inline FILE* atomic_open(const char* path) {
    int n = snprintf(pending_tmp_, sizeof(pending_tmp_), "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(pending_tmp_)) {
        pending_tmp_[0] = '\0';
        error_exit("path too long for a temp file: %s", path);
    }
    fopenCheck(&pending_fp_, pending_tmp_, "wb");
    return pending_fp_;
}

static inline void atomic_commit(FILE* fp, const char* path) {
    pending_fp_ = NULL; // fclose releases it, whether or not the close succeeds
    fcloseCheck(fp, pending_tmp_);
    if (rename(pending_tmp_, path) != 0) {
        error_exit("could not rename %s to %s: %s", pending_tmp_, path, strerror(errno));
    }
    pending_tmp_[0] = '\0';
}

// ----------------------------------------------------------------------------
// sizes: products and sums of header fields are checked, so no file can make them wrap around

static inline size_t size_mul(size_t a, size_t b, const char* what) {
    size_t out;
    if (__builtin_mul_overflow(a, b, &out)) { error_exit("%s: size overflows (%zu x %zu)", what, a, b); }
    return out;
}

static inline size_t size_add(size_t a, size_t b, const char* what) {
    size_t out;
    if (__builtin_add_overflow(a, b, &out)) { error_exit("%s: size overflows (%zu + %zu)", what, a, b); }
    return out;
}

// every float finite: NaN or Inf in weights or moments is a corrupt (or diverged) file
static inline void check_finite(const float* x, size_t n, const char* path, const char* what) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            error_exit("%s: %s element %zu is %g; the file is corrupt or from a diverged run", path,
                       what, i, x[i]);
        }
    }
}

// ----------------------------------------------------------------------------
// clocks

static inline double now_seconds(void) { // for durations
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline double wall_seconds(void) { // seconds since 1970, for TensorBoard
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

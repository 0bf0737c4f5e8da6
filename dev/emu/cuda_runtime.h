/*
dev/emu/cuda_runtime.h: the CUDA execution model on the CPU, so that train_bert.cu's unmodified kernels
and host code run (slowly) on a machine without a GPU: `make test-emu` builds test_bertcu this way and
runs it on the tiny model. It stands in for <cuda_runtime.h>; cuda_bf16.h, cublas_v2.h and cublasLt.h
beside it stand in for theirs. dev/emu/cu2cpp.py rewrites the two constructs C++ cannot parse
(kernel<<<...>>>(...) and __shared__ declarations) into calls of this file; everything else compiles as it is.

What it models, and checks (a check that fails prints the kernel or call and exits non-zero):
- Every CUDA thread is a fiber: its own stack, with the block's threads switched cooperatively at
  __syncthreads, __syncwarp and warp shuffles, so barriers and shuffles behave as on the GPU. One block
  runs at a time, its threads in order (EMU_ORDER=reverse: in reverse order, so that a missing
  barrier reads different values; EMU_ORDER=warps: each warp as far as it can go before the next, as
  a warp that races ahead would; run all three). A barrier some threads never reach is a deadlock here
  and is reported with the kernel's name, as is a lane that exits while its warp waits at a shuffle.
  A kernel whose first launch never reached a barrier or shuffle runs its later launches without
  fibers, each thread to its end in the same order: most of the speed (EMU_FIBERS=all turns it off).
- Device memory is host memory, 256-byte aligned as cudaMalloc's, filled with 0xff bytes (NaN as float, -1 as int), so a
  read of a value no kernel wrote shows up as NaN; built with -fsanitize=address, a read or write
  past an allocation (or past a block's shared memory) stops at the faulting line. cudaMemcpy,
  cudaMemset, kernel pointer arguments and cuBLAS operands must lie inside device allocations, and
  cudaMemcpy's direction must match where its pointers are.
- Launch configurations as the GPU checks them: 1..1024 threads, grid limits, dynamic shared memory
  over 48 KB only after cudaFuncSetAttribute, and never past the card's opt-in limit (227 KB, H100).
  Launches are synchronous; a failed launch is returned by the next cudaGetLastError.
- Pinned host memory (cudaMallocHost) and cudaMemcpyAsync: the copy happens at the call, but the host
  side is then write-protected (read-only, or no access for a device-to-host copy) until the host has
  waited for it: cudaEventSynchronize on an event recorded after the copy, cudaDeviceSynchronize, or a
  blocking cudaMemcpy to or from pageable memory. A host access in between is a race on the GPU (the copy
  may not have run yet) and stops the run here, with the address. This project's rule, stricter than
  CUDA's: cudaMemcpyAsync's host side must be pinned (from pageable memory the copy is synchronous).
- One device, or EMU_DEVICES alike (cudaSetDevice picks one; all share this process's memory), so that
  emulated ranks each find a GPU of their own; nccl.h beside it sums their gradients over MPI.

What it cannot tell: speed, the GPU's memory model between blocks (blocks run one after the other,
so atomics and inter-block ordering are trivially correct here), the rounding of cuBLAS's own
summation order, and compiler-specific device behaviour. x86-64 Linux only (the fiber switch).
*/
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <sys/mman.h>
#include <signal.h>
#include <unistd.h>
#include <map>
#include <string>
#include <vector>
#include <type_traits>

#if !defined(__x86_64__)
#error "dev/emu: the fiber switch is written for x86-64"
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/asan_interface.h>
#define EMU_ASAN 1
#endif

#define EMU_CUDA 1 // code can tell it runs on the emulator (dev/cuda's notebooks then skip their timing)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)

// ----------------------------------------------------------------------------
// types and enums of the runtime API that train_bert.cu uses

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
// vector types carry the card's alignment: the builds compile with -fsanitize=alignment, so a load or store of
// one at an address not aligned to its size stops the run, as cudaErrorMisalignedAddress stops a card
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorLaunchOutOfResources = 701,
} cudaError_t;

typedef enum {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
} cudaMemcpyKind;

typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef enum { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 } cudaDeviceAttr;

struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
};

namespace emu {

// the card the emulator pretends to be (H100 SXM's limits)
static const size_t TOTAL_MEMORY = (size_t)80 << 30;
static const int SMEM_DEFAULT = 48 * 1024, SMEM_OPTIN = 227 * 1024;

[[noreturn]] static void fail(const char* what, const char* detail) {
    fprintf(stderr, "[emu] %s: %s\n", what, detail);
    exit(EXIT_FAILURE);
}

// ----------------------------------------------------------------------------
// device memory: every live allocation, so pointers can be checked against them

struct Alloc {
    size_t size;
};
static std::map<uintptr_t, Alloc>& allocs() {
    static std::map<uintptr_t, Alloc> m;
    return m;
}
static size_t& allocated() {
    static size_t n = 0;
    return n;
}

// the entry of m (start -> {size, ...}) whose allocation holds [p, p + n), or NULL
template <class M> static typename M::value_type* find_in(M& m, const void* p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) { return NULL; }
    --it;
    if (a < it->first || a + n > it->first + it->second.size) { return NULL; }
    return &*it;
}
// the device allocation holding [p, p + n), or NULL
static const std::pair<const uintptr_t, Alloc>* find(const void* p, size_t n) { return find_in(allocs(), p, n); }
static bool is_device(const void* p) { return find(p, 1) != NULL; }

// ----------------------------------------------------------------------------
// pinned host memory: page-aligned, so an in-flight async copy's host side can be protected

struct Pinned {
    size_t size, mapped; // asked for, mapped (whole pages)
    long pending;        // the async copy that last used it and has not been waited for (0: none)
};
static std::map<uintptr_t, Pinned>& pinned() {
    static std::map<uintptr_t, Pinned> m;
    return m;
}
static long& async_seq() { // async copies issued so far
    static long n = 0;
    return n;
}

// the pinned allocation holding [p, p + n), or NULL
static std::pair<const uintptr_t, Pinned>* find_pinned(const void* p, size_t n) { return find_in(pinned(), p, n); }

// the host waited for every async copy up to seq: their host sides are the host's again
static void host_waited(long seq) {
    for (auto& kv : pinned()) {
        if (kv.second.pending != 0 && kv.second.pending <= seq) {
            mprotect((void*)kv.first, kv.second.mapped, PROT_READ | PROT_WRITE);
            kv.second.pending = 0;
        }
    }
}

static struct sigaction& previous_segv() {
    static struct sigaction sa;
    return sa;
}
static void segv_handler(int sig, siginfo_t* info, void* ctx) {
    (void)ctx;
    const char* msg = "[emu] the host touched pinned memory while an async copy from or to it may still be in "
                      "flight: wait on an event recorded after the copy first\n";
    if (find_pinned(info->si_addr, 1) != NULL) {
        if (write(2, msg, strlen(msg)) < 0) {}
        _exit(EXIT_FAILURE);
    }
    sigaction(sig, &previous_segv(), NULL); // not ours: the faulting access repeats into the handler before us
}
static void install_segv_handler() {
    static bool done = false;
    if (done) { return; }
    done = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, &previous_segv());
}

static void check_range(const char* call, const void* p, size_t n) {
    if (n == 0) { return; }
    if (find(p, n) == NULL) {
        char msg[256];
        const char* where = is_device(p) ? "runs past the end of its device allocation" : "is not device memory";
        snprintf(msg, sizeof(msg), "%p + %zu bytes %s", p, n, where);
        fail(call, msg);
    }
}

// ----------------------------------------------------------------------------
// fibers: one per CUDA thread of the running block

struct Barrier {
    int arrived = 0, expected = 0;
};

struct Fiber {
    void* sp; // saved stack pointer while switched out
    char* stack_lo; // the stack's usable range
    size_t stack_size;
    uint3 tid;
    int linear, state; // state: RUN, WAIT, DONE
    int shuffles; // shuffles done (selects the half of the warp's exchange slots)
    Barrier* waiting;
};
enum { RUN = 0, WAIT = 1, DONE = 2 };

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Barrier> warp_bars;
    std::vector<std::vector<uint64_t>> warp_slots; // 2 x 32 exchange slots per warp (double buffered), 8 bytes each
    Barrier block_bar;
    void* dynamic_smem = NULL;
    // static __shared__ arrays: slices of one arena per launch, found by their declaration's key; no
    // allocation happens on a fiber (the sanitizers' allocator needs more stack than a fiber has)
    char* arena = NULL;
    size_t arena_used = 0;
    const char* keys[16];
    size_t offsets[16];
    int nkeys = 0;
    void (*entry)(void*) = NULL;
    void* entry_arg = NULL;
    const char* kernel = "";
    bool exited_before_barrier = false;
    bool direct = false; // threads run one after the other on the host's stack (see Launch)
    bool used_barrier = false; // some thread waited at a barrier or shuffled
};

static Block* cur_block = NULL;
static Fiber* cur_fiber = NULL;
static void* scheduler_sp = NULL;

// thread t's (x, y, z) index in a block of shape `block`, x fastest
static inline uint3 thread_index(unsigned t, dim3 block) {
    return {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
}
// lanes in warp w of a block of nthreads threads (the last warp may be partial)
static inline int lanes_in_warp(int nthreads, int w) { return nthreads - w * 32 < 32 ? nthreads - w * 32 : 32; }
// barrier b is complete: reset it and wake the fibers [first, first + count) that wait at it
static void release(Block* blk, Barrier* b, int first, int count) {
    b->arrived = 0;
    for (int i = first; i < first + count; i++) {
        Fiber* g = &blk->fibers[i];
        if (g->state == WAIT && g->waiting == b) { g->state = RUN; }
    }
}

extern "C" void emu_switch(void** save_sp, void* new_sp);
extern "C" void emu_fiber_start(void);
// saves the callee-saved registers and the stack pointer into *save_sp, and resumes new_sp
__asm__(".text\n"
        ".globl emu_switch\n"
        "emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        // a new fiber's first switch lands here with its entry in r12: call it on an aligned stack
        ".globl emu_fiber_start\n"
        "emu_fiber_start:\n"
        "  call *%r12\n"
        "  ud2\n");

#ifdef EMU_ASAN
static const void* sched_stack_bottom = NULL;
static size_t sched_stack_size = 0;
#endif

// switch from the scheduler into fiber f, until it waits or finishes
static void resume(Fiber* f) {
    cur_fiber = f;
#ifdef EMU_ASAN
    void* fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->stack_lo, f->stack_size);
    emu_switch(&scheduler_sp, f->sp);
    __sanitizer_finish_switch_fiber(fake, &sched_stack_bottom, &sched_stack_size);
#else
    emu_switch(&scheduler_sp, f->sp);
#endif
}

// switch from the running fiber back to the scheduler (finished: the fiber's stack is abandoned)
static void yield(bool finished) {
#ifdef EMU_ASAN
    void* fake = NULL;
    __sanitizer_start_switch_fiber(finished ? NULL : &fake, sched_stack_bottom, sched_stack_size);
    emu_switch(&cur_fiber->sp, scheduler_sp);
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    (void)finished;
    emu_switch(&cur_fiber->sp, scheduler_sp);
#endif
}

static void fiber_main(void) {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &sched_stack_bottom, &sched_stack_size);
#endif
    cur_block->entry(cur_block->entry_arg);
    Fiber* f = cur_fiber;
    f->state = DONE;
    Block* b = cur_block;
    // a lane that leaves while its warp waits at a shuffle or __syncwarp: that warp can never go on
    Barrier* wb = &b->warp_bars[f->linear / 32];
    if (wb->arrived > 0) {
        fail(b->kernel, "a thread exited while other lanes of its warp wait at a shuffle or __syncwarp");
    }
    wb->expected--;
    // __syncthreads counts exited threads as arrived (as the hardware does for exited warps)
    if (b->block_bar.arrived > 0) { b->exited_before_barrier = true; }
    b->block_bar.expected--;
    if (b->block_bar.arrived > 0 && b->block_bar.arrived == b->block_bar.expected) {
        release(b, &b->block_bar, 0, (int)b->fibers.size());
    }
    yield(true);
    __builtin_unreachable();
}

// the stacks, reused by every block: 32 KB each (256 KB under ASan, whose frames are larger), a guard
// page below each so an overflow faults
static char* stacks = NULL;
static size_t stack_size = 0;
static int stacks_n = 0;

static void prepare_stacks(int n) {
    if (n <= stacks_n) { return; }
    if (stacks != NULL) { munmap(stacks, (size_t)stacks_n * stack_size); }
#ifdef EMU_ASAN
    stack_size = 256 * 1024;
#else
    stack_size = 32 * 1024;
#endif
    stacks = (char*)mmap(NULL, (size_t)n * stack_size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stacks == MAP_FAILED) { fail("emu", "cannot map the fiber stacks"); }
    for (int i = 0; i < n; i++) { mprotect(stacks + (size_t)i * stack_size, 4096, PROT_NONE); }
    stacks_n = n;
}

static void init_fiber(Fiber* f, int i) {
    f->stack_lo = stacks + (size_t)i * stack_size + 4096;
    f->stack_size = stack_size - 4096;
    // stacks are a power of two apart: start each at another offset within a page, or every fiber's top
    // frame lands in the same cache set
    uintptr_t top = ((uintptr_t)(f->stack_lo + f->stack_size) - (uintptr_t)(i % 61) * 64) & ~(uintptr_t)15;
#ifdef EMU_ASAN
    // the fiber that used this stack last never returned from fiber_main: its frame's redzones are still
    // poisoned, and the new fiber's first frames go exactly there
    ASAN_UNPOISON_MEMORY_REGION((char*)(f->stack_lo + f->stack_size) - 8192, 8192);
#endif
    void** sp = (void**)top;
    *--sp = (void*)emu_fiber_start; // emu_switch's ret pops this, leaving sp = top (16-byte aligned), so the
                                    // call in emu_fiber_start enters fiber_main with sp = 8 mod 16, as the ABI wants
    *--sp = NULL; // rbp
    *--sp = NULL; // rbx
    *--sp = (void*)fiber_main; // r12
    *--sp = NULL; // r13
    *--sp = NULL; // r14
    *--sp = NULL; // r15
    f->sp = sp;
    f->state = RUN;
    f->waiting = NULL;
    f->shuffles = 0;
}

// ----------------------------------------------------------------------------
// what kernels see

static uint3 threadIdx_, blockIdx_;
static dim3 blockDim_, gridDim_;

// The order a block's fibers run in (EMU_ORDER): forward, each runnable thread in turn until it waits, then the
// next; reverse, the same last to first (a grid's blocks too); warps, each warp in turn runs as far as it can,
// through its shuffles, until every lane waits at __syncthreads or has finished (a warp racing ahead of the others,
// as on the card: shared memory reused without a barrier between two block reductions shows only here).
enum { ORDER_FORWARD = 0, ORDER_REVERSE = 1, ORDER_WARPS = 2 };
static int& order_flag() {
    static int r = -1;
    return r;
}
static int thread_order() {
    int& r = order_flag();
    if (r < 0) {
        const char* e = getenv("EMU_ORDER");
        r = ORDER_FORWARD;
        if (e != NULL && strcmp(e, "reverse") == 0) { r = ORDER_REVERSE; }
        else if (e != NULL && strcmp(e, "warps") == 0) { r = ORDER_WARPS; }
        else if (e != NULL && strcmp(e, "forward") != 0) { fail("EMU_ORDER", "must be forward, reverse or warps"); }
    }
    return r;
}
static inline void set_order(int order) { order_flag() = order; }

static void set_thread(Fiber* f) { threadIdx_ = f->tid; }

// resume f if it can run (1), until it waits or finishes
static int run_fiber(Fiber* f) {
    if (f->state != RUN) { return 0; }
    set_thread(f);
    resume(f);
    return 1;
}

// wait at b until its expected count has arrived
static void barrier_wait(Barrier* b, int first, int count) {
    Block* blk = cur_block;
    if (blk->direct) {
        fail(blk->kernel, "reached a barrier or shuffle after earlier launches never did; rerun with EMU_FIBERS=all");
    }
    blk->used_barrier = true;
    b->arrived++;
    if (b->arrived == b->expected) {
        release(blk, b, first, count);
        return;
    }
    Fiber* f = cur_fiber;
    f->state = WAIT;
    f->waiting = b;
    yield(false);
    set_thread(f);
}

static void syncthreads() {
    Block* b = cur_block;
    barrier_wait(&b->block_bar, 0, (int)b->fibers.size());
}

static void syncwarp(unsigned mask) {
    if (mask != 0xffffffffu) { fail(cur_block->kernel, "__syncwarp with a partial mask is not modelled"); }
    int w = cur_fiber->linear / 32;
    barrier_wait(&cur_block->warp_bars[w], w * 32, lanes_in_warp((int)cur_block->fibers.size(), w));
}

// every lane publishes x, waits for the warp, and reads lane src's value. The slots are double buffered by
// the lanes' shuffle count (equal across a warp): the next shuffle writes the other half, and the one after
// can only start once every lane has passed the next barrier, so after every lane has read this half. Any type
// of up to 8 bytes travels whole, as CUDA's overloads do (a double is not rounded to float on the way).
template <class T> static T shfl(unsigned mask, T x, int lane_arg, bool is_xor, int width) {
    static_assert(std::is_arithmetic<T>::value && sizeof(T) <= 8, "shuffles of arithmetic types up to 8 bytes");
    Block* b = cur_block;
    if (mask != 0xffffffffu) { fail(b->kernel, "a shuffle with a partial mask is not modelled"); }
    if (width != 32) { fail(b->kernel, "a shuffle with width != 32 is not modelled"); }
    Fiber* f = cur_fiber;
    int w = f->linear / 32, lane = f->linear % 32;
    if (lanes_in_warp((int)b->fibers.size(), w) < 32) {
        fail(b->kernel, "a shuffle in a partial warp (blockDim not a multiple of 32)");
    }
    uint64_t* slots = &b->warp_slots[w][(f->shuffles & 1) * 32];
    f->shuffles++;
    memcpy(&slots[lane], &x, sizeof(T));
    barrier_wait(&b->warp_bars[w], w * 32, 32);
    int src = is_xor ? (lane ^ lane_arg) : lane_arg;
    T got = x;
    if (src >= 0 && src < 32) { memcpy(&got, &slots[src], sizeof(T)); }
    return got;
}

static inline void* dynamic_shared() { return cur_block->dynamic_smem; }

static inline void* block_shared(const char* key, size_t bytes) {
    Block* b = cur_block;
    for (int i = 0; i < b->nkeys; i++) {
        if (strcmp(b->keys[i], key) == 0) { return b->arena + b->offsets[i]; }
    }
    size_t at = (b->arena_used + 15) & ~(size_t)15;
    if (b->nkeys == 16 || at + bytes > (size_t)SMEM_DEFAULT) { fail(b->kernel, "over 48 KB of static shared memory"); }
    b->keys[b->nkeys] = key;
    b->offsets[b->nkeys++] = at;
    b->arena_used = at + bytes;
    memset(b->arena + at, 0xff, bytes);
    return b->arena + at;
}

// ----------------------------------------------------------------------------
// launches

// a block's dynamic shared memory, NaN-filled like device memory, and its static __shared__ arena emptied
static void begin_block(Block* b, size_t smem) {
    if (smem > 0) {
        b->dynamic_smem = malloc(smem);
        memset(b->dynamic_smem, 0xff, smem);
    }
}
static void end_block(Block* b) {
    free(b->dynamic_smem);
    b->dynamic_smem = NULL;
    b->nkeys = 0;
    b->arena_used = 0;
}

static cudaError_t& last_error() {
    static cudaError_t e = cudaSuccess;
    return e;
}
// per kernel: 0 not launched yet, 1 waits at barriers or shuffles, 2 never did in its first launch
static std::map<const void*, int>& kernel_kind() {
    static std::map<const void*, int> m;
    return m;
}
static bool all_fibers() {
    static int r = -1;
    if (r < 0) {
        const char* e = getenv("EMU_FIBERS");
        r = e != NULL && strcmp(e, "all") == 0;
    }
    return r == 1;
}
static std::map<const void*, int>& smem_attr() {
    static std::map<const void*, int> m;
    return m;
}

template <class T> static void check_arg(const char* kernel, int i, const T& a) {
    if constexpr (std::is_pointer<T>::value) {
        if (a != NULL && !is_device((const void*)a)) {
            char msg[160];
            snprintf(msg, sizeof(msg), "argument %d (%p) is not device memory", i, (const void*)a);
            fail(kernel, msg);
        }
    }
}

struct Launch {
    const char* name;
    const void* kernel;
    dim3 grid, block;
    size_t smem;

    template <class F, class... A> void operator()(F kernel_fn, A... args) const;
};

template <class F, class... A> void Launch::operator()(F kernel_fn, A... args) const {
    unsigned nthreads = block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u) {
        fprintf(stderr, "[emu] %s: invalid launch <<<(%u,%u,%u), (%u,%u,%u)>>>\n", name, grid.x, grid.y, grid.z,
                block.x, block.y, block.z);
        last_error() = cudaErrorInvalidConfiguration;
        return;
    }
    size_t limit = SMEM_DEFAULT;
    auto it = smem_attr().find(kernel);
    if (it != smem_attr().end() && (size_t)it->second > limit) { limit = it->second; }
    if (smem > limit) {
        fprintf(stderr, "[emu] %s: %zu bytes of dynamic shared memory, over the %zu allowed\n", name, smem, limit);
        last_error() = cudaErrorInvalidValue;
        return;
    }
    int i = 0;
    (check_arg(name, i++, args), ...);

    auto body = [&]() { kernel_fn(args...); };
    using Body = decltype(body);
    Block b;
    b.kernel = name;
    b.entry = [](void* p) { (*(Body*)p)(); };
    b.entry_arg = &body;
    prepare_stacks((int)nthreads);
    int nwarps = (int)(nthreads + 31) / 32;
    b.fibers.resize(nthreads);
    b.warp_bars.resize(nwarps);
    b.warp_slots.assign(nwarps, std::vector<uint64_t>(64));
    blockDim_ = block;
    gridDim_ = grid;
    int order = thread_order();
    bool reverse = order == ORDER_REVERSE;
    Block* saved = cur_block;
    cur_block = &b;
    // A kernel whose first launch never waited at a barrier or shuffled runs its later launches without
    // fibers: each thread to its end on the host's stack, in the same order. Much faster for elementwise
    // kernels; one that then does reach a barrier stops with a message (EMU_FIBERS=all turns this off).
    int& kind = kernel_kind()[kernel];
    std::vector<char> arena(SMEM_DEFAULT);
    b.arena = arena.data();
    b.direct = kind == 2 && !all_fibers();
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx0 = 0; bx0 < grid.x; bx0++) {
                unsigned bx = reverse ? grid.x - 1 - bx0 : bx0;
                blockIdx_ = {bx, by, bz};
                begin_block(&b, smem);
                if (b.direct) {
                    Fiber direct_fiber = {};
                    cur_fiber = &direct_fiber;
                    for (unsigned k = 0; k < nthreads; k++) {
                        unsigned t = reverse ? nthreads - 1 - k : k;
                        threadIdx_ = thread_index(t, block);
                        direct_fiber.linear = (int)t;
                        body();
                    }
                    cur_fiber = NULL;
                    end_block(&b);
                    continue;
                }
                for (unsigned t = 0; t < nthreads; t++) {
                    Fiber* f = &b.fibers[t];
                    init_fiber(f, (int)t);
                    f->linear = (int)t;
                    f->tid = thread_index(t, block);
                }
                for (int w = 0; w < nwarps; w++) {
                    b.warp_bars[w] = Barrier();
                    b.warp_bars[w].expected = lanes_in_warp((int)nthreads, w);
                }
                b.block_bar = Barrier();
                b.block_bar.expected = (int)nthreads;
                int done = 0;
                while (done < (int)nthreads) {
                    int ran = 0;
                    if (order == ORDER_WARPS) {
                        for (int w = 0; w < nwarps; w++) {
                            int ran_w;
                            do {
                                ran_w = 0;
                                for (int t = w * 32; t < w * 32 + lanes_in_warp((int)nthreads, w); t++) {
                                    ran_w += run_fiber(&b.fibers[t]);
                                }
                                ran += ran_w;
                            } while (ran_w > 0);
                        }
                    } else {
                        for (unsigned k = 0; k < nthreads; k++) {
                            ran += run_fiber(&b.fibers[reverse ? nthreads - 1 - k : k]);
                        }
                    }
                    done = 0;
                    for (unsigned t = 0; t < nthreads; t++) { done += b.fibers[t].state == DONE; }
                    if (done < (int)nthreads && ran == 0) {
                        fail(name, "deadlock: some threads wait at a barrier that the others never reach");
                    }
                }
                if (b.exited_before_barrier) {
                    static std::map<std::string, int> warned;
                    if (warned[name]++ == 0) {
                        fprintf(
                            stderr,
                            "[emu] warning: %s: threads exited while others of their block waited at __syncthreads\n",
                            name);
                    }
                    b.exited_before_barrier = false;
                }
                end_block(&b);
            }
    if (kind == 0) { kind = b.used_barrier ? 1 : 2; }
    cur_block = saved;
}

} // namespace emu

#define threadIdx (emu::threadIdx_)
#define blockIdx (emu::blockIdx_)
#define blockDim (emu::blockDim_)
#define gridDim (emu::gridDim_)
#define warpSize 32

// what cu2cpp.py writes for `kernel<<<grid, block, smem>>>(args)`: EMU_LAUNCH(kernel, grid, block, smem)(args)
#define EMU_LAUNCH(kernel, ...) emu_launch_(#kernel, kernel, __VA_ARGS__)
// the arguments convert to the kernel's parameter types at the call, as in a real launch (NULL included)
template <class F> struct EmuLauncher;
template <class... P> struct EmuLauncher<void (*)(P...)> {
    emu::Launch l;
    void (*f)(P...);
    void operator()(P... args) const { l(f, args...); }
};
template <class F>
static EmuLauncher<F> emu_launch_(const char* name, F f, dim3 grid, dim3 block, size_t smem = 0, int stream = 0) {
    (void)stream;
    return EmuLauncher<F>{{name, (const void*)f, grid, block, smem}, f};
}

static inline void __syncthreads() { emu::syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::syncwarp(mask); }
template <class T> static inline T __shfl_xor_sync(unsigned mask, T x, int lane_mask, int width = 32) {
    return emu::shfl(mask, x, lane_mask, true, width);
}
template <class T> static inline T __shfl_sync(unsigned mask, T x, int src, int width = 32) {
    return emu::shfl(mask, x, src, false, width);
}
// blocks run one at a time and a block's threads never interleave inside a statement (int, unsigned, float,
// double: the arguments must agree in type, as they pick one of CUDA's overloads)
template <class T> static inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}

// ----------------------------------------------------------------------------
// the runtime API

static inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        default: return "unknown error";
    }
}

static inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu::last_error();
    emu::last_error() = cudaSuccess;
    return e;
}
static inline cudaError_t cudaPeekAtLastError(void) { return emu::last_error(); }
static inline cudaError_t cudaDeviceSynchronize(void) {
    emu::host_waited(emu::async_seq());
    return cudaSuccess;
}
// One device, or EMU_DEVICES of them (alike, and each this process's memory), so that emulated
// ranks on one machine each find a GPU of their own (cuda/dist.cuh picks one per rank)
namespace emu {
static inline int device_count() {
    const char* n = getenv("EMU_DEVICES");
    return n != NULL && atoi(n) > 0 ? atoi(n) : 1;
}
static inline int& current_device() { static int d = 0; return d; }
}
static inline cudaError_t cudaGetDeviceCount(int* n) {
    *n = emu::device_count();
    return cudaSuccess;
}
static inline cudaError_t cudaGetDevice(int* d) {
    *d = emu::current_device();
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int d) {
    if (d < 0 || d >= emu::device_count()) { return cudaErrorInvalidValue; }
    emu::current_device() = d;
    return cudaSuccess;
}

static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (device < 0 || device >= emu::device_count()) { return cudaErrorInvalidValue; }
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "CPU emulation of an H100 (dev/emu)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->totalGlobalMem = emu::TOTAL_MEMORY;
    p->sharedMemPerBlock = emu::SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = emu::SMEM_OPTIN;
    return cudaSuccess;
}

static inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int device) {
    bool known = attr == cudaDevAttrMaxSharedMemoryPerBlockOptin;
    if (device < 0 || device >= emu::device_count() || !known) {
        return cudaErrorInvalidValue;
    }
    *v = emu::SMEM_OPTIN;
    return cudaSuccess;
}

template <class F> static inline cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute attr, int v) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > emu::SMEM_OPTIN) {
        return cudaErrorInvalidValue;
    }
    emu::smem_attr()[(const void*)f] = v;
    return cudaSuccess;
}

static inline cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
    *total_b = emu::TOTAL_MEMORY;
    *free_b = emu::TOTAL_MEMORY - emu::allocated();
    return cudaSuccess;
}

template <class T> static inline cudaError_t cudaMalloc(T** p, size_t n) {
    size_t size = n > 0 ? n : 1; // a zero-byte allocation still gets a distinct pointer, as on the GPU
    if (emu::allocated() + size > emu::TOTAL_MEMORY) {
        *p = NULL;
        return cudaErrorMemoryAllocation;
    }
    // 256-byte aligned, as cudaMalloc's pointers are (cuBLASLt chooses its algorithms by the operands' alignment);
    // the exact size, so the sanitizers still see a read past the end
    void* m = NULL;
    if (posix_memalign(&m, 256, size) != 0) {
        *p = NULL;
        return cudaErrorMemoryAllocation;
    }
    memset(m, 0xff, size);
    emu::allocs()[(uintptr_t)m] = {size};
    emu::allocated() += size;
    *p = (T*)m;
    return cudaSuccess;
}

static inline cudaError_t cudaFree(void* p) {
    if (p == NULL) { return cudaSuccess; }
    auto it = emu::allocs().find((uintptr_t)p);
    if (it == emu::allocs().end()) { emu::fail("cudaFree", "not the start of a device allocation"); }
    emu::allocated() -= it->second.size;
    emu::allocs().erase(it);
    free(p);
    return cudaSuccess;
}

namespace emu {
// the checks every copy gets, then the copy
static void copy_checked(const char* call, void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
    bool dd = is_device(dst), sd = is_device(src);
    char what[64];
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice) {
        snprintf(what, sizeof(what), "%s (destination)", call);
        check_range(what, dst, n);
    }
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice) {
        snprintf(what, sizeof(what), "%s (source)", call);
        check_range(what, src, n);
    }
    if ((kind == cudaMemcpyHostToDevice && sd) || (kind == cudaMemcpyDeviceToHost && dd) ||
        kind == cudaMemcpyHostToHost) {
        fail(call, "the kind says host memory where a pointer is device memory (or host to host)");
    }
    if (kind == cudaMemcpyDefault) { fail(call, "cudaMemcpyDefault is not modelled"); }
    memmove(dst, src, n);
}
} // namespace emu

static inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
    if (n == 0) { return cudaSuccess; }
    // to or from host memory, the copy waits for the work queued before it
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToHost) { emu::host_waited(emu::async_seq()); }
    emu::copy_checked("cudaMemcpy", dst, src, n, kind);
    return cudaSuccess;
}

static inline cudaError_t cudaMemset(void* p, int value, size_t n) {
    emu::check_range("cudaMemset", p, n);
    memset(p, value, n);
    return cudaSuccess;
}

typedef int cudaStream_t; // the default stream only
struct EmuEvent {
    long seq; // the async copies issued before it was recorded (-1: never recorded)
};
typedef EmuEvent* cudaEvent_t;

static inline cudaError_t cudaMallocHost(void** p, size_t n) {
    size_t size = n > 0 ? n : 1, page = (size_t)sysconf(_SC_PAGESIZE), mapped = (size + page - 1) / page * page;
    void* m = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        *p = NULL;
        return cudaErrorMemoryAllocation;
    }
    memset(m, 0xff, mapped);
    emu::pinned()[(uintptr_t)m] = {size, mapped, 0};
    emu::install_segv_handler();
    *p = m;
    return cudaSuccess;
}
template <class T> static inline cudaError_t cudaMallocHost(T** p, size_t n) { return cudaMallocHost((void**)p, n); }

static inline cudaError_t cudaFreeHost(void* p) {
    if (p == NULL) { return cudaSuccess; }
    auto it = emu::pinned().find((uintptr_t)p);
    if (it == emu::pinned().end()) { emu::fail("cudaFreeHost", "not the start of a pinned allocation"); }
    if (it->second.pending != 0) { emu::fail("cudaFreeHost", "an async copy from or to it was never waited for"); }
    munmap(p, it->second.mapped);
    emu::pinned().erase(it);
    return cudaSuccess;
}

// the copy happens now; its host side stays protected until the host waits for it (see the header)
static inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind,
                                          cudaStream_t stream = 0) {
    (void)stream;
    if (n == 0) { return cudaSuccess; }
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost) {
        emu::fail("cudaMemcpyAsync", "only host to device and device to host are modelled");
    }
    const void* host = kind == cudaMemcpyHostToDevice ? src : dst;
    auto* pin = emu::find_pinned(host, n);
    if (pin == NULL) {
        emu::fail("cudaMemcpyAsync", "its host side is not inside a cudaMallocHost allocation (from pageable memory "
                                     "the copy is synchronous)");
    }
    if (pin->second.pending != 0) { mprotect((void*)pin->first, pin->second.mapped, PROT_READ | PROT_WRITE); }
    emu::copy_checked("cudaMemcpyAsync", dst, src, n, kind);
    pin->second.pending = ++emu::async_seq();
    mprotect((void*)pin->first, pin->second.mapped, kind == cudaMemcpyHostToDevice ? PROT_READ : PROT_NONE);
    return cudaSuccess;
}

static inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new EmuEvent{-1};
    return cudaSuccess;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = 0) {
    (void)stream;
    e->seq = emu::async_seq();
    return cudaSuccess;
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (e->seq >= 0) { emu::host_waited(e->seq); }
    return cudaSuccess;
}
static inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
    (void)ms; (void)start; (void)stop;
    emu::fail("cudaEventElapsedTime", "the emulator has no GPU time to report (code can test EMU_CUDA)");
}

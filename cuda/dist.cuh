/*
cuda/dist.cuh: the GPU side of data-parallel training (bertc/dist.h is the CPU's): one GPU per
rank, and the sum of the ranks' gradients on the devices through NCCL, as llm.c does it
(llmc/zero.cuh, multi_gpu_config_init): MPI starts and names the ranks, rank 0 makes the NCCL id
and MPI_Bcast hands it to the others, and each rank joins one communicator with it.

Built with -DUSE_MPI (make train_bertcu USE_MPI=1, or train_bertcu_mpi). -DUSE_NCCL without MPI
is one rank alone, whose id needs no exchange: the lent GPU machine may have NCCL and no MPI, and
this still runs the NCCL path there (dev/gpu_check.sh). With neither, every function is a no-op.

With NCCL the all-reduce runs even on one rank, where it changes nothing: one rank then runs the
code that several run. Several GPUs are verified on paper only (README, "Many processes").

Defines: ncclCheck, gpu_dist_init, gpu_dist_sum_floats.
Used by: train_bert.cu (bert_init picks the device; bert_update sums the gradients).
*/
#pragma once
#include "common.cuh"         // defines: cudaCheck
#include "../bertc/dist.h"    // defines: dist_rank, dist_size, mpiCheck (with USE_MPI)
#if defined(USE_MPI) || defined(USE_NCCL)
#define GPU_DIST_NCCL 1
#include <nccl.h>
#endif

namespace cu {

#ifdef GPU_DIST_NCCL

inline void nccl_check(ncclResult_t r, const char* file, int line) {
    if (r != ncclSuccess) {
        error_exit("[NCCL ERROR] at %s:%d\n%s", file, line, ncclGetErrorString(r));
    }
}
#define ncclCheck(r) nccl_check(r, __FILE__, __LINE__)

static ncclComm_t gpu_dist_comm_;

// the rank's place among the ranks on its own machine, which picks its GPU
static int gpu_dist_local_rank_(void) {
#ifdef USE_MPI
    // the ranks that share memory with this one are those on its machine
    MPI_Comm local;
    int r = 0;
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local));
    mpiCheck(MPI_Comm_rank(local, &r));
    mpiCheck(MPI_Comm_free(&local));
    return r;
#else
    return 0;
#endif
}

// ncclCommDestroy before the CUDA runtime's own teardown: registered after the first CUDA call,
// so exit runs it first
static void gpu_dist_free_(void) { ncclCommDestroy(gpu_dist_comm_); }

// after dist_init and before any other CUDA call: this rank's GPU, then the communicator
inline void gpu_dist_init(void) {
    int local = gpu_dist_local_rank_(), ndev = 0;
    cudaCheck(cudaGetDeviceCount(&ndev));
    if (local >= ndev) { // two ranks on one GPU: NCCL refuses it ("Duplicate GPU detected")
        error_exit("rank %d is rank %d on its machine, which has %d GPUs\n"
                   "---> HINT: one rank per GPU: mpirun -np K with K GPUs on each machine",
                   dist_rank(), local, ndev);
    }
    cudaCheck(cudaSetDevice(local));
    ncclUniqueId id;
    if (dist_rank() == 0) { ncclCheck(ncclGetUniqueId(&id)); }
#ifdef USE_MPI
    mpiCheck(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD));
#endif
    ncclCheck(ncclCommInitRank(&gpu_dist_comm_, dist_size(), id, dist_rank()));
    atexit(gpu_dist_free_);
}

// x (n floats, device) = its sum over the ranks, on the default stream the kernels run on, so it
// follows the backward's kernels and precedes the optimizer's without a host wait
inline void gpu_dist_sum_floats(float* x, size_t n) {
    ncclCheck(ncclAllReduce(x, x, n, ncclFloat, ncclSum, gpu_dist_comm_, 0));
}

#else // one process, one GPU (device 0): nothing to set up or sum

inline void gpu_dist_init(void) {}
inline void gpu_dist_sum_floats(float* x, size_t n) { (void)x; (void)n; }

#endif

} // namespace cu

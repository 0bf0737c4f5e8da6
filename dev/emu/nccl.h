/*
dev/emu/nccl.h: the part of NCCL cuda/dist.cuh calls, for the CPU emulation (see cuda_runtime.h
beside it), over MPI: emulated device memory is this process's memory, so a rank's all-reduce is
MPI_Allreduce on it. Enough to run train_bertcu's ranks (train_bertcu_emu_mpi) and check that they
compute what one process computes; nothing of NCCL's speed or its own failure modes. Under
-DUSE_NCCL without MPI there is one rank, and the all-reduce leaves its buffer as it is.

As NCCL, it checks the count and type it is given, and that the buffer lies inside one device
allocation (an all-reduce on a host pointer is an error on a GPU, not a copy).
*/
#pragma once
#include <string.h>
#include "cuda_runtime.h"
#ifdef USE_MPI
#include <mpi.h>
#endif

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5
} ncclResult_t;
typedef enum { ncclFloat = 7 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
typedef struct { char internal[128]; } ncclUniqueId;
struct ncclComm {
    int nranks, rank;
};
typedef ncclComm* ncclComm_t;

static inline const char* ncclGetErrorString(ncclResult_t r) {
    switch (r) {
        case ncclSuccess: return "no error";
        case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
        case ncclSystemError: return "unhandled system error (the emulation's MPI call failed)";
        default: return "NCCL error (emulated)";
    }
}

// the id a real NCCL makes on rank 0 (a socket address) and the ranks receive: here a marker,
// which ncclCommInitRank checks arrived
static inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    memset(id, 0, sizeof(*id));
    snprintf(id->internal, sizeof(id->internal), "emu nccl id");
    return ncclSuccess;
}

static inline ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id,
                                            int rank) {
    if (nranks < 1 || rank < 0 || rank >= nranks || strcmp(id.internal, "emu nccl id") != 0) {
        return ncclInvalidArgument;
    }
#ifdef USE_MPI
    int size = 1;
    if (MPI_Comm_size(MPI_COMM_WORLD, &size) != MPI_SUCCESS || size != nranks) {
        return ncclInvalidArgument;
    }
#else
    if (nranks != 1) { return ncclInvalidArgument; }
#endif
    *comm = new ncclComm{nranks, rank};
    return ncclSuccess;
}

static inline ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}

// in place (sendbuff == recvbuff) or not, on the default stream: the emulated kernels before it
// have run, so the host reads their results
static inline ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                         ncclDataType_t type, ncclRedOp_t op, ncclComm_t comm,
                                         cudaStream_t stream) {
    (void)stream;
    if (comm == NULL || type != ncclFloat || op != ncclSum) { return ncclInvalidArgument; }
    emu::check_range("ncclAllReduce", sendbuff, count * sizeof(float));
    emu::check_range("ncclAllReduce", recvbuff, count * sizeof(float));
    if (sendbuff != recvbuff) { memcpy(recvbuff, sendbuff, count * sizeof(float)); }
#ifdef USE_MPI
    // in pieces MPI's int counts can hold
    for (size_t i = 0; i < count; i += (size_t)1 << 30) {
        size_t k = count - i < ((size_t)1 << 30) ? count - i : (size_t)1 << 30;
        if (MPI_Allreduce(MPI_IN_PLACE, (float*)recvbuff + i, (int)k, MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD) != MPI_SUCCESS) {
            return ncclSystemError;
        }
    }
#endif
    return ncclSuccess;
}

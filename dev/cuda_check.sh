#!/usr/bin/env bash
# make cuda-check: every GPU program (make gpu-programs) compiled and linked for Hopper (sm_90)
# and Ampere (sm_80) into build/cuda-check/ARCH/, with warnings on, even where no GPU runs (a
# compile alone would not see a missing library). Any line nvcc or the linker prints fails it.
# With them train_bertcu_mpi, the NCCL build (make train_bertcu USE_MPI=1), where mpicc is: ldd
# must find it linked against libnccl and libmpi.
cd "$(dirname "$0")/.." || exit 1
MPI=train_bertcu_mpi
if ! command -v "${MPICC:-mpicc}" > /dev/null; then
    echo "✗ mpicc not found: train_bertcu_mpi (NCCL) not built (make setup installs it)"; MPI=""
elif ! echo '#include <nccl.h>' | "${NVCC:-nvcc}" ${NCCL_HOME:+-I$NCCL_HOME/include} -E -x cu - \
        > /dev/null 2>&1; then # NCCL is not part of the CUDA toolkit everywhere
    echo "✗ nccl.h not found: train_bertcu_mpi (NCCL) not built (NCCL_HOME=dir where it is)"; MPI=""
fi
for arch in sm_90 sm_80; do
    echo "cuda-check: every GPU program for $arch (build/cuda-check/$arch)${MPI:+, and $MPI}"
    # make's ✓/✗ lines and the rules' one-line "nvcc -arch=..." notes are expected, nothing else
    out=$(make -s -B -j2 --no-print-directory NVCC_ARCH=$arch GPU_OUT=build/cuda-check/$arch/ \
        gpu-programs ${MPI:+build/cuda-check/$arch/$MPI} 2>&1 |
        grep -v -e '^✓' -e '^✗' -e '^nvcc -arch')
    if [ -n "$out" ] || [ ! -x build/cuda-check/$arch/train_bertcu ]; then
        echo "$out"
        echo "✗ cuda-check ($arch): nvcc or the linker printed warnings or errors"; exit 1
    fi
    if [ -n "$MPI" ]; then
        libs=$(ldd build/cuda-check/$arch/$MPI)
        for lib in libnccl libmpi; do
            echo "$libs" | grep -q "$lib.*=> /" || {
                echo "$libs"; echo "✗ cuda-check ($arch): $MPI is not linked to $lib"; exit 1; }
        done
    fi
done
rm -rf build/cuda-check
echo "cuda-check: all GPU programs${MPI:+ and $MPI (NCCL)} compiled and linked for sm_90 and sm_80"

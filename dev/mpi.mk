# dev/mpi.mk: the builds for several processes, included by the Makefile. Defines MPICC, the
# USE_MPI=1 switch, the NCCL flags of the GPU trainer's ranks (NVCC_NCCL), train_bert_mpi and
# dev/bench_allreduce.

# MPI (USE_MPI=1): train_bert built with mpicc splits each batch across the ranks of `mpirun -np K`
# (bertc/dist.h); the default build has no MPI. Debian: apt-get install libopenmpi-dev openmpi-bin.
# train_bert_mpi: that build beside the plain one, for tests/test_mpi.py (built wherever mpicc is,
# with train_bertcu_emu_mpi, the GPU trainer's ranks on the CUDA emulator)
MPICC ?= mpicc
ifeq ($(USE_MPI), 1)
  CC = $(MPICC)
  CFLAGS += -DUSE_MPI
  # the trainer alone: test_bertcu and dev/bench_gpu never start ranks (bert_init), so they stay plain
  $(GPU_OUT)train_bertcu: NVCC_EXTRA = $(NVCC_NCCL)
  $(info ✓ MPI (USE_MPI=1): mpirun -np K ./train_bert splits each batch across K ranks)
endif
train_bert_mpi: train_bert.c $(HEADERS)
	$(MPICC) $(CFLAGS) -DUSE_MPI $(OMP_FLAGS) -o $@ $< $(LDLIBS)
dev/bench_allreduce: dev/bench_allreduce.c $(HEADERS)
	$(MPICC) $(CFLAGS) -DUSE_MPI -o $@ $< $(LDLIBS)
# NCCL (USE_MPI=1, or train_bertcu_mpi beside the plain one): one GPU a rank of mpirun, gradients
# summed by NCCL (cuda/dist.cuh). NCCL_HOME: nccl.h and libnccl outside the CUDA install;
# NCCL_DIST=-DUSE_NCCL: one rank and no MPI (dev/gpu_check.sh, where the machine has no MPI)
MPI_SHOW = $(shell $(MPICC) --showme:$(1))
NCCL_DIST ?= -DUSE_MPI $(addprefix -I,$(call MPI_SHOW,incdirs)) \
	$(addprefix -L,$(call MPI_SHOW,libdirs)) $(addprefix -l,$(call MPI_SHOW,libs))
NVCC_NCCL = $(NCCL_DIST) $(if $(NCCL_HOME),-I$(NCCL_HOME)/include -L$(NCCL_HOME)/lib \
	-Xlinker -rpath=$(NCCL_HOME)/lib) -lnccl

/*
Times the gradient all-reduce of data-parallel training (bertc/dist.h's dist_sum_floats,
MPI_Allreduce with MPI_SUM in place) on a buffer of N floats: ms per all-reduce and the algorithm
bandwidth (bytes reduced / time). With K ranks a ring all-reduce sends and receives 2 (K - 1) / K
of the buffer on each rank. A benchmark, not a test: the min of REPEATS after one warm-up.
dev/bench_mpi.sh runs it beside the trainer.

    make dev/bench_allreduce && mpirun -np 2 ./dev/bench_allreduce [N] [REPEATS]
*/
#include <stdio.h>
#include <stdlib.h>
#include "../bertc/dist.h"

int main(int argc, char** argv) {
    dist_init(&argc, &argv);
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 22715526; // MiniLM's trainable floats
    int repeats = argc > 2 ? atoi(argv[2]) : 10;
    float* x = (float*)mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { x[i] = 1.0f; }
    dist_sum_floats(x, n); // warm-up: connections and buffers
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        dist_barrier();
        double t0 = now_seconds();
        dist_sum_floats(x, n);
        double t = now_seconds() - t0;
        if (t < best) { best = t; }
    }
    if (dist_rank() == 0) {
        double mb = n * sizeof(float) / 1e6;
        printf("all-reduce | %zu floats (%.1f MB) | %d ranks | %.2f ms | %.2f GB/s algorithm "
               "bandwidth | %.1f MB sent per rank\n", n, mb, dist_size(), best * 1e3,
               mb / 1e3 / best, mb * 2.0 * (dist_size() - 1) / dist_size());
    }
    free(x);
    dist_finalize();
    return 0;
}

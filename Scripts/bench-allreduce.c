/* The cost of surgeon's per-step all-reduce alone: MPI_Allreduce (in place, float, sum) of N
 * values, after a barrier so no process waits for another. Prints the median of 50 runs.
 *   mpicc -O2 -o /tmp/bench-allreduce Scripts/bench-allreduce.c
 *   mpirun -np 2 --bind-to none /tmp/bench-allreduce 832899
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int count = argc > 1 ? atoi(argv[1]) : 832899;
  float *values = malloc(sizeof(float) * (size_t)count);
  for (int i = 0; i < count; i++) values[i] = (float)(i % 7) * 1e-3f;
  enum { runs = 50 };
  double seconds[runs];
  for (int run = 0; run < runs; run++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    seconds[run] = MPI_Wtime() - start;
  }
  qsort(seconds, runs, sizeof(double), compare);
  if (rank == 0)
    printf("%d processes, %d floats (%zu bytes): median %.3f ms, min %.3f ms over %d runs\n",
           size, count, sizeof(float) * (size_t)count, 1e3 * seconds[runs / 2], 1e3 * seconds[0],
           runs);
  free(values);
  MPI_Finalize();
  return 0;
}

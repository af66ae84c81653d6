// The GEMM ceiling behind docs/performance.md's GEMM floors: one thread's sgemm speed on the
// MiniLM and BERT-base training steps' shapes, Debian's OpenBLAS against oneDNN's `dnnl_sgemm`
// (the other sgemm a system library offers here), each as one call and as the blocks of rows
// surgeon cuts a large product into. CPU time of the calling thread, best of 7, so the machine's
// other load matters less.
//
//   cc -O2 Scripts/bench/gemm-ceiling.c -o /tmp/gemm-ceiling -ldnnl -lopenblas -fopenmp
//   /tmp/gemm-ceiling
#include <cblas.h>
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
  const char *name;
  int transposeB, m, n, k, blocks;
} Shape;

int main(void) {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
  // Forward products are x · Wᵀ (transposed B); input gradients dy · W (plain B).
  const Shape shapes[] = {
      {"MiniLM Q/K/V/output x.W^T", 1, 2048, 384, 384, 8},
      {"MiniLM FFN in x.W^T", 1, 2048, 1536, 384, 8},
      {"MiniLM FFN out x.W^T", 1, 2048, 384, 1536, 8},
      {"MiniLM Q/K/V dy.W", 0, 2048, 384, 384, 8},
      {"MiniLM FFN in dy.W", 0, 2048, 384, 1536, 8},
      {"BERT-base Q/K/V x.W^T", 1, 512, 768, 768, 2},
      {"BERT-base FFN in x.W^T", 1, 512, 3072, 768, 2},
      {"BERT-base FFN out x.W^T", 1, 512, 768, 3072, 2},
  };
  const size_t largest = 2048 * 3072;
  float *a = malloc(sizeof(float) * largest), *b = malloc(sizeof(float) * largest);
  float *c = malloc(sizeof(float) * largest);
  for (size_t i = 0; i < largest; i++) {
    a[i] = rand() / (float)RAND_MAX - 0.5f;
    b[i] = rand() / (float)RAND_MAX - 0.5f;
  }
  printf("%-28s %10s %10s %10s %10s   (GFLOP/s, one thread)\n", "shape (m x n x k)", "OpenBLAS",
         "in blocks", "oneDNN", "in blocks");
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    const Shape z = shapes[s];
    const int lda = z.k, ldb = z.transposeB ? z.k : z.n, ldc = z.n, rows = z.m / z.blocks;
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int round = 0; round < 7; round++) {
      for (int way = 0; way < 4; way++) {
        const int step = way % 2 ? rows : z.m;
        double t = now();
        for (int row = 0; row < z.m; row += step) {
          if (way < 2)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, z.transposeB ? CblasTrans : CblasNoTrans,
                        step, z.n, z.k, 1, a + (size_t)row * lda, lda, b, ldb, 0,
                        c + (size_t)row * ldc, ldc);
          else
            dnnl_sgemm('N', z.transposeB ? 'T' : 'N', step, z.n, z.k, 1, a + (size_t)row * lda,
                       lda, b, ldb, 0, c + (size_t)row * ldc, ldc);
        }
        t = now() - t;
        if (t < best[way]) best[way] = t;
      }
    }
    const double gflop = 2.0 * z.m * z.n * z.k / 1e9;
    printf("%-28s %10.1f %10.1f %10.1f %10.1f   %d x %d x %d\n", z.name, gflop / best[0],
           gflop / best[1], gflop / best[2], gflop / best[3], z.m, z.n, z.k);
  }
  free(a);
  free(b);
  free(c);
  return 0;
}

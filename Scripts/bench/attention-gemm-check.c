// The two C checks behind docs/performance.md's notes on attention (2026-12-06), on Debian's
// OpenBLAS and oneDNN, one thread's CPU time so the machine's other load matters less:
//   1. one MiniLM layer's 384 score products (32 samples x 12 heads, 64 x 64 x 32) as 384
//      cblas_sgemm calls against one oneDNN matmul over the strided grid (what BatchedGEMM runs);
//   2. Q, K and V as three 256 x 384 x 384 products against one 256 x 1152 x 384 (a fused
//      projection), over the 8 row blocks GEMMBlocks cuts a 2048-row product into.
//
//   cc -O2 Scripts/bench/attention-gemm-check.c -o /tmp/attention-gemm-check \
//     -ldnnl -lopenblas -fopenmp && /tmp/attention-gemm-check
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

int main(void) {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
  enum { B = 32, H = 12, L = 64, D = 32, HID = 384, ROUNDS = 6, REPEATS = 20 };
  float *q = malloc(sizeof(float) * B * L * HID), *k = malloc(sizeof(float) * B * L * HID);
  float *s = malloc(sizeof(float) * B * H * L * L), *s2 = malloc(sizeof(float) * B * H * L * L);
  for (long i = 0; i < (long)B * L * HID; i++) {
    q[i] = rand() / (float)RAND_MAX - 0.5f;
    k[i] = rand() / (float)RAND_MAX - 0.5f;
  }
  dnnl_engine_t engine;
  dnnl_engine_create(&engine, dnnl_cpu, 0);
  // A = Q heads in place, B = K heads transposed (strides swapped), C = dense score blocks.
  dnnl_dims_t ad = {B, H, L, D}, bd = {B, H, D, L}, cd = {B, H, L, L};
  dnnl_dims_t as = {L * HID, D, HID, 1}, bs = {L * HID, D, 1, HID}, cs = {H * L * L, L * L, L, 1};
  dnnl_memory_desc_t a, b, c;
  dnnl_memory_desc_init_by_strides(&a, 4, ad, dnnl_f32, as);
  dnnl_memory_desc_init_by_strides(&b, 4, bd, dnnl_f32, bs);
  dnnl_memory_desc_init_by_strides(&c, 4, cd, dnnl_f32, cs);
  dnnl_matmul_desc_t description;
  dnnl_matmul_desc_init(&description, &a, &b, NULL, &c);
  dnnl_primitive_attr_t attributes;
  dnnl_primitive_attr_create(&attributes);
  float scale = 0.125f;
  dnnl_primitive_attr_set_output_scales(attributes, 1, 0, &scale);
  dnnl_primitive_desc_t pd;
  dnnl_primitive_desc_create(&pd, &description, attributes, engine, NULL);
  const char *implementation;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &implementation);
  dnnl_primitive_t matmul;
  dnnl_primitive_create(&matmul, pd);
  dnnl_stream_t stream;
  dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
  dnnl_memory_t ma, mb, mc;
  dnnl_memory_create(&ma, &a, engine, q);
  dnnl_memory_create(&mb, &b, engine, k);
  dnnl_memory_create(&mc, &c, engine, s);
  dnnl_exec_arg_t arguments[3] = {
      {DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
  printf("scores, one layer (oneDNN %s):\n", implementation);
  for (int r = 0; r < ROUNDS; r++) {
    double t0 = now();
    for (int i = 0; i < REPEATS; i++) {
      dnnl_primitive_execute(matmul, stream, 3, arguments);
      dnnl_stream_wait(stream);
    }
    double t1 = now();
    for (int i = 0; i < REPEATS; i++)
      for (int n = 0; n < B; n++)
        for (int h = 0; h < H; h++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, scale,
                      q + n * L * HID + h * D, HID, k + n * L * HID + h * D, HID, 0,
                      s2 + (n * H + h) * L * L, L);
    double t2 = now();
    printf("  oneDNN %.2f ms   %d cblas_sgemm %.2f ms\n", (t1 - t0) / REPEATS * 1e3, B * H,
           (t2 - t1) / REPEATS * 1e3);
  }
  enum { M = 256, N = 384, K = 384, BLOCKS = 8, FUSED_REPEATS = 5 };
  float *x = malloc(sizeof(float) * BLOCKS * M * K), *w = malloc(sizeof(float) * 3 * N * K);
  float *y = malloc(sizeof(float) * BLOCKS * M * 3 * N);
  for (int i = 0; i < BLOCKS * M * K; i++) x[i] = rand() / (float)RAND_MAX;
  for (int i = 0; i < 3 * N * K; i++) w[i] = rand() / (float)RAND_MAX;
  printf("Q/K/V projections, 8 row blocks:\n");
  for (int r = 0; r < ROUNDS; r++) {
    double t0 = now();
    for (int i = 0; i < FUSED_REPEATS; i++)
      for (int blk = 0; blk < BLOCKS; blk++)
        for (int p = 0; p < 3; p++)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, x + blk * M * K, K,
                      w + p * N * K, K, 0, y + p * BLOCKS * M * N + blk * M * N, N);
    double t1 = now();
    for (int i = 0; i < FUSED_REPEATS; i++)
      for (int blk = 0; blk < BLOCKS; blk++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, 3 * N, K, 1, x + blk * M * K, K,
                    w, K, 0, y + blk * M * 3 * N, 3 * N);
    double t2 = now();
    printf("  three %.2f ms   fused %.2f ms\n", (t1 - t0) / FUSED_REPEATS * 1e3,
           (t2 - t1) / FUSED_REPEATS * 1e3);
  }
  return 0;
}

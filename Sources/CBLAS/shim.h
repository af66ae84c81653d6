// OpenBLAS's CBLAS interface (pkg-config "openblas" points at Debian's optimised build).
#include <cblas.h>
#include <stddef.h>

// LAPACK ships inside libopenblas, but Debian installs no lapack.h / lapacke.h for it, so the
// Fortran routines surgeon calls are declared here: every argument by pointer, column-major
// arrays, 32-bit integers (this OpenBLAS is not built with INTERFACE64), and gfortran's hidden
// length of each CHARACTER argument appended at the end.

/// Singular value decomposition by divide and conquer.
void sgesdd_(
    const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u,
    const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *iwork,
    int *info, size_t jobz_length);

/// The same in double precision (the whitened factors of `init: svd_whitened`).
void dgesdd_(
    const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u,
    const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork,
    int *info, size_t jobz_length);

/// Cholesky factorisation of a symmetric positive definite matrix.
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
    size_t uplo_length);

// glibc's allocator tuning (mallopt), used next to the BLAS set-up to keep large buffers mapped.
#include <malloc.h>

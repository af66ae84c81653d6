// OpenBLAS's CBLAS interface (pkg-config "openblas" points at Debian's optimised build).
#include <cblas.h>

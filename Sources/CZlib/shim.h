// zlib's inflate for gzip-compressed IDX files (pkg-config "zlib").
#include <zlib.h>

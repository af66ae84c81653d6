// oneDNN's C API (Debian's libdnnl-dev installs no pkg-config file; header and library are on
// the default search paths).
#include <dnnl.h>

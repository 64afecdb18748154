// OpenBLAS's CBLAS interface (cblas_sgemm) and its thread and core queries (openblas_set_num_threads,
// openblas_get_corename). pkg-config's `openblas` puts the include directory of Debian's pthread
// variant first, so this finds OpenBLAS's cblas.h even when the system-wide cblas.h alternative is BLIS's.
#include <cblas.h>

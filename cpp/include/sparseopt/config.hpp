// Build configuration of the header-only core.
//
// SPARSEOPT_HAS_OPENMP is 1 when the including translation unit is compiled with OpenMP
// (the CMake target sparseopt::sparseopt adds the flags); kernels then run in parallel,
// otherwise on one thread with identical results.
#pragma once

#if defined(_OPENMP)
#define SPARSEOPT_HAS_OPENMP 1
#include <omp.h>
#else
#define SPARSEOPT_HAS_OPENMP 0
#endif

// Marks pointers that do not alias, so that row loops vectorise without run-time alias checks
// (the kernels check that the arrays they are given do not overlap).
#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define SPARSEOPT_RESTRICT __restrict
#else
#define SPARSEOPT_RESTRICT
#endif

// Functions that compile for the host and, under nvcc, for the device too: the per-element
// update formulas (optim/formulas.hpp), which the CPU row loops and the CUDA kernels both call,
// so that the two paths run the same arithmetic. Empty in a plain C++ build.
#if defined(__CUDACC__)
#define SPARSEOPT_HD __host__ __device__
#else
#define SPARSEOPT_HD
#endif

namespace sparseopt {

// Whether the kernels in this translation unit can use more than one thread.
inline constexpr bool has_openmp() noexcept { return SPARSEOPT_HAS_OPENMP != 0; }

// The thread count a kernel uses for num_threads == 0 (OpenMP's current default), 1 without OpenMP.
inline int max_threads() noexcept {
#if SPARSEOPT_HAS_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace sparseopt

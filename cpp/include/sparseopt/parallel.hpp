// OpenMP helpers. Kernels never touch process-wide settings (no omp_set_num_threads): the
// thread count is a per-call argument, 0 meaning OpenMP's current default.
#pragma once

#include <cstdint>
#include <exception>

#include "config.hpp"
#include "errors.hpp"

namespace sparseopt {
namespace detail {

// Below this many element updates a kernel stays on the calling thread: waking a team of
// threads costs more than the work.
inline constexpr std::int64_t parallel_min_work = std::int64_t(1) << 15;

// The number of threads a call with num_threads will use (0 = all available).
inline int resolve_threads(int num_threads) {
  require(num_threads >= 0, "num_threads must be >= 0 (0 means all available threads), got ",
          num_threads);
  const int available = max_threads();
  return num_threads == 0 ? available : num_threads;
}

// Calls fn(i, slot) for every i in [0, n), split statically over up to `threads` threads;
// slot in [0, threads) names the calling thread so that it can use its own scratch memory.
// `work` (elements touched) decides whether threads are worth starting. Kernels check their
// inputs before they get here; should fn throw anyway, the first exception is rethrown after
// the loop instead of terminating the process.
template <class F>
void parallel_for(std::int64_t n, int threads, std::int64_t work, F&& fn) {
#if SPARSEOPT_HAS_OPENMP
  if (threads > 1 && n > 1 && work >= parallel_min_work) {
    std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      try {
        fn(i, omp_get_thread_num());
      } catch (...) {
#pragma omp critical(sparseopt_parallel_for_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#else
  (void)threads;
  (void)work;
#endif
  for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
}

}  // namespace detail
}  // namespace sparseopt

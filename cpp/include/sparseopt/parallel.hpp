// OpenMP helpers. Kernels never touch process-wide settings (no omp_set_num_threads): the
// thread count is a per-call argument, 0 meaning OpenMP's current default.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <utility>
#include <vector>

#include "config.hpp"
#include "errors.hpp"

#if SPARSEOPT_HAS_OPENMP && (defined(__unix__) || defined(__APPLE__))
#include <pthread.h>
#define SPARSEOPT_FORK_GUARD 1
#else
#define SPARSEOPT_FORK_GUARD 0
#endif

namespace sparseopt {
namespace detail {

// GNU OpenMP cannot start a team in a process forked after the parent ran one (the child waits
// forever for threads that were not copied), and fork is how multiprocessing (and hogwild's
// backend="fork") starts workers. So a process forked after this library's first parallel
// region runs every kernel on its calling thread: the results are the same bits (they never
// depend on the thread count), only the speed differs.
inline std::atomic<bool>& forked_after_team() noexcept {
  static std::atomic<bool> flag{false};
  return flag;
}

// Called before every parallel region; the first call arranges for forked children to be
// flagged.
inline void note_team_started() noexcept {
#if SPARSEOPT_FORK_GUARD
  static const bool registered = [] {
    return pthread_atfork(nullptr, nullptr, [] { forked_after_team().store(true); }) == 0;
  }();
  (void)registered;
#endif
}

// Below this many element updates a kernel stays on the calling thread: waking a team of
// threads costs more than the work.
inline constexpr std::int64_t parallel_min_work = std::int64_t(1) << 15;

}  // namespace detail

// The most threads one call may ask for. OpenMP gives no error for a team it cannot start
// (libgomp ends the process, or crashes, from some ten thousand threads up), so the count is
// bounded here, far above any useful setting.
inline constexpr int max_num_threads = 1024;

namespace detail {

// The number of threads a call with num_threads will use (0 = all available).
inline int resolve_threads(int num_threads) {
  require(num_threads >= 0 && num_threads <= max_num_threads,
          "num_threads must be in [0, ", max_num_threads,
          "] (0 means all available threads), got ", num_threads);
  if (forked_after_team().load(std::memory_order_relaxed)) return 1;
  const int available = max_threads();
  return num_threads == 0 ? available : num_threads;
}

// Calls fn(i, slot) for every i in [0, n), split into one contiguous range per thread;
// slot in [0, threads) names the calling thread so that it can use its own scratch memory.
// cost_before(i) (non-decreasing, 0 at i = 0) is the cost of items [0, i): ranges are cut so
// that each thread gets about the same cost (the default treats items as equal). `work`
// (elements touched) decides whether threads are worth starting. Which thread runs an item
// never changes its result. Kernels check their inputs before they get here; should fn throw
// anyway, the first exception is rethrown after the loop instead of terminating the process.
template <class F, class CostBefore>
void parallel_for(std::int64_t n, int threads, std::int64_t work, F&& fn,
                  CostBefore&& cost_before) {
#if SPARSEOPT_HAS_OPENMP
  if (threads > 1 && n > 1 && work >= parallel_min_work) {
    std::exception_ptr error;
    const std::int64_t total = cost_before(n);
    note_team_started();
#pragma omp parallel num_threads(threads)
    {
      const std::int64_t slot = omp_get_thread_num(), slots = omp_get_num_threads();
      // The first item whose preceding cost reaches the share of the threads before `s`.
      auto first_item = [&](std::int64_t s) {
        std::int64_t lo = 0, hi = n;
        while (lo < hi) {
          const std::int64_t mid = lo + (hi - lo) / 2;
          if (cost_before(mid) * slots < total * s) lo = mid + 1; else hi = mid;
        }
        return s == slots ? n : lo;
      };
      const std::int64_t begin = first_item(slot), end = first_item(slot + 1);
      for (std::int64_t i = begin; i < end; ++i) {
        try {
          fn(i, static_cast<int>(slot));
        } catch (...) {
#pragma omp critical(sparseopt_parallel_for_error)
          if (!error) error = std::current_exception();
        }
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#else
  (void)threads;
  (void)work;
  (void)cost_before;
#endif
  for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
}

// Runs fn(slot, slots, sync) once on each thread of a team of `threads` (slots: the team's
// size, which OpenMP may make smaller; slot in [0, slots)), where sync() is a barrier every
// thread of the team reaches alike: for work in phases that read each other's results, such as
// the passes of a parallel radix sort. Without OpenMP, or for one thread, fn(0, 1, no-op).
// fn must not throw (allocate before).
template <class F>
void run_team(int threads, F&& fn) {
#if SPARSEOPT_HAS_OPENMP
  if (threads > 1) {
    note_team_started();
#pragma omp parallel num_threads(threads)
    {
      fn(omp_get_thread_num(), omp_get_num_threads(), [] {
#pragma omp barrier
      });
    }
    return;
  }
#else
  (void)threads;
#endif
  fn(0, 1, [] {});
}

// The first of items [0, n) that thread `slot` of `slots` takes when they are split evenly.
inline std::int64_t team_share(std::int64_t n, int slot, int slots) noexcept {
  return n / slots * slot + n % slots * slot / slots;  // n * slot / slots, without overflow
}

// Per-thread scratch: `threads` blocks of `width` elements, each starting on a cache line of its
// own (zero-filled). Blocks packed end to end share a line at each boundary, which both threads
// then write in turn for every row they sum there: with bag sums on two threads that made the
// sums of the Zipf-like lookups of a 16,384-lookup step 1.3x slower. Allocate before the
// parallel region (nothing in one may fail).
template <class T>
class ThreadRows {
 public:
  static_assert(64 % sizeof(T) == 0, "ThreadRows: an element type that divides a cache line");
  static constexpr std::size_t line = 64 / sizeof(T);  // elements per cache line

  ThreadRows() = default;  // no blocks (row() must not be called)
  ThreadRows(int threads, std::int64_t width)
      : stride_((static_cast<std::size_t>(width > 0 ? width : 1) + line - 1) / line * line),
        buffer_(stride_ * static_cast<std::size_t>(threads > 0 ? threads : 1) + line) {}

  // Thread `slot`'s block (scratch: writable through a const ThreadRows too).
  T* row(int slot) const noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(buffer_.data());
    const std::uintptr_t aligned = (address + 63) & ~std::uintptr_t(63);
    return reinterpret_cast<T*>(aligned) + static_cast<std::size_t>(slot) * stride_;
  }

 private:
  std::size_t stride_ = 0;
  std::vector<T> buffer_;
};

template <class F>
void parallel_for(std::int64_t n, int threads, std::int64_t work, F&& fn) {
  parallel_for(n, threads, work, std::forward<F>(fn), [](std::int64_t i) { return i; });
}

}  // namespace detail
}  // namespace sparseopt

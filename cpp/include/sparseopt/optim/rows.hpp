// A step's rows in the type it computes in, whatever the table stores.
//
// Every optimizer step computes in T = compute_t<P>: the table's own type for float and double
// tables, float for float16 and bfloat16 tables (half.hpp). A half table's state is float or a
// half type (S). The step opens each row it updates: a row stored in T is used in place; a half
// row is widened into this thread's scratch (one row per array: L1-sized, no float copy of the
// table or of the touched rows), updated by the very code of the float32 path, and narrowed back
// on close, to the nearest value or stochastically. So with rounding nearest a half table's row
// equals the float32 step from the widened row, rounded to nearest; with stochastic rounding each
// element's random bits are keyed by (seed, step, row, column, array) (RoundingStream), the same
// for any thread count. Exact mode's catch-up runs on the opened row too: one narrowing per row
// per step (or flush).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../half.hpp"
#include "../parallel.hpp"
#include "../simd.hpp"
#include "../view.hpp"

namespace sparseopt {

// How a half table's step stores its results (float and double tables ignore it).
struct HalfRounding {
  Rounding rounding = Rounding::stochastic;
  std::uint64_t seed = 0;
};

// The type a step on P tables computes in.
template <class P>
using compute_t = std::conditional_t<is_half_v<P>, float, P>;

namespace detail {

// The state types a table of P takes: its own type for float and double tables; float or a half
// type for a half table.
template <class P, class S>
inline constexpr bool state_type_ok_v =
    is_half_v<P> ? (std::is_same_v<S, float> || is_half_v<S>) : std::is_same_v<S, P>;

// Opens and closes rows for one step (or flush) of `arrays` arrays of width w. For tables stored
// in T it does nothing and allocates nothing. For half arrays the scratch (threads x arrays
// rows) is allocated here, before any parallel region, so that nothing in one can fail.
template <class T>
class RowAccess {
 public:
  RowAccess(const HalfRounding& how, std::int64_t step, int threads, std::int64_t w, int arrays,
            bool any_half)
      : how_(how), step_(step), w_(w), arrays_(arrays) {
    if (any_half) scratch_ = ThreadRows<float>(threads, std::int64_t(arrays) * std::max<std::int64_t>(w, 1));
    threads_ = threads;
  }

  // Row `row` of array `array` (its index in the step's list, which also keys its random bits)
  // as T: the row itself, or widened into this thread's scratch.
  template <class S>
  SPARSEOPT_ALWAYS_INLINE T* open(S* row, int array) const noexcept {
    static_assert(std::is_same_v<S, T> || (std::is_same_v<T, float> && is_half_v<S>), "a row stored as T or half");
    if constexpr (std::is_same_v<S, T>) {
      (void)array;
      return row;
    } else {
      float* out = slot(array);
      if (row == nullptr) return nullptr;
      const std::int64_t w = w_;
      simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
        float* SPARSEOPT_RESTRICT o = out;  // scratch never overlaps a table: the loop vectorises
        const S* SPARSEOPT_RESTRICT x = row;
        for (std::int64_t j = 0; j < w; ++j) o[j] = widen(x[j]);
      });
      return out;
    }
  }

  // Stores array `array`'s opened row back into `row` (row index r) with the step's rounding.
  template <class S>
  SPARSEOPT_ALWAYS_INLINE void close(S* row, std::int64_t r, int array) const noexcept {
    if constexpr (!std::is_same_v<S, T>) {
      if (row == nullptr) return;
      const float* in = slot(array);
      const std::int64_t w = w_;
      if (how_.rounding == Rounding::nearest) {
        simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
          S* SPARSEOPT_RESTRICT o = row;
          const float* SPARSEOPT_RESTRICT x = in;
          for (std::int64_t j = 0; j < w; ++j) o[j] = narrow_nearest<S>(x[j]);
        });
        return;
      }
      const RoundingStream stream(how_.seed, step_, array);
      constexpr std::int64_t block = 256;  // a multiple of 4: the random bits' groups
      std::uint16_t random[block + 4];
      for (std::int64_t j0 = 0; j0 < w; j0 += block) {
        const std::int64_t n = std::min(block, w - j0);
        simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
          // One hash per group of four elements, then a loop that vectorises.
          for (std::int64_t j = 0; j < n; j += 4) {
            const std::uint64_t z = stream.group(r, (j0 + j) >> 2);
            for (int i = 0; i < 4; ++i) random[j + i] = std::uint16_t(z >> (16 * i));
          }
          S* SPARSEOPT_RESTRICT o = row + j0;
          const float* SPARSEOPT_RESTRICT x = in + j0;
          const std::uint16_t* SPARSEOPT_RESTRICT bits = random;
          for (std::int64_t j = 0; j < n; ++j) o[j] = narrow_stochastic<S>(x[j], bits[j]);
        });
      }
    } else {
      (void)row, (void)r, (void)array;
    }
  }

  // An array stored one element per row: row r's element as T, and back.
  template <class S>
  SPARSEOPT_ALWAYS_INLINE T load(const S& x) const noexcept {
    if constexpr (std::is_same_v<S, T>)
      return x;
    else
      return widen(x);
  }
  template <class S>
  SPARSEOPT_ALWAYS_INLINE void store(S& x, T value, std::int64_t r, int array) const noexcept {
    if constexpr (std::is_same_v<S, T>) {
      (void)r, (void)array;
      x = value;
    } else {
      x = how_.rounding == Rounding::nearest
              ? narrow_nearest<S>(value)
              : narrow_stochastic<S>(value, RoundingStream(how_.seed, step_, array).bits(r, 0));
    }
  }

 private:
  float* slot(int array) const noexcept {
#if SPARSEOPT_HAS_OPENMP
    const int thread = std::min(omp_get_thread_num(), threads_ - 1);
#else
    const int thread = 0;
#endif
    return scratch_.row(thread) +
           static_cast<std::size_t>(array) * static_cast<std::size_t>(std::max<std::int64_t>(w_, 1));
  }

  HalfRounding how_;
  std::int64_t step_;
  std::int64_t w_;
  int arrays_;
  int threads_ = 1;
  ThreadRows<float> scratch_;  // a block of arrays_ rows per thread
};

template <class T, class Body, class... S, std::size_t... K>
SPARSEOPT_ALWAYS_INLINE void on_rows_impl(const RowAccess<T>& access, std::int64_t r, Body& body,
                                          std::index_sequence<K...>, S*... rows) {
  body(access.open(rows, int(K))...);
  (access.close(rows, r, int(K)), ...);
}

// body(rows as T...) for row r of each array (null: an array the step does not have), which
// are then stored back: array k of the list is array k of the access (its scratch and random
// bits).
template <class T, class Body, class... S>
SPARSEOPT_ALWAYS_INLINE void on_rows(const RowAccess<T>& access, std::int64_t r, Body&& body, S*... rows) {
  on_rows_impl(access, r, body, std::index_sequence_for<S...>{}, rows...);
}

// Whether any of the tables stores another type than T (a half table or half state).
template <class T, class... S>
inline constexpr bool any_wide_v = (!std::is_same_v<S, T> || ...);

// The RowAccess of one step (or flush) of a table of P whose state is stored as S...: `arrays`
// arrays (the parameter and its state) as on_rows lists them; scratch only when one of them is
// not stored as the type the step computes in.
template <class P, class... S>
RowAccess<compute_t<P>> row_access(const Table<P>& param, const HalfRounding& how, std::int64_t step,
                                   int num_threads, int arrays) {
  return RowAccess<compute_t<P>>(how, step, resolve_threads(num_threads), param.row_width, arrays,
                                 any_wide_v<compute_t<P>, P, S...>);
}

}  // namespace detail
}  // namespace sparseopt

// Row-wise Adagrad: one accumulator per row instead of one per element, so that the state of a
// huge embedding table is a single number per row. This is FBGEMM's and TorchRec's
// EXACT_ROWWISE_ADAGRAD (no weight decay; "exact" there means repeated indices are summed
// first, as here). For each touched row r with summed gradient g of w elements:
//   sum[r] += mean(g^2)                           mean over the row's w elements
//   p[r]   -= lr / (sqrt(sum[r]) + eps) * g       with the sum[r] just stored
// Precision: everything is computed in the table's compute type (float32 for float32 and half
// tables, float64 for float64 ones), as FBGEMM's CPU and CUDA kernels do for float32; the sum
// of squares adds eight partial sums in a pattern fixed by w alone, so the bits do not depend
// on the thread count (each row is updated by one thread).
// A zero gradient changes neither sum[r] nor p[r], so lazy updates are already the dense
// optimizer's result. A table with zero-width rows has nothing to average: its rows stay as
// they are.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../simd.hpp"
#include "common.hpp"
#include "formulas.hpp"

namespace sparseopt {

struct RowWiseAdagradOptions {
  double lr = 1e-2;
  double eps = 1e-10;

  void validate() const {
    detail::require_finite_at_least(lr, 0.0, "lr");
    // eps = 0 would divide 0 by 0 on a touched row whose gradient and accumulator are both 0.
    detail::require(std::isfinite(eps) && eps > 0.0, "eps must be a finite number > 0, got ", eps);
    // lr / eps bounds every row's multiplier: finite, so a zero gradient moves nothing.
    detail::require(std::isfinite(lr / eps), "lr / eps must be finite (it bounds the step "
                    "multiplier lr / (sqrt(sum) + eps)), got lr=", lr, " and eps=", eps);
  }

  // validate(), then the same bounds in T, the type the step computes in (float32 for float32
  // and half tables): eps > 0 and lr / eps finite there too, so that a zero gradient still
  // moves nothing (a float32 eps of 1e-50 is 0). Every rowwise_adagrad_step runs it before
  // writing.
  template <class T>
  void validate_in() const {
    validate();
    detail::require(T(eps) > T(0) && std::isfinite(T(lr) / T(eps)), "eps=", eps, " with lr=", lr,
                    " gives no finite lr / eps in ", detail::float_name<T>(),
                    ", the precision this table's step computes in; pass an eps for which lr / eps "
                    "is finite there (float32: below 3.4e38)");
  }
};

template <class T>
struct RowWiseAdagradState {
  T* sum = nullptr;  // one running mean-of-squares sum per row: num_rows values, param's dtype
};

namespace detail {

// sum of g[j]^2 over eight interleaved partial sums (partial l: elements l, l + 8, ... in
// order), combined pairwise: an order fixed by w alone. The partial sums are lanes of Vec<T>
// (one 8-float or two 4-double vectors), each lane doing exactly the scalar partial sum's
// operations.
template <class T>
SPARSEOPT_ALWAYS_INLINE T sum_of_squares(const T* SPARSEOPT_RESTRICT g, std::int64_t w) noexcept {
  constexpr std::int64_t parts = formulas::rowwise_parts;
  T part[parts] = {};
  std::int64_t j = 0;
#if SPARSEOPT_HAS_VECTOR_EXT
  constexpr std::int64_t lanes = std::int64_t(sizeof(Vec<T>) / sizeof(T));
  static_assert(parts % lanes == 0, "the partial sums fill whole vectors");
  constexpr std::int64_t vecs = parts / lanes;
  if (w >= parts) {
    Vec<T> acc[vecs] = {};
    for (; j + parts <= w; j += parts)
      for (std::int64_t v = 0; v < vecs; ++v) {
        Vec<T> x;
        load_vec(x, g + j + v * lanes);
        acc[v] += x * x;
      }
    for (std::int64_t v = 0; v < vecs; ++v) store_vec(part + v * lanes, acc[v]);
  }
#endif
  for (; j + parts <= w; j += parts)
    for (std::int64_t l = 0; l < parts; ++l) formulas::rowwise_square_add(part[l], g[j + l]);
  for (std::int64_t l = 0; j < w; ++j, ++l) formulas::rowwise_square_add(part[l], g[j]);
  return formulas::rowwise_combine_parts(part);
}

template <class T>
SPARSEOPT_ALWAYS_INLINE void rowwise_adagrad_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT s,
                         const T* SPARSEOPT_RESTRICT g, std::int64_t w, T lr, T eps) noexcept {
  if (w == 0) return;
  const T s_new = formulas::rowwise_new_sum(*s, sum_of_squares(g, w), w);
  *s = s_new;
  const T multiplier = formulas::rowwise_multiplier(s_new, lr, eps);
  std::int64_t j = 0;
#if SPARSEOPT_HAS_VECTOR_EXT
  // rowwise_adagrad a vector at a time, two per iteration (each lane the scalar's operations).
  constexpr std::int64_t lanes = std::int64_t(sizeof(Vec<T>) / sizeof(T));
  for (; j + 2 * lanes <= w; j += 2 * lanes) {
    Vec<T> p0, p1, g0, g1;
    load_vec(p0, p + j);
    load_vec(p1, p + j + lanes);
    load_vec(g0, g + j);
    load_vec(g1, g + j + lanes);
    p0 -= multiplier * g0;
    p1 -= multiplier * g1;
    store_vec(p + j, p0);
    store_vec(p + j + lanes, p1);
  }
#endif
  for (; j < w; ++j) formulas::rowwise_adagrad(p, j, g[j], multiplier);
}

}  // namespace detail

// Half tables (see adam_step) also take `step`, the optimizer's step count, which keys the
// stochastic rounding's random bits (float and double tables ignore both).
template <class P, class S, class Grad>
void rowwise_adagrad_step(const Table<P>& param, const Grad& grad,
                          const RowWiseAdagradState<S>& state,
                          const RowWiseAdagradOptions& options, int num_threads = 0,
                          const HalfRounding& how = {}, std::int64_t step = 0) {
  using T = compute_t<P>;
  static_assert(detail::is_gradient_v<Grad, T>, "grad: a RowSparse<T, I> or BagGradient<T, I> (T: float for half tables)");
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate_in<T>();
  const std::int64_t sum_bytes = param.num_rows * std::int64_t(sizeof(S));
  detail::require(state.sum != nullptr || param.num_rows == 0, "sum is null");
  const auto& plan = detail::plan_step(
      param, grad, num_threads, detail::WrittenArrays(param).add(state.sum, sum_bytes, "sum"));

  const std::int64_t w = param.row_width;
  const T lr = T(options.lr), eps = T(options.eps);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 2);
  detail::for_each_row(grad, plan, num_threads, [&](std::int64_t r, const T* g) {
    detail::on_rows(access, r, [&](T* p) {
      T sum = access.load(state.sum[r]);
      // AVX2 where the CPU has it (simd.hpp): the same arithmetic in T, a whole vector at a time.
      detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
        detail::rowwise_adagrad_row(p, &sum, g, w, lr, eps);
      });
      access.store(state.sum[r], sum, r, 1);
    }, param.row(r));
  },
      [&](std::int64_t r, auto level) {
        detail::prefetch_row(param.row(r), w, level);
        detail::prefetch_row(state.sum + r, 1, level);
      });
}

}  // namespace sparseopt

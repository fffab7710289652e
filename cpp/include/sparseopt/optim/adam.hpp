// Sparse Adam. Lazy mode follows torch.optim.SparseAdam exactly: on each touched row
//   m += (1 - beta1) (g - m);   v += (1 - beta2) (g^2 - v)
//   p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
// and untouched rows keep parameters and moments. The bias-correction count t is
//   global - the optimizer's step count (SparseAdam, PyTorch's Adam);
//   row    - the number of steps that touched this row, so a row first touched late still
//            gets a first step of size lr;
//   none   - no correction (t -> infinity).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.hpp"

namespace sparseopt {

enum class BiasCorrection { global, row, none };

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  Mode mode = Mode::lazy;
  BiasCorrection bias_correction = BiasCorrection::global;

  void validate() const {
    detail::require_finite_at_least(lr, 0.0, "lr");
    detail::require_unit_interval(beta1, "betas[0]");
    detail::require_unit_interval(beta2, "betas[1]");
    detail::require_finite_at_least(eps, 0.0, "eps");
    detail::require(mode == Mode::lazy, "Adam mode='exact' is not available yet; use mode='lazy'");
  }
};

template <class T>
struct AdamState {
  Table<T> exp_avg;                   // first moment m
  Table<T> exp_avg_sq;                // second moment v
  std::int64_t* row_steps = nullptr;  // per-row touch counts, needed for BiasCorrection::row
};

namespace detail {

// lr * sqrt(1 - beta2^t) / (1 - beta1^t): SparseAdam's step size after t steps.
inline double adam_step_size(const AdamOptions& o, std::int64_t t) {
  if (o.bias_correction == BiasCorrection::none) return o.lr;
  const double bc1 = 1.0 - std::pow(o.beta1, double(t));
  const double bc2 = 1.0 - std::pow(o.beta2, double(t));
  return o.lr * std::sqrt(bc2) / bc1;
}

// One touched row, written as SparseAdam writes it (old + (1 - beta) (new - old)) so that the
// rounding matches.
template <class T>
void adam_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m, T* SPARSEOPT_RESTRICT v,
              const T* SPARSEOPT_RESTRICT g, std::int64_t w, T keep1, T keep2, T eps,
              T step_size) noexcept {
  for (std::int64_t j = 0; j < w; ++j) {
    const T m_new = m[j] + (g[j] - m[j]) * keep1;
    const T v_new = v[j] + (g[j] * g[j] - v[j]) * keep2;
    m[j] = m_new;
    v[j] = v_new;
    p[j] -= step_size * (m_new / (std::sqrt(v_new) + eps));
  }
}

}  // namespace detail

// `step` is the optimizer's step count including this step (1 on the first call).
template <class T, class I>
void adam_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdamState<T>& state,
               const AdamOptions& options, std::int64_t step, int num_threads = 0) {
  options.validate();
  detail::require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  detail::require_same_rows(param, state.exp_avg, "exp_avg");
  detail::require_same_rows(param, state.exp_avg_sq, "exp_avg_sq");
  detail::require_disjoint(state.exp_avg.data, detail::byte_size(state.exp_avg), "exp_avg",
                           state.exp_avg_sq.data, detail::byte_size(state.exp_avg_sq),
                           "exp_avg_sq");
  const bool per_row = options.bias_correction == BiasCorrection::row;
  detail::require(!per_row || state.row_steps != nullptr || param.num_rows == 0,
                  "bias_correction='row' needs row_steps");
  const CoalescePlan<I>& plan = detail::plan_step(param, grad, num_threads);

  const std::int64_t w = param.row_width;
  const T keep1 = T(1.0 - options.beta1), keep2 = T(1.0 - options.beta2), eps = T(options.eps);
  const T global_step_size = T(detail::adam_step_size(options, step));
  detail::for_each_row(grad, plan, num_threads, [&](std::int64_t r, const T* g) {
    T step_size = global_step_size;
    if (per_row) step_size = T(detail::adam_step_size(options, ++state.row_steps[r]));
    detail::adam_row(param.row(r), state.exp_avg.row(r), state.exp_avg_sq.row(r), g, w, keep1,
                     keep2, eps, step_size);
  },
      [&](std::int64_t r) {
        detail::prefetch_row(param.row(r), w);
        detail::prefetch_row(state.exp_avg.row(r), w);
        detail::prefetch_row(state.exp_avg_sq.row(r), w);
      });
}

}  // namespace sparseopt

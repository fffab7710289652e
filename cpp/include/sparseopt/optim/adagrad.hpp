// Sparse Adagrad, PyTorch's formula (torch.optim.Adagrad with a sparse gradient):
//   clr = lr / (1 + (step - 1) * lr_decay)      step: global count, empty steps included
//   sum += g^2;  p -= clr * g / (sqrt(sum) + eps)
// A zero gradient changes nothing, so lazy updates are already the dense optimizer's result.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.hpp"
#include "formulas.hpp"

namespace sparseopt {

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double eps = 1e-10;

  void validate() const {
    detail::require_finite_at_least(lr, 0.0, "lr");
    detail::require_finite_at_least(lr_decay, 0.0, "lr_decay");
    detail::require_finite_at_least(eps, 0.0, "eps");
  }
};

template <class T>
struct AdagradState {
  Table<T> sum;  // running sum of squared gradients, the parameter's shape
};

namespace detail {

template <class T>
void adagrad_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT s, const T* SPARSEOPT_RESTRICT g,
                 std::int64_t w, T clr, T eps) noexcept {
  for (std::int64_t j = 0; j < w; ++j) formulas::adagrad(p, s, j, g[j], clr, eps);
}

}  // namespace detail

// `step` counts this step too (1 on the first call). Half tables: see adam_step.
template <class P, class S, class Grad>
void adagrad_step(const Table<P>& param, const Grad& grad, const AdagradState<S>& state,
                  const AdagradOptions& options, std::int64_t step, int num_threads = 0,
                  const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::is_gradient_v<Grad, T>, "grad: a RowSparse<T, I> or BagGradient<T, I> (T: float for half tables)");
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  detail::require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  detail::require_same_rows(param, state.sum, "sum");
  const auto& plan =
      detail::plan_step(param, grad, num_threads, detail::WrittenArrays(param).add(state.sum, "sum"));

  const std::int64_t w = param.row_width;
  const T clr = T(options.lr / (1.0 + double(step - 1) * options.lr_decay));
  const T eps = T(options.eps);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 2);
  detail::for_each_row(grad, plan, num_threads, [&](std::int64_t r, const T* g) {
    detail::on_rows(access, r, [&](T* p, T* sum) { detail::adagrad_row(p, sum, g, w, clr, eps); },
                    param.row(r), state.sum.row(r));
  },
      [&](std::int64_t r, auto level) {
        detail::prefetch_row(param.row(r), w, level);
        detail::prefetch_row(state.sum.row(r), w, level);
      });
}

}  // namespace sparseopt

// Sparse SGD with optional (heavy-ball or Nesterov) momentum, PyTorch's formula:
//   buf = momentum * buf + (1 - dampening) * g      (buf = g on its first step)
//   d   = g + momentum * buf if nesterov else buf   (d = g without momentum)
//   p  -= lr * d
// Lazy mode: each row follows that formula over only the steps that touch it, so a row's
// buffer starts at its first touch and untouched rows keep parameters and buffers.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace sparseopt {

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  Mode mode = Mode::lazy;

  void validate() const {
    detail::require_finite_at_least(lr, 0.0, "lr");
    detail::require_finite_at_least(momentum, 0.0, "momentum");
    detail::require(std::isfinite(dampening), "dampening must be a finite number, got ",
                    dampening);
    detail::require(!nesterov || (momentum > 0.0 && dampening == 0.0),
                    "nesterov=True needs momentum > 0 and dampening = 0, got momentum=", momentum,
                    " and dampening=", dampening);
    detail::require(mode == Mode::lazy || momentum == 0.0,
                    "mode='exact' with momentum is not available yet; use mode='lazy'");
  }
};

// State for momentum != 0: the buffer (the parameter's shape) and per-row touch counts (a row
// whose count is 0 has no buffer yet). Unused without momentum.
template <class T>
struct SgdState {
  Table<T> momentum_buffer;
  std::int64_t* row_steps = nullptr;
};

namespace detail {

template <class T>
void sgd_row(T* SPARSEOPT_RESTRICT p, const T* SPARSEOPT_RESTRICT g, std::int64_t w,
             T lr) noexcept {
  for (std::int64_t j = 0; j < w; ++j) p[j] -= lr * g[j];
}

// first: the row's buffer does not exist yet and starts as g (undampened), as in PyTorch.
template <class T>
void sgd_momentum_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT b,
                      const T* SPARSEOPT_RESTRICT g, std::int64_t w, T lr, T mu, T keep,
                      bool nesterov, bool first) noexcept {
  for (std::int64_t j = 0; j < w; ++j) {
    const T bj = first ? g[j] : mu * b[j] + keep * g[j];
    b[j] = bj;
    p[j] -= lr * (nesterov ? g[j] + mu * bj : bj);
  }
}

}  // namespace detail

template <class T, class I>
void sgd_step(const Table<T>& param, const RowSparse<T, I>& grad, const SgdState<T>& state,
              const SgdOptions& options, int num_threads = 0) {
  options.validate();
  const bool momentum = options.momentum != 0.0;
  if (momentum) {
    detail::require_same_rows(param, state.momentum_buffer, "momentum_buffer");
    detail::require(state.row_steps != nullptr || param.num_rows == 0, "row_steps is null");
  }
  const CoalescePlan<I>& plan = detail::plan_step(param, grad, num_threads);

  const std::int64_t w = param.row_width;
  const T lr = T(options.lr), mu = T(options.momentum), keep = T(1.0 - options.dampening);
  const bool nesterov = options.nesterov;
  detail::for_each_row(grad, plan, num_threads, [&](std::int64_t r, const T* g) {
    if (!momentum) return detail::sgd_row(param.row(r), g, w, lr);
    const bool first = state.row_steps[r]++ == 0;
    detail::sgd_momentum_row(param.row(r), state.momentum_buffer.row(r), g, w, lr, mu, keep,
                             nesterov, first);
  },
      [&](std::int64_t r) {
        detail::prefetch_row(param.row(r), w);
        if (momentum) detail::prefetch_row(state.momentum_buffer.row(r), w);
      });
}

}  // namespace sparseopt

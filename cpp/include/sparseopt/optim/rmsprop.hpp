// Sparse RMSprop, PyTorch's formula (torch.optim.RMSprop):
//   square_avg = alpha * square_avg + (1 - alpha) * g^2
//   centered:  grad_avg = lerp(grad_avg, g, 1 - alpha);  avg = sqrt(square_avg - grad_avg^2) + eps
//   else:      avg = sqrt(square_avg) + eps
//   momentum:  buf = momentum * buf + g / avg;  p -= lr * buf
//   else:      p -= lr * g / avg
// Lazy mode: touched rows take that step, untouched rows keep parameters and state.
// Exact mode: the dense optimizer fed zeros for untouched rows. Over k skipped steps a zero
// gradient gives square_avg, grad_avg *= alpha^k, buf *= momentum^k, and a parameter drift
// of buf_s * sum_j lr_j momentum^j (one window sum, exact.hpp); without momentum the
// parameter does not move.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.hpp"
#include "formulas.hpp"
#include "exact.hpp"

namespace sparseopt {

struct RmspropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double momentum = 0.0;
  bool centered = false;
  Mode mode = Mode::lazy;

  void validate() const;
};

template <class T>
struct RmspropState {
  Table<T> square_avg;
  Table<T> momentum_buffer;  // with momentum
  Table<T> grad_avg;         // centered
  ExactState exact;
};

inline ExactLayout rmsprop_exact_layout(const RmspropOptions& o) {
  return detail::momentum_layout(o.momentum);
}

inline void RmspropOptions::validate() const {
  detail::require_finite_at_least(lr, 0.0, "lr");
  detail::require(alpha >= 0.0 && alpha <= 1.0, "alpha must be in [0, 1], got ", alpha);
  detail::require_finite_at_least(eps, 0.0, "eps");
  detail::require_finite_at_least(momentum, 0.0, "momentum");
  if (mode == Mode::exact) rmsprop_exact_layout(*this);
}

namespace detail {

template <bool Centered, bool Momentum, class T>
void rmsprop_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT sq, T* SPARSEOPT_RESTRICT ga,
                 T* SPARSEOPT_RESTRICT b, const T* SPARSEOPT_RESTRICT g, std::int64_t w, T lr,
                 T alpha, T keep, T eps, T mu) noexcept {
  for (std::int64_t j = 0; j < w; ++j)
    formulas::rmsprop<Centered, Momentum>(p, sq, ga, b, j, g[j], lr, alpha, keep, eps, mu);
}

// Exact mode's bookkeeping of one step, in one place for the CPU step and the device's
// (cuda/src/exact.cu), so their records cannot drift: record() writes the step's lr before any
// row moves (the parameter does not decay), advance() adds the step to the momentum window sum
// once the touched rows are updated.
struct RmspropRecordStep {
  const RmspropOptions& options;
  std::int64_t step;

  void record(const ExactBook& book) const noexcept { book.record(step, options.lr, 1.0, nullptr); }
  void advance(const ExactBook& book) const noexcept {
    book.advance(step, 1.0, &options.lr, &options.momentum);
  }
};

// Exact mode: a row (p, sq, ga with centered, b with momentum: w elements each) from step s
// to e, the latest recorded step, under zero gradients.
template <class T>
void rmsprop_catch_up(const RmspropOptions& o, const ExactBook& book, const PowerTable& alpha_pow,
                      const PowerTable& momentum_pow, std::int64_t w, T* p, T* sq, T* ga, T* b,
                      std::int64_t s, std::int64_t e) {
  if (e <= s) return;
  const std::int64_t k = e - s;
  const double fade = alpha_pow(k);
  for (std::int64_t j = 0; j < w; ++j) sq[j] = T(double(sq[j]) * fade);
  if (o.centered) {
    for (std::int64_t j = 0; j < w; ++j) ga[j] = T(double(ga[j]) * fade);
  }
  if (o.momentum != 0.0) {
    momentum_catch_up(p, b, w, book.window_sum(0, s, e), momentum_pow(k));
  }
}

// Asks for row r of the parameter and of the averages and buffer (a hint: no effect on results).
template <class P, class S, class Level = PrefetchNear>
void prefetch_rmsprop_rows(const Table<P>& param, const RmspropState<S>& state,
                           std::int64_t r, Level level = {}) noexcept {
  const std::int64_t w = param.row_width;
  prefetch_row(param.row(r), w, level);
  prefetch_row(state.square_avg.row(r), w, level);
  if (state.momentum_buffer.data) prefetch_row(state.momentum_buffer.row(r), w, level);
  if (state.grad_avg.data) prefetch_row(state.grad_avg.row(r), w, level);
}

// Checks the state against the parameter; returns the arrays a step or flush writes (exact
// mode's record is added by the step and by flush_rows).
template <class P, class S>
WrittenArrays require_rmsprop_state(const Table<P>& param, const RmspropState<S>& state,
                                    const RmspropOptions& o) {
  WrittenArrays written(param);
  require_same_rows(param, state.square_avg, "square_avg");
  written.add(state.square_avg, "square_avg");
  if (o.momentum != 0.0) {
    require_same_rows(param, state.momentum_buffer, "momentum_buffer");
    written.add(state.momentum_buffer, "momentum_buffer");
  }
  if (o.centered) {
    require_same_rows(param, state.grad_avg, "grad_avg");
    written.add(state.grad_avg, "grad_avg");
  }
  return written;
}

// body(p, sq, ga, b) on row r as T (ga null unless centered, b null without momentum), stored
// back after.
template <class T, class P, class S, class Body>
SPARSEOPT_ALWAYS_INLINE void on_rmsprop_rows(const RowAccess<T>& access, const Table<P>& param,
                                             const RmspropState<S>& state, const RmspropOptions& o,
                                             std::int64_t r, Body&& body) {
  on_rows(access, r, body, param.row(r), state.square_avg.row(r),
          o.centered ? state.grad_avg.row(r) : static_cast<S*>(nullptr),
          o.momentum != 0.0 ? state.momentum_buffer.row(r) : static_cast<S*>(nullptr));
}

}  // namespace detail

// One RMSprop step; `step` counts this step (1 on the first call; exact mode records it).
// Half tables: see adam_step.
template <class P, class S, class Grad>
void rmsprop_step(const Table<P>& param, const Grad& grad, const RmspropState<S>& state,
                  const RmspropOptions& options, std::int64_t step, int num_threads = 0,
                  const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::is_gradient_v<Grad, T>, "grad: a RowSparse<T, I> or BagGradient<T, I> (T: float for half tables)");
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  detail::require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  detail::WrittenArrays written = detail::require_rmsprop_state(param, state, options);
  const bool exact = options.mode == Mode::exact;
  // Lazy mode keeps no record (and takes any momentum torch takes, 1 and above included).
  const ExactLayout layout = exact ? rmsprop_exact_layout(options) : ExactLayout{};
  if (exact) detail::add_exact_arrays(written, state.exact, layout, param.num_rows);
  const auto& plan = detail::plan_step(param, grad, num_threads, written);
  const detail::ExactBook book(layout, state.exact);
  const detail::RmspropRecordStep record{options, step};
  if (exact) {
    book.require_step(step, param.num_rows);
    record.record(book);
  }

  const std::int64_t w = param.row_width;
  const T lr = T(options.lr), alpha = T(options.alpha), keep = T(1.0 - options.alpha);
  const T eps = T(options.eps), mu = T(options.momentum);
  const bool momentum = options.momentum != 0.0, centered = options.centered;
  const std::int64_t table_size = exact ? detail::PowerTable::default_size : 0;
  const detail::PowerTable alpha_pow(options.alpha, table_size), momentum_pow(options.momentum, table_size);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 4);
  detail::for_each_row(
      grad, plan, num_threads,
      [&](std::int64_t r, const T* g) {
        detail::on_rmsprop_rows(access, param, state, options, r, [&](T* p, T* sq, T* ga, T* b) {
        if (exact) {
          detail::rmsprop_catch_up(options, book, alpha_pow, momentum_pow, w, p, sq, ga, b,
                                   state.exact.last_step[r], step - 1);
          state.exact.last_step[r] = step;
        }
        if (centered)
          momentum ? detail::rmsprop_row<true, true>(p, sq, ga, b, g, w, lr, alpha, keep, eps, mu)
                   : detail::rmsprop_row<true, false>(p, sq, ga, b, g, w, lr, alpha, keep, eps, mu);
        else
          momentum ? detail::rmsprop_row<false, true>(p, sq, ga, b, g, w, lr, alpha, keep, eps, mu)
                   : detail::rmsprop_row<false, false>(p, sq, ga, b, g, w, lr, alpha, keep, eps, mu);
        });
      },
      [&](std::int64_t r, auto level) {
        if (exact) detail::prefetch_row(state.exact.last_step + r, 1, level);
        detail::prefetch_rmsprop_rows(param, state, r, level);
      });
  if (exact) {
    record.advance(book);
    detail::restart_record(layout, state.exact, param, step, num_threads,
                           [&](const detail::ExactBook& book_, std::int64_t r, std::int64_t from) {
                             detail::on_rmsprop_rows(access, param, state, options, r, [&](T* p, T* sq, T* ga, T* b) {
                               detail::rmsprop_catch_up(options, book_, alpha_pow, momentum_pow, w, p, sq, ga, b,
                                                        from, step);
                             });
                           });
  }
}

// Exact mode: brings every row (or the rows in indices[0, n)) up to `step`, the last step taken. Lazy mode: nothing to do.
template <class P, class S, class I = std::int64_t>
void rmsprop_flush(const Table<P>& param, const RmspropState<S>& state,
                   const RmspropOptions& options, std::int64_t step, int num_threads = 0,
                  const I* indices = nullptr, std::int64_t n = 0, const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  const detail::WrittenArrays written = detail::require_rmsprop_state(param, state, options);
  if (options.mode != Mode::exact) return;
  const detail::PowerTable alpha_pow(options.alpha), momentum_pow(options.momentum);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 4);
  const std::int64_t w = param.row_width;
  detail::flush_rows(rmsprop_exact_layout(options), state.exact, param, step, num_threads, indices, n,
                     written, [&](const detail::ExactBook& book, std::int64_t r, std::int64_t last) {
                       detail::on_rmsprop_rows(access, param, state, options, r, [&](T* p, T* sq, T* ga, T* b) {
                         detail::rmsprop_catch_up(options, book, alpha_pow, momentum_pow, w, p, sq, ga, b, last,
                                                  step);
                       });
                     },
                     [&](std::int64_t r, auto level) { detail::prefetch_rmsprop_rows(param, state, r, level); });
}

}  // namespace sparseopt

// Lazy Adam/AdamW and SGD on half-precision tables (float16, bfloat16; half.hpp), with float
// gradients and float or half state.
//
// Each touched row is widened to float a block of up to half_block elements at a time (a few KB
// on the stack, in L1: no float copy of the table or of the touched rows), updated by the very
// float row kernels of the float32 path (adam_lazy_row, sgd_row, sgd_momentum_row: their
// arithmetic is elementwise, so blocks change nothing), and narrowed on store with the chosen
// rounding. With rounding nearest the stored row therefore equals the float32 step from the
// widened row, rounded to nearest; with stochastic rounding each element's random bits are
// keyed by (seed, step, row, column, array) (RoundingStream), so results do not depend on the
// thread count. Float state is updated in place, as in the float32 path; half state is widened
// and narrowed like the table, with its own stream.
//
// Gradients are float32: a step's gradient is summed (repeats) and applied in float, and a
// gradient computed in float32 is not rounded to half first. Exact mode and the other
// optimizers take float32/float64 tables only (the steps refuse what they do not support).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../half.hpp"
#include "adam.hpp"
#include "sgd.hpp"

namespace sparseopt {

// How a half table's step stores its results.
struct HalfRounding {
  Rounding rounding = Rounding::stochastic;
  std::uint64_t seed = 0;
};

namespace detail {

inline constexpr std::int64_t half_block = 256;

// One array's row block as float: the element storage itself for float state, else widened
// into `scratch`. store() narrows it back (nothing to do for float).
// Methods always inlined: they run inside simd_dispatch, compiled for AVX2 there too.
template <class S>
class FloatBlock {
 public:
  SPARSEOPT_ALWAYS_INLINE FloatBlock(S* row, std::int64_t j0, std::int64_t n, float* scratch) noexcept
      : at_(row ? row + j0 : nullptr), n_(n) {
    if constexpr (std::is_same_v<S, float>) {
      data_ = at_;
    } else {
      for (std::int64_t j = 0; j < n; ++j) scratch[j] = widen(at_[j]);
      data_ = scratch;
    }
  }

  SPARSEOPT_ALWAYS_INLINE float* data() const noexcept { return data_; }

  // `random`: scratch for half_block 16-bit numbers.
  SPARSEOPT_ALWAYS_INLINE void store(const HalfRounding& how, const RoundingStream& stream, std::int64_t r,
                                     std::int64_t j0, std::uint16_t* random) const noexcept {
    if constexpr (!std::is_same_v<S, float>) {
      if (how.rounding == Rounding::nearest) {
        for (std::int64_t j = 0; j < n_; ++j) at_[j] = narrow_nearest<S>(data_[j]);
        return;
      }
      // One hash per group of four elements (j0 is a multiple of 4), then a loop that
      // vectorises.
      for (std::int64_t j = 0; j < n_; j += 4) {
        const std::uint64_t z = stream.group(r, (j0 + j) >> 2);
        for (int i = 0; i < 4; ++i) random[j + i] = std::uint16_t(z >> (16 * i));
      }
      for (std::int64_t j = 0; j < n_; ++j) at_[j] = narrow_stochastic<S>(data_[j], random[j]);
    }
  }

 private:
  S* at_;
  std::int64_t n_;
  float* data_ = nullptr;
};

// The checks of every half step before its state checks.
template <class P, class S, class Options>
void require_half_step(const Options& o, std::int64_t step) {
  static_assert(is_half_v<P>, "a half step takes a float16 or bfloat16 table");
  static_assert(std::is_same_v<S, float> || is_half_v<S>, "state: float or a half type");
  o.validate();
  require(o.mode == Mode::lazy, "mode='exact' takes float32 or float64 tables; a float16 or "
          "bfloat16 table takes mode='lazy'");
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
}

}  // namespace detail

// One lazy Adam/AdamW step on a half table (see adam_step for the options and `step`).
template <class P, class S, class I>
void adam_half_step(const Table<P>& param, const RowSparse<float, I>& grad, const AdamState<S>& state,
                    const AdamOptions& o, std::int64_t step, const HalfRounding& how,
                    int num_threads = 0) {
  detail::require_half_step<P, S>(o, step);
  const detail::WrittenArrays written = detail::require_adam_state(param, state, o);
  const auto& plan = detail::plan_step(param, grad, num_threads, written);

  const std::int64_t w = param.row_width;
  const float keep1 = float(1.0 - o.beta1), keep2 = float(1.0 - o.beta2), eps = float(o.eps);
  const bool per_row = o.bias_correction == BiasCorrection::row;
  const float global_step_size = float(detail::adam_step_size(o, step));
  const float coupled = o.decoupled ? 0.0f : float(o.weight_decay);
  const float shrink = float(1.0 - o.lr * o.weight_decay);
  const bool decoupled = o.decoupled && o.weight_decay != 0.0;
  const RoundingStream streams[4] = {{how.seed, step, 0}, {how.seed, step, 1}, {how.seed, step, 2},
                                     {how.seed, step, 3}};
  detail::for_each_row(
      grad, plan, num_threads,
      [&](std::int64_t r, const float* g) {
        const float step_size =
            per_row ? float(detail::adam_step_size(o, ++state.row_steps[r])) : global_step_size;
        float scratch[4][detail::half_block];
        std::uint16_t random[detail::half_block + 4];
        detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // AVX2 where the CPU has it, same bits
        for (std::int64_t j0 = 0; j0 < w; j0 += detail::half_block) {
          const std::int64_t n = std::min(detail::half_block, w - j0);
          const detail::FloatBlock<P> p(param.row(r), j0, n, scratch[0]);
          const detail::FloatBlock<S> m(state.exp_avg.row(r), j0, n, scratch[1]);
          const detail::FloatBlock<S> v(state.exp_avg_sq.row(r), j0, n, scratch[2]);
          const detail::FloatBlock<S> vm(o.amsgrad ? state.max_exp_avg_sq.row(r) : nullptr, j0, o.amsgrad ? n : 0,
                                         scratch[3]);
          float* vmax = o.amsgrad ? vm.data() : nullptr;
          {
            if (decoupled) detail::scale_row(p.data(), n, shrink);
            auto row = [&](auto amsgrad, auto l2) SPARSEOPT_INLINE_BODY {
              detail::adam_lazy_row<decltype(amsgrad)::value, decltype(l2)::value>(
                  p.data(), m.data(), v.data(), vmax, g + j0, n, keep1, keep2, eps, step_size, coupled);
            };
            using yes = std::true_type;
            using no = std::false_type;
            if (o.amsgrad) {
              coupled != 0.0f ? row(yes{}, yes{}) : row(yes{}, no{});
            } else {
              coupled != 0.0f ? row(no{}, yes{}) : row(no{}, no{});
            }
          }
          p.store(how, streams[0], r, j0, random);
          m.store(how, streams[1], r, j0, random);
          v.store(how, streams[2], r, j0, random);
          if (o.amsgrad) vm.store(how, streams[3], r, j0, random);
        }
        });
      },
      [&](std::int64_t r) { detail::prefetch_adam_rows(param, state, o, r); });
}

// One lazy SGD step on a half table (see sgd_step).
template <class P, class S, class I>
void sgd_half_step(const Table<P>& param, const RowSparse<float, I>& grad, const SgdState<S>& state,
                   const SgdOptions& o, std::int64_t step, const HalfRounding& how,
                   int num_threads = 0) {
  detail::require_half_step<P, S>(o, step);
  const detail::WrittenArrays written = detail::require_sgd_state(param, state, o);
  const auto& plan = detail::plan_step(param, grad, num_threads, written);

  const std::int64_t w = param.row_width;
  const float lr = float(o.lr), mu = float(o.momentum), keep = float(1.0 - o.dampening);
  const float wd = float(o.weight_decay);
  const bool momentum = o.momentum != 0.0, coupled = o.weight_decay != 0.0;
  const RoundingStream streams[2] = {{how.seed, step, 0}, {how.seed, step, 1}};
  detail::for_each_row(
      grad, plan, num_threads,
      [&](std::int64_t r, const float* g) {
        const bool first = momentum && state.row_steps[r]++ == 0;
        float scratch[2][detail::half_block];
        std::uint16_t random[detail::half_block + 4];
        detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // AVX2 where the CPU has it, same bits
        for (std::int64_t j0 = 0; j0 < w; j0 += detail::half_block) {
          const std::int64_t n = std::min(detail::half_block, w - j0);
          const detail::FloatBlock<P> p(param.row(r), j0, n, scratch[0]);
          if (!momentum) {
            coupled ? detail::sgd_row<true>(p.data(), g + j0, n, lr, wd)
                    : detail::sgd_row<false>(p.data(), g + j0, n, lr, wd);
          } else {
            const detail::FloatBlock<S> b(state.momentum_buffer.row(r), j0, n, scratch[1]);
            if (coupled)
              detail::sgd_momentum_row<true>(p.data(), b.data(), g + j0, n, lr, mu, keep, o.nesterov, first, wd);
            else
              detail::sgd_momentum_row<false>(p.data(), b.data(), g + j0, n, lr, mu, keep, o.nesterov, first, wd);
            b.store(how, streams[1], r, j0, random);
          }
          p.store(how, streams[0], r, j0, random);
        }
        });
      },
      [&](std::int64_t r) { detail::prefetch_sgd_rows(param, state, r); });
}

}  // namespace sparseopt

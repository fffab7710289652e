// FTRL-proximal as TensorFlow's SparseApplyFtrl computes it (tensorflow/core/kernels/
// training_ops.cc, the non-V2 op: no l2 shrinkage, multiply_linear_by_lr = false). On every
// element of every touched row, in the table's dtype, with g the row's summed gradient:
//   accum_new = accum + g * g
//   sigma     = (sqrt(accum_new) - sqrt(accum)) / lr                       lr_power == -0.5
//             = (pow(accum_new, -lr_power) - pow(accum, -lr_power)) / lr   otherwise
//   linear    = linear + (g - sigma * p)
//   quadratic = sqrt(accum_new) / lr + 2 * l2                              lr_power == -0.5
//             = pow(accum_new, -lr_power) / lr + 2 * l2                    otherwise
//   p         = (clamp(linear, -l1, l1) - linear) / quadratic              0 when |linear| <= l1
//   accum     = accum_new
// That is TF's per-row form (the Eigen chip loop for rows wider than 1, with
// lr_power == -0.5 compared in the table's dtype), operation for operation. TF's loop for 1-D
// variables groups (linear + g) - sigma * p and calls pow() for lr_power == -0.5 too, which
// differs only in rounding. Repeated indices are summed before the update, as TF's optimizers
// do (Optimizer._apply_sparse_duplicate_indices); the raw op would apply them one by one.
// Untouched rows keep parameters and state, as in TF's sparse kernel. A zero gradient leaves
// accum and linear as they are, so the state equals the dense optimizer's; a dense step would
// also recompute p from them, which gives the same p on a row last updated under the current
// lr, l1 and l2, but 0 on a row never touched (whatever its initial value).
//
// No 0/0: quadratic is the only divisor the data can bring to 0. Under a step's lr it is at
// least its value at the smallest accumulator, initial_accumulator_value (accum only grows,
// and sqrt, pow with an exponent >= 0, the division by lr > 0 and the addition are monotone,
// up to pow's rounding, which cannot take a larger argument down to 0), so it is positive on
// every element when it is positive there. With lr_power == 0 it is 1/lr + 2*l2 > 0; with
// lr_power < 0 and l2 == 0 it is 0 at a zero accumulator (TF's kernel then computes 0/0 for an
// element whose accumulator and gradient are both 0), so that case needs
// initial_accumulator_value > 0. Each step checks the bound in the table's dtype, with its lr
// (a float32 table can underflow it to 0 or overflow it to inf). Gradients large enough to
// overflow accum or its power still give inf/NaN, as in TF.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.hpp"
#include "formulas.hpp"

namespace sparseopt {

struct FtrlOptions {
  double lr = 1e-3;
  double lr_power = -0.5;
  double l1 = 0.0;
  double l2 = 0.0;
  // The value the caller filled `accumulator` with (TF's default): the smallest value any
  // accumulator can hold, used only to check that no element can divide by 0.
  double initial_accumulator_value = 0.1;

  // The checks that do not depend on the table's dtype.
  void validate() const {
    detail::require(std::isfinite(lr) && lr > 0.0, "lr must be a finite number > 0, got ", lr);
    detail::require(std::isfinite(lr_power) && lr_power <= 0.0,
                    "lr_power must be a finite number <= 0, got ", lr_power);
    detail::require_finite_at_least(l1, 0.0, "l1");
    detail::require_finite_at_least(l2, 0.0, "l2");
    detail::require_finite_at_least(initial_accumulator_value, 0.0, "initial_accumulator_value");
    detail::require(initial_accumulator_value > 0.0 || lr_power == 0.0 || l2 > 0.0,
                    "initial_accumulator_value must be > 0 when lr_power < 0 and l2 == 0: FTRL "
                    "divides by accumulator**(-lr_power) / lr + 2 * l2, which is 0 (0/0 = NaN) "
                    "for an element whose accumulator and gradient are both 0; got lr_power=",
                    lr_power, ", l2=", l2, ", initial_accumulator_value=", initial_accumulator_value);
  }

  // validate(), then the same bounds in T, the table's dtype: every hyper-parameter
  // representable, and the divisor positive and finite at the starting accumulator (see the
  // top of this file). Every ftrl_step<T> runs it before writing.
  template <class T>
  void validate_in() const;
};

template <class T>
struct FtrlState {
  Table<T> accumulator;  // running sum of squared gradients, starts at initial_accumulator_value
  Table<T> linear;       // FTRL's z, starts at 0
};

namespace detail {

using formulas::ftrl_power;  // accum**(-lr_power), through sqrt on TF's lr_power == -0.5 path

// The hyper-parameters in T, as the row kernel uses them.
template <class T>
struct FtrlScalars {
  T lr, neg_lr_power, l1, two_l2;
  bool sqrt_power;  // lr_power == -0.5 in T: TF's sqrt path

  explicit FtrlScalars(const FtrlOptions& o)
      : lr(T(o.lr)), neg_lr_power(-T(o.lr_power)), l1(T(o.l1)), two_l2(T(2) * T(o.l2)),
        sqrt_power(T(o.lr_power) == T(-0.5)) {}

  // The divisor of the update at accumulator value `accum`, as ftrl_row computes it.
  T quadratic(T accum) const noexcept {
    const T power = sqrt_power ? ftrl_power<true>(accum, neg_lr_power)
                               : ftrl_power<false>(accum, neg_lr_power);
    return power / lr + two_l2;
  }
};

}  // namespace detail

template <class T>
void FtrlOptions::validate_in() const {
  using detail::require;
  validate();
  const char* type = detail::float_name<T>();
  require(T(lr) > T(0) && std::isfinite(T(lr)), "lr=", lr, " is not a positive finite number in ",
          type);
  require(std::isfinite(T(lr_power)), "lr_power=", lr_power, " does not fit in ", type);
  require(std::isfinite(T(l1)), "l1=", l1, " does not fit in ", type);
  require(std::isfinite(T(2) * T(l2)), "2 * l2 (l2=", l2, ") does not fit in ", type);
  const T start = T(initial_accumulator_value);
  require(std::isfinite(start), "initial_accumulator_value=", initial_accumulator_value,
          " does not fit in ", type);
  const T floor = detail::FtrlScalars<T>(*this).quadratic(start);
  require(floor > T(0) && std::isfinite(floor), "initial_accumulator_value=",
          initial_accumulator_value, " with lr=", lr, ", lr_power=", lr_power, " and l2=", l2,
          " makes FTRL's divisor accumulator**(-lr_power) / lr + 2 * l2 equal ", floor, " in ",
          type, "; it must be a positive finite number (change initial_accumulator_value, lr or "
          "l2)");
}

namespace detail {

template <class T, bool SqrtPower>
void ftrl_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT accum, T* SPARSEOPT_RESTRICT linear,
              const T* SPARSEOPT_RESTRICT g, std::int64_t w, T lr, T neg_lr_power, T l1,
              T two_l2) noexcept {
  for (std::int64_t j = 0; j < w; ++j)
    formulas::ftrl<SqrtPower>(p, accum, linear, j, g[j], lr, neg_lr_power, l1, two_l2);
}

}  // namespace detail

// Half tables (see adam_step) also take `step`, the optimizer's step count, which keys the
// stochastic rounding's random bits (float and double tables ignore both).
template <class P, class S, class Grad>
void ftrl_step(const Table<P>& param, const Grad& grad, const FtrlState<S>& state,
               const FtrlOptions& options, int num_threads = 0, const HalfRounding& how = {},
               std::int64_t step = 0) {
  using T = compute_t<P>;
  static_assert(detail::is_gradient_v<Grad, T>, "grad: a RowSparse<T, I> or BagGradient<T, I> (T: float for half tables)");
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate_in<T>();
  detail::require_same_rows(param, state.accumulator, "accumulator");
  detail::require_same_rows(param, state.linear, "linear");
  const auto& plan = detail::plan_step(
      param, grad, num_threads,
      detail::WrittenArrays(param).add(state.accumulator, "accumulator").add(state.linear, "linear"));

  const std::int64_t w = param.row_width;
  const detail::FtrlScalars<T> c(options);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 3);
  detail::for_each_row(grad, plan, num_threads, [&](std::int64_t r, const T* g) {
    detail::on_rows(access, r, [&](T* p, T* a, T* z) {
      if (c.sqrt_power)
        detail::ftrl_row<T, true>(p, a, z, g, w, c.lr, c.neg_lr_power, c.l1, c.two_l2);
      else
        detail::ftrl_row<T, false>(p, a, z, g, w, c.lr, c.neg_lr_power, c.l1, c.two_l2);
    }, param.row(r), state.accumulator.row(r), state.linear.row(r));
  },
      [&](std::int64_t r, auto level) {
        detail::prefetch_row(param.row(r), w, level);
        detail::prefetch_row(state.accumulator.row(r), w, level);
        detail::prefetch_row(state.linear.row(r), w, level);
      });
}

}  // namespace sparseopt

// What every sparse optimizer step shares: option enums, hyper-parameter checks and the
// check-then-update driver over the rows a gradient touches.
//
// A step takes its gradient as a RowSparse (rows and their values, repeats summed) or as a
// BagGradient (gather.hpp: the pooled output gradient of an EmbeddingBag and its bags, the
// fused backward + step). plan_step checks either kind and returns its plan, and
// detail::for_each_row(grad, plan, ...) hands every touched row's summed gradient to the
// update, so each optimizer writes its step once for both.
#pragma once

#include <cmath>
#include <cstdint>

#include "../coalesce.hpp"
#include "../gather.hpp"
#include "../errors.hpp"
#include "../parallel.hpp"
#include "../view.hpp"
#include "rows.hpp"

namespace sparseopt {

// What happens to rows a step does not touch (see DESIGN.md):
//   lazy  - they keep their parameters and state (SparseAdam, LazyAdam);
//   exact - the result equals the dense optimizer fed zeros for them.
enum class Mode { lazy, exact };

namespace detail {

inline void require_finite_at_least(double value, double lower, const char* name) {
  require(std::isfinite(value) && value >= lower, name, " must be a finite number >= ", lower,
          ", got ", value);
}

// The name of the type a step computes in, for messages.
template <class T>
constexpr const char* float_name() noexcept {
  return sizeof(T) == 4 ? "float32" : sizeof(T) == 8 ? "float64" : "this floating-point type";
}

inline void require_unit_interval(double value, const char* name) {
  require(value >= 0.0 && value < 1.0, name, " must be in [0, 1), got ", value);
}

// The checks every step makes before it writes: gradient shape against the table, the
// gradient's values and indices apart from every array the step writes (`written`: param and
// the state), indices in range. Returns the coalescing plan the update runs over: one per
// calling thread, rebuilt by each step, so that steady training does not allocate.
// P: the table's element type; T: the gradient's (float for half tables, else P).
template <class P, class T, class I>
const CoalescePlan<I>& plan_step(const Table<P>& param, const RowSparse<T, I>& grad,
                                 int num_threads, const WrittenArrays& written) {
  resolve_threads(num_threads);
  require(grad.row_width == param.row_width, "values must have rows of ", param.row_width,
          " elements (the parameter's row shape), got ", grad.row_width);
  require(grad.size >= 0, "the gradient size must be >= 0, got ", grad.size);
  require(param.data != nullptr || param.num_rows * param.row_width == 0, "param is null");
  written.require_apart_from(grad.values, grad.size * grad.row_width * std::int64_t(sizeof(T)),
                             "values");
  written.require_apart_from(grad.indices, grad.size * std::int64_t(sizeof(I)), "indices");
  thread_local CoalescePlan<I> plan;
  plan.build(grad.indices, grad.size, param.num_rows, num_threads);
  return plan;
}

// The same checks for the fused step's gradient: grad_out one row per bag of the parameter's
// row width, the bags well-formed over the parameter's rows, nothing the step reads sharing
// memory with what it writes. Returns the bags laid out by row.
template <class P, class T, class I>
const GatherPlan<I>& plan_step(const Table<P>& param, const BagGradient<T, I>& grad, int num_threads,
                               const WrittenArrays& written) {
  resolve_threads(num_threads);
  const Table<const T>& g = grad.grad_out;
  const Bags<T, I>& bags = grad.bags;
  require(g.row_width == param.row_width, "grad_out must have rows of ", param.row_width,
          " elements (the parameter's row shape), got ", g.row_width);
  require(g.num_rows == bags.num_bags, "grad_out must have ", bags.num_bags, " rows (one per bag), got ",
          g.num_rows);
  require(param.data != nullptr || param.num_rows * param.row_width == 0, "param is null");
  require(g.data != nullptr || g.num_rows * g.row_width == 0, "grad_out is null");
  written.require_apart_from(g.data, byte_size(g), "grad_out");
  written.require_apart_from(bags.indices, bags.size * std::int64_t(sizeof(I)), "indices");
  written.require_apart_from(bags.indptr, (bags.num_bags + 1) * std::int64_t(sizeof(I)), "indptr");
  written.require_apart_from(bags.weights, bags.size * std::int64_t(sizeof(T)), "weights");
  thread_local GatherPlan<I> plan;
  plan.build_by_row(bags, param.num_rows, grad.mode, {}, num_threads);
  return plan;
}

// Whether Grad is a gradient an optimizer step of T tables takes.
template <class Grad, class T>
inline constexpr bool is_gradient_v = false;
template <class T, class I>
inline constexpr bool is_gradient_v<RowSparse<T, I>, T> = true;
template <class T, class I>
inline constexpr bool is_gradient_v<BagGradient<T, I>, T> = true;

}  // namespace detail
}  // namespace sparseopt

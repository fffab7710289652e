// What every sparse optimizer step shares: option enums, hyper-parameter checks and the
// check-then-update driver over the rows a gradient touches.
#pragma once

#include <cmath>
#include <cstdint>

#include "../coalesce.hpp"
#include "../errors.hpp"
#include "../parallel.hpp"
#include "../view.hpp"

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

inline void require_unit_interval(double value, const char* name) {
  require(value >= 0.0 && value < 1.0, name, " must be in [0, 1), got ", value);
}

// The checks every step makes before it writes: gradient shape against the table, the
// gradient's values and indices apart from every array the step writes (`written`: param and
// the state), indices in range. Returns the coalescing plan the update runs over: one per
// calling thread, rebuilt by each step, so that steady training does not allocate.
template <class T, class I>
const CoalescePlan<I>& plan_step(const Table<T>& param, const RowSparse<T, I>& grad,
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
  plan.build(grad.indices, grad.size, param.num_rows);
  return plan;
}

}  // namespace detail
}  // namespace sparseopt

// sparseopt._core: half-precision (float16, bfloat16) tables: lazy Adam and SGD steps, and the
// conversions (exposed for tests and for building a half table from float32 values).
//
// NumPy has float16; bfloat16 is ml_dtypes' extension dtype, recognised here by its name and
// size (this module does not import ml_dtypes). Gradients are float32 (see half_tables.hpp).
#include <sparseopt/optim/half_tables.hpp>

#include <functional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "half_arrays.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

namespace {

// A state array: the parameter's shape, writeable, dtype float32 or the same half kind as the
// other state arrays (`kind`: the first one's, Element::other before it is known).
py::array require_half_state(py::handle obj, const py::array& param, const char* name, Element& kind) {
  py::array a = require_writeable(obj, name);
  const Element e = element_of(a);
  if (e == Element::other || (kind != Element::other && e != kind))
    throw py::type_error(std::string(name) + " must have dtype float32, float16 or bfloat16 (the state_dtype, "
                         "the same for every state array), got " + dtype_name(a) +
                         "; sparseopt updates it in place, so create it with that dtype");
  kind = e;
  bool same = a.ndim() == param.ndim();
  for (py::ssize_t d = 0; same && d < a.ndim(); ++d) same = a.shape(d) == param.shape(d);
  if (!same)
    throw py::value_error(std::string(name) + " must have the parameter's shape " + shape_str(param) + ", got " +
                          shape_str(a));
  return a;
}

// The gradient of a half table: int32/int64 indices, float32 values of shape
// (len(indices), *param.shape[1:]).
GradientArrays require_float_gradient(py::handle indices, py::handle values, const py::array& param) {
  GradientArrays g = require_gradient(indices, values, nullptr);
  if (!has_dtype<float>(g.values))
    throw py::type_error("values must have dtype float32 for a " + dtype_name(param) +
                         " table (gradients are summed and applied in float32), got " + dtype_name(g.values) +
                         "; pass values.astype(np.float32)");
  bool ok = g.values.ndim() == param.ndim();
  for (py::ssize_t d = 1; ok && d < param.ndim(); ++d) ok = g.values.shape(d) == param.shape(d);
  if (!ok) {
    std::vector<py::ssize_t> want(param.shape(), param.shape() + param.ndim());
    want[0] = g.indices.shape(0);
    throw py::value_error("values must have shape " + shape_str(want) + " (len(indices), *param.shape[1:]), got " +
                          shape_str(g.values));
  }
  return g;
}

HalfRounding rounding_of(const std::string& rounding, std::uint64_t seed) {
  if (rounding != "stochastic" && rounding != "nearest")
    throw py::value_error("rounding must be 'stochastic' or 'nearest', got '" + rounding + "'");
  return HalfRounding{rounding == "stochastic" ? Rounding::stochastic : Rounding::nearest, seed};
}

// Checks param and the gradient, then runs make_call(param, param_tag, index_tag, table, grad)'s
// result without the GIL (make_call checks the state arrays).
template <class MakeCall>
void run_half_step(py::handle param_obj, py::handle indices, py::handle values, MakeCall&& make_call) {
  py::array param = require_half_table(param_obj, "param");
  const GradientArrays g = require_float_gradient(indices, values, param);
  dispatch_half(element_of(param), [&](auto param_tag) {
    using P = typename decltype(param_tag)::type;
    dispatch_index(g.indices, [&](auto index_tag) {
      using I = typename decltype(index_tag)::type;
      auto call = make_call(param, table_of<P>(param), row_sparse_of<float, I>(g));
      py::gil_scoped_release release;
      call();
    });
  });
}

}  // namespace

void bind_half(py::module_& m) {
  m.def(
      "adam_half_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle exp_avg, py::handle exp_avg_sq,
         py::handle max_exp_avg_sq, py::handle row_steps, const AdamOptions& options, std::int64_t step,
         const std::string& rounding, std::uint64_t seed, int num_threads) {
        options.validate();
        const HalfRounding how = rounding_of(rounding, seed);
        run_half_step(param, indices, values, [&](const py::array& p, auto table, auto grad) {
          Element kind = Element::other;
          py::array m1 = require_half_state(exp_avg, p, "exp_avg", kind);
          py::array m2 = require_half_state(exp_avg_sq, p, "exp_avg_sq", kind);
          py::array m3 = options.amsgrad ? require_half_state(max_exp_avg_sq, p, "max_exp_avg_sq", kind) : py::array();
          std::int64_t* counts = options.bias_correction == BiasCorrection::row
                                     ? require_row_counts(row_steps, p, "row_steps") : nullptr;
          return dispatch_state(kind, [&](auto state_tag) {
            using S = typename decltype(state_tag)::type;
            AdamState<S> state;
            state.exp_avg = table_of<S>(m1);
            state.exp_avg_sq = table_of<S>(m2);
            if (options.amsgrad) state.max_exp_avg_sq = table_of<S>(m3);
            state.row_steps = counts;
            return std::function<void()>([=] { adam_half_step(table, grad, state, options, step, how, num_threads); });
          });
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
      py::arg("max_exp_avg_sq"), py::arg("row_steps"), py::arg("options"), py::arg("step"), py::arg("rounding"),
      py::arg("seed"), py::arg("num_threads"));

  m.def(
      "sgd_half_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle momentum_buffer, py::handle row_steps,
         const SgdOptions& options, std::int64_t step, const std::string& rounding,
         std::uint64_t seed, int num_threads) {
        options.validate();
        const HalfRounding how = rounding_of(rounding, seed);
        run_half_step(param, indices, values, [&](const py::array& p, auto table, auto grad) {
          Element kind = Element::float32;  // no state without momentum
          py::array b;
          std::int64_t* counts = nullptr;
          if (options.momentum != 0.0) {
            kind = Element::other;
            b = require_half_state(momentum_buffer, p, "momentum_buffer", kind);
            counts = require_row_counts(row_steps, p, "row_steps");
          }
          return dispatch_state(kind, [&](auto state_tag) {
            using S = typename decltype(state_tag)::type;
            SgdState<S> state;
            if (options.momentum != 0.0) state.momentum_buffer = table_of<S>(b);
            state.row_steps = counts;
            return std::function<void()>([=] { sgd_half_step(table, grad, state, options, step, how, num_threads); });
          });
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("momentum_buffer"), py::arg("row_steps"),
      py::arg("options"), py::arg("step"), py::arg("rounding"), py::arg("seed"),
      py::arg("num_threads"));

  // out[r, c] = values[r, c] (float32) stored in out's half dtype with `rounding`; stochastic
  // rounding draws element (r, c)'s bits from (seed, step, r, c) as a step's table does (array 0).
  m.def(
      "round_to_half",
      [](py::handle values_obj, py::handle out_obj, const std::string& rounding, std::uint64_t seed,
         std::int64_t step) {
        py::array values = require_array(values_obj, "values");
        if (!has_dtype<float>(values))
          throw py::type_error("values must have dtype float32, got " + dtype_name(values) +
                               "; pass values.astype(np.float32)");
        py::array out = require_half_table(out_obj, "out");
        if (out.ndim() != values.ndim() || out.size() != values.size())
          throw py::value_error("out must have the shape of values " + shape_str(values) + ", got " + shape_str(out));
        for (py::ssize_t d = 0; d < values.ndim(); ++d)
          if (out.shape(d) != values.shape(d))
            throw py::value_error("out must have the shape of values " + shape_str(values) + ", got " + shape_str(out));
        const HalfRounding how = rounding_of(rounding, seed);
        const Table<float> src = table_of<float>(values);
        dispatch_half(element_of(out), [&](auto half_tag) {
          using H = typename decltype(half_tag)::type;
          const Table<H> dst = table_of<H>(out);
          py::gil_scoped_release release;
          const RoundingStream stream(how.seed, step, 0);
          for (std::int64_t r = 0; r < dst.num_rows; ++r)
            for (std::int64_t c = 0; c < dst.row_width; ++c)
              dst.row(r)[c] = narrow<H>(src.row(r)[c], how.rounding, stream.bits(r, c));
        });
      },
      py::arg("values"), py::arg("out"), py::arg("rounding"), py::arg("seed") = 0, py::arg("step") = 0,
      "Testing hook and converter: out (float16/bfloat16) = values (float32) rounded.");

  // out (float32) = values (float16/bfloat16), exactly.
  m.def(
      "widen_half",
      [](py::handle values_obj, py::handle out_obj) {
        py::array values = require_array(values_obj, "values");
        const Element e = element_of(values);
        if (e != Element::float16 && e != Element::bfloat16)
          throw py::type_error("values must have dtype float16 or bfloat16, got " + dtype_name(values));
        py::array out = require_writeable(out_obj, "out");
        if (!has_dtype<float>(out) || out.size() != values.size())
          throw py::value_error("out must be a float32 array of values.size elements");
        dispatch_half(e, [&](auto half_tag) {
          using H = typename decltype(half_tag)::type;
          const H* src = static_cast<const H*>(values.data());
          float* dst = static_cast<float*>(out.mutable_data());
          for (py::ssize_t k = 0; k < values.size(); ++k) dst[k] = widen(src[k]);
        });
      },
      py::arg("values"), py::arg("out"), "Testing hook: out (float32) = values (float16/bfloat16), exactly.");
}

}  // namespace sparseopt::bind

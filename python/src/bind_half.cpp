// sparseopt._core: the float16/bfloat16 conversions (exposed for tests and for building a half
// table from float32 values). The optimizer steps take half tables through their own bindings
// (optim_binding.hpp).
//
// NumPy has float16; bfloat16 is ml_dtypes' extension dtype, recognised here by its name and
// size (this module does not import ml_dtypes).
#include <sparseopt/half.hpp>

#include <functional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "half_arrays.hpp"

namespace sparseopt::bind {

void bind_half(py::module_& m) {
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

// sparseopt._core.adam_step and its options.
#include <sparseopt/optim/adam.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

void bind_adam(py::module_& m) {
  py::class_<AdamOptions>(m, "AdamOptions")
      .def(py::init<>())
      .def_readwrite("lr", &AdamOptions::lr)
      .def_readwrite("beta1", &AdamOptions::beta1)
      .def_readwrite("beta2", &AdamOptions::beta2)
      .def_readwrite("eps", &AdamOptions::eps)
      .def_readwrite("mode", &AdamOptions::mode)
      .def_readwrite("bias_correction", &AdamOptions::bias_correction)
      .def("validate", &AdamOptions::validate);

  m.def(
      "adam_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle exp_avg,
         py::handle exp_avg_sq, py::handle row_steps, const AdamOptions& options,
         std::int64_t step, int num_threads) {
        run_step(param, indices, values, [&](const py::array& p, auto value_tag, auto, auto table, auto grad) {
          using T = typename decltype(value_tag)::type;
          const AdamState<T> state{state_table<T>(exp_avg, p, "exp_avg"),
                                   state_table<T>(exp_avg_sq, p, "exp_avg_sq"),
                                   optional_row_counts(row_steps, p, "row_steps")};
          return [=] { adam_step(table, grad, state, options, step, num_threads); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("exp_avg"),
      py::arg("exp_avg_sq"), py::arg("row_steps"), py::arg("options"), py::arg("step"),
      py::arg("num_threads"));
}

}  // namespace sparseopt::bind

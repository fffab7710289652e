// sparseopt._core.sgd_step and its options.
#include <sparseopt/optim/sgd.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

void bind_sgd(py::module_& m) {
  py::class_<SgdOptions>(m, "SgdOptions")
      .def(py::init<>())
      .def_readwrite("lr", &SgdOptions::lr)
      .def_readwrite("momentum", &SgdOptions::momentum)
      .def_readwrite("dampening", &SgdOptions::dampening)
      .def_readwrite("nesterov", &SgdOptions::nesterov)
      .def_readwrite("mode", &SgdOptions::mode)
      .def("validate", &SgdOptions::validate);

  m.def(
      "sgd_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle momentum_buffer,
         py::handle row_steps, const SgdOptions& options, int num_threads) {
        run_step(param, indices, values, [&](const py::array& p, auto value_tag, auto, auto table, auto grad) {
          using T = typename decltype(value_tag)::type;
          SgdState<T> state;
          if (options.momentum != 0.0) {
            state.momentum_buffer = state_table<T>(momentum_buffer, p, "momentum_buffer");
            state.row_steps = require_row_counts(row_steps, p, "row_steps");
          }
          return [=] { sgd_step(table, grad, state, options, num_threads); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("momentum_buffer"),
      py::arg("row_steps"), py::arg("options"), py::arg("num_threads"));
}

}  // namespace sparseopt::bind

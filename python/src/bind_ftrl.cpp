// sparseopt._core.ftrl_step and its options.
#include <sparseopt/optim/ftrl.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

void bind_ftrl(py::module_& m) {
  py::class_<FtrlOptions>(m, "FtrlOptions")
      .def(py::init<>())
      .def_readwrite("lr", &FtrlOptions::lr)
      .def_readwrite("lr_power", &FtrlOptions::lr_power)
      .def_readwrite("l1", &FtrlOptions::l1)
      .def_readwrite("l2", &FtrlOptions::l2)
      .def_readwrite("initial_accumulator_value", &FtrlOptions::initial_accumulator_value)
      .def("validate", &FtrlOptions::validate);

  m.def(
      "ftrl_check_options",
      [](py::handle param, const FtrlOptions& options) {
        if (is_half_array(param)) return options.validate_in<float>();  // half tables compute in float
        dispatch_float(require_param(param), [&](auto value_tag) {
          options.validate_in<typename decltype(value_tag)::type>();
        });
      },
      py::arg("param"), py::arg("options"),
      "Raises ValueError unless options suit param's dtype (the check every ftrl_step makes).");

  m.def(
      "ftrl_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle accumulator,
         py::handle linear, const FtrlOptions& options, int num_threads, py::handle rounding, std::int64_t step) {
        run_step(param, indices, values, bags, rounding, accumulator, "accumulator",
                 [&](const py::array& p, auto value_tag, auto, auto table, auto grad, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const FtrlState<T> state{state_table<T>(accumulator, p, "accumulator"),
                                   state_table<T>(linear, p, "linear")};
          return [=] { ftrl_step(table, grad, state, options, num_threads, how, step); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("bags"), py::arg("accumulator"),
      py::arg("linear"), py::arg("options"), py::arg("num_threads"), py::arg("rounding") = py::none(), py::arg("step") = 0);
}

}  // namespace sparseopt::bind

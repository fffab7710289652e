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

  def_check_options<FtrlOptions>(m, "ftrl_check_options");

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

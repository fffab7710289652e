// sparseopt._core.adagrad_step and its options.
#include <sparseopt/optim/adagrad.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

void bind_adagrad(py::module_& m) {
  py::class_<AdagradOptions>(m, "AdagradOptions")
      .def(py::init<>())
      .def_readwrite("lr", &AdagradOptions::lr)
      .def_readwrite("lr_decay", &AdagradOptions::lr_decay)
      .def_readwrite("eps", &AdagradOptions::eps)
      .def("validate", &AdagradOptions::validate);

  m.def(
      "adagrad_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle sum,
         const AdagradOptions& options, std::int64_t step, int num_threads, py::handle rounding) {
        run_step(param, indices, values, bags, rounding, sum, "sum",
                 [&](const py::array& p, auto value_tag, auto, auto table, auto grad, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const AdagradState<T> state{state_table<T>(sum, p, "sum")};
          return [=] { adagrad_step(table, grad, state, options, step, num_threads, how); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("bags"), py::arg("sum"), py::arg("options"),
      py::arg("step"), py::arg("num_threads"), py::arg("rounding") = py::none());
}

}  // namespace sparseopt::bind

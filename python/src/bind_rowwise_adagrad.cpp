// sparseopt._core.rowwise_adagrad_step and its options.
#include <sparseopt/optim/rowwise_adagrad.hpp>

#include "bindings.hpp"
#include "optim_binding.hpp"

namespace sparseopt::bind {

void bind_rowwise_adagrad(py::module_& m) {
  py::class_<RowWiseAdagradOptions>(m, "RowWiseAdagradOptions")
      .def(py::init<>())
      .def_readwrite("lr", &RowWiseAdagradOptions::lr)
      .def_readwrite("eps", &RowWiseAdagradOptions::eps)
      .def("validate", &RowWiseAdagradOptions::validate);
  def_check_options<RowWiseAdagradOptions>(m, "rowwise_adagrad_check_options");

  m.def(
      "rowwise_adagrad_step",
      [](py::handle param, py::handle indices, py::handle values, py::handle bags, py::handle sum,
         const RowWiseAdagradOptions& options, int num_threads, py::handle rounding, std::int64_t step) {
        run_step(param, indices, values, bags, rounding, sum, "sum",
                 [&](const py::array& p, auto value_tag, auto, auto table, auto grad, const HalfRounding& how) {
          using T = typename decltype(value_tag)::type;
          const RowWiseAdagradState<T> state{row_state<T>(sum, p, "sum")};
          return [=] { rowwise_adagrad_step(table, grad, state, options, num_threads, how, step); };
        });
      },
      py::arg("param"), py::arg("indices"), py::arg("values"), py::arg("bags"), py::arg("sum"), py::arg("options"),
      py::arg("num_threads"), py::arg("rounding") = py::none(), py::arg("step") = 0);
}

}  // namespace sparseopt::bind

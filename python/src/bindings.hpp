// The parts of the module, each bound in its own file (bind_<part>.cpp) and registered in
// module.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace sparseopt::bind {

void bind_coalesce(pybind11::module_& m);
void bind_optim(pybind11::module_& m);  // enums and checks shared by the optimizers
void bind_sgd(pybind11::module_& m);
void bind_adagrad(pybind11::module_& m);
void bind_adam(pybind11::module_& m);
void bind_rmsprop(pybind11::module_& m);
void bind_rowwise_adagrad(pybind11::module_& m);
void bind_ftrl(pybind11::module_& m);
void bind_topk(pybind11::module_& m);
void bind_gather(pybind11::module_& m);
void bind_meprop(pybind11::module_& m);
void bind_sampled(pybind11::module_& m);  // sampled logistic losses and their samplers
void bind_norm(pybind11::module_& m);     // gradient norms and clipping
void bind_half(pybind11::module_& m);     // float16 / bfloat16 tables

}  // namespace sparseopt::bind

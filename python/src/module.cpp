// sparseopt._core: the pybind11 module. It checks arrays, dispatches on dtypes and releases the
// GIL around kernels; the numerics live in cpp/include/sparseopt/.
#include <pybind11/pybind11.h>

#include <sparseopt/config.hpp>
#include <sparseopt/parallel.hpp>
#include <sparseopt/simd.hpp>

#include <string>

#include "bindings.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "sparseopt's compiled core (private: use the sparseopt package)";
  m.attr("__version__") = SPARSEOPT_VERSION;
  m.attr("max_num_threads") = sparseopt::max_num_threads;
  m.def("build_info", [] {
    py::dict info;
    info["version"] = SPARSEOPT_VERSION;
    info["openmp"] = sparseopt::has_openmp();
    info["max_threads"] = sparseopt::max_threads();
    info["cuda"] = false;
    info["simd"] = sparseopt::simd_path_name(sparseopt::simd_path());
#if defined(__clang__)
    info["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
    info["compiler"] = "gcc " __VERSION__;
#endif
    return info;
  });
  // Testing hook (simd.hpp): "generic" runs every later kernel call on the baseline build of
  // its loops, "best" on the best the CPU has (the default); returns the path now in use.
  m.def(
      "_set_simd_path",
      [](const std::string& path) {
        if (path != "generic" && path != "best")
          throw py::value_error("path must be \"generic\" or \"best\", got \"" + path + "\"");
        sparseopt::set_simd_path(path == "generic" ? sparseopt::SimdPath::generic : sparseopt::SimdPath::best);
        return std::string(sparseopt::simd_path_name(sparseopt::simd_path()));
      },
      py::arg("path"), "Testing hook: which compiled copy of the hot loops runs (\"best\" by default).");
  sparseopt::bind::bind_coalesce(m);
  sparseopt::bind::bind_optim(m);
  sparseopt::bind::bind_sgd(m);
  sparseopt::bind::bind_adagrad(m);
  sparseopt::bind::bind_adam(m);
  sparseopt::bind::bind_rmsprop(m);
  sparseopt::bind::bind_rowwise_adagrad(m);
  sparseopt::bind::bind_ftrl(m);
  sparseopt::bind::bind_topk(m);
  sparseopt::bind::bind_gather(m);
  sparseopt::bind::bind_meprop(m);
  sparseopt::bind::bind_sampled(m);
  sparseopt::bind::bind_norm(m);
  sparseopt::bind::bind_half(m);
}

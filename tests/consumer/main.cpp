// Runs sparse Adam steps through the installed headers and checks them against the formula
// written out here, then checks that a bad index is rejected without touching the table.
// Prints "consumer ok" and exits 0 on success.
#include <sparseopt/sparseopt.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  const std::int64_t num_rows = 6, width = 3;
  std::vector<float> param(num_rows * width), m(param.size(), 0.f), v(param.size(), 0.f);
  for (std::size_t i = 0; i < param.size(); ++i) param[i] = 0.1f * float(i) - 0.5f;
  std::vector<float> expected = param, em = m, ev = v;

  const std::vector<std::int64_t> indices = {4, 1, 4};  // row 4 twice: its values are summed
  const std::vector<float> values = {1.f, -2.f, 0.5f, 0.25f, 0.f, -1.f, 3.f, 1.f, -0.5f};

  sparseopt::AdamOptions options;
  options.lr = 0.01;
  const sparseopt::Table<float> table{param.data(), num_rows, width};
  const sparseopt::RowSparse<float, std::int64_t> grad{indices.data(), values.data(),
                                                       std::int64_t(indices.size()), width};
  const sparseopt::AdamState<float> state{{m.data(), num_rows, width}, {v.data(), num_rows, width}};

  for (std::int64_t step = 1; step <= 3; ++step) {
    sparseopt::adam_step(table, grad, state, options, step);
    // The reference: SparseAdam's formula on the coalesced gradient of rows 1 and 4.
    const double step_size = 0.01 * std::sqrt(1 - std::pow(0.999, step)) / (1 - std::pow(0.9, step));
    for (std::int64_t r : {1, 4}) {
      for (std::int64_t j = 0; j < width; ++j) {
        float g = 0.f;
        for (std::size_t k = 0; k < indices.size(); ++k)
          if (indices[k] == r) g += values[k * width + j];
        const std::size_t e = std::size_t(r * width + j);
        em[e] += (g - em[e]) * 0.1f;
        ev[e] += (g * g - ev[e]) * 0.001f;
        expected[e] -= float(step_size) * (em[e] / (std::sqrt(ev[e]) + 1e-8f));
      }
    }
  }
  for (std::size_t i = 0; i < param.size(); ++i) {
    if (std::fabs(param[i] - expected[i]) > 1e-6f * std::fmax(1.f, std::fabs(expected[i]))) {
      std::printf("mismatch at %zu: %.9g vs %.9g\n", i, param[i], expected[i]);
      return 1;
    }
  }

  const std::vector<float> before = param;
  const std::vector<std::int64_t> bad = {0, 6};
  const sparseopt::RowSparse<float, std::int64_t> bad_grad{bad.data(), values.data(), 2, width};
  try {
    sparseopt::adam_step(table, bad_grad, state, options, 4);
    std::printf("an out-of-range index was accepted\n");
    return 1;
  } catch (const sparseopt::index_error& e) {
    std::printf("rejected as expected: %s\n", e.what());
  }
  if (param != before) {
    std::printf("a rejected step changed the table\n");
    return 1;
  }
  std::printf("consumer ok (openmp=%d, threads=%d)\n", int(sparseopt::has_openmp()),
              sparseopt::max_threads());
  return 0;
}

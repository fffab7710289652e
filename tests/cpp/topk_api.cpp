// sparseopt's top-k from C++, as a trainer (meProp) calls it: topk_rows over strided rows,
// topk_row inside the caller's own loop, and the errors. Prints "topk api ok" on success.
#include <sparseopt/sparseopt.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "expect.hpp"

namespace {

template <class F>
bool throws_invalid_argument(F&& f) {
  try {
    f();
  } catch (const sparseopt::invalid_argument&) {
    return true;
  }
  return false;
}

}  // namespace

int main() {
  const std::int64_t rows = 50, n = 500, k = 20, x_stride = 512, out_stride = 24;
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  std::vector<float> x(rows * x_stride, std::numeric_limits<float>::quiet_NaN());  // padding
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < n; ++j) x[r * x_stride + j] = normal(gen);
  x[3 * x_stride + 10] = x[3 * x_stride + 11] = 100.f;  // a tie: the lower index first

  sparseopt::TopkOptions options;
  options.magnitude = true;  // meProp keeps the largest |gradient|
  for (int threads : {1, 2, 0}) {
    std::vector<float> values(rows * out_stride, -1.f);
    std::vector<std::int64_t> indices(rows * out_stride, -1);
    sparseopt::topk_rows(x.data(), rows, n, k, values.data(), indices.data(), options, threads,
                         x_stride, out_stride);
    for (std::int64_t r = 0; r < rows; ++r) {
      // topk_row, called as a trainer would from inside its own parallel loop
      float v[k];
      std::int64_t ix[k];
      sparseopt::topk_row(x.data() + r * x_stride, n, k, v, ix, options);
      for (std::int64_t j = 0; j < k; ++j) {
        expect(values[r * out_stride + j] == v[j] && indices[r * out_stride + j] == ix[j],
               "topk_rows equals topk_row");
        expect(x[r * x_stride + ix[j]] == v[j], "values are the selected elements");
        if (j > 0) expect(std::fabs(v[j - 1]) >= std::fabs(v[j]), "sorted by |x|, descending");
      }
      for (std::int64_t j = k; j < out_stride; ++j)
        expect(values[r * out_stride + j] == -1.f && indices[r * out_stride + j] == -1,
               "padding between output rows untouched");
      // every element left out ranks behind the k-th
      const float kth = std::fabs(v[k - 1]);
      for (std::int64_t j = 0; j < n; ++j) {
        bool chosen = false;
        for (std::int64_t c = 0; c < k; ++c) chosen = chosen || ix[c] == j;
        if (!chosen) expect(std::fabs(x[r * x_stride + j]) <= kth, "nothing better left out");
      }
    }
    expect(indices[3 * out_stride] == 10 && indices[3 * out_stride + 1] == 11, "ties by index");
  }

  // packed rows (strides default to n and k), double, smallest
  {
    std::vector<double> d = {3, -1, 2, -1, 5, 0, -0.0, 7};
    std::vector<double> v(4);
    std::vector<std::int64_t> ix(4);
    sparseopt::TopkOptions smallest;
    smallest.largest = false;
    sparseopt::topk_rows(d.data(), 2, 4, 2, v.data(), ix.data(), smallest);
    expect(ix[0] == 1 && ix[1] == 3 && ix[2] == 1 && ix[3] == 2, "packed rows, smallest");
    expect(std::signbit(v[3]), "-0.0 comes back as -0.0");
  }

  // errors: thrown before anything is written
  {
    std::vector<float> v(4, 9.f);
    std::vector<std::int64_t> ix(4, 9);
    const float* p = x.data();
    expect(throws_invalid_argument([&] { sparseopt::topk_rows(p, 1, 3, 4, v.data(), ix.data()); }),
           "k > n");
    expect(throws_invalid_argument([&] { sparseopt::topk_rows(p, 1, 3, 0, v.data(), ix.data()); }),
           "k = 0");
    expect(throws_invalid_argument([&] { sparseopt::topk_row(p, 3, 4, v.data(), ix.data()); }),
           "topk_row: k > n");
    expect(throws_invalid_argument(
               [&] { sparseopt::topk_rows(p, 2, 3, 2, v.data(), ix.data(), {}, 0, 2, 0); }),
           "x_stride < n");
    expect(throws_invalid_argument(
               [&] { sparseopt::topk_rows(p, 2, 3, 2, v.data(), ix.data(), {}, 0, 0, 1); }),
           "out_stride < k");
    expect(throws_invalid_argument(
               [&] { sparseopt::topk_rows(p, 1, 3, 2, v.data(), ix.data(), {}, -1); }),
           "num_threads < 0");
    expect(throws_invalid_argument([&] {
             sparseopt::topk_rows(p, 1, 3, 2, reinterpret_cast<float*>(ix.data()), ix.data());
           }),
           "overlapping outputs");
    const std::vector<float> x_before(x.begin(), x.begin() + 8);
    expect(throws_invalid_argument([&] { sparseopt::topk_row(x.data(), 8, 2, x.data() + 4, ix.data()); }),
           "topk_row: values overlapping x");
    expect(std::equal(x_before.begin(), x_before.end(), x.begin()), "x unchanged");
    for (std::size_t j = 0; j < 4; ++j) expect(v[j] == 9.f && ix[j] == 9, "nothing written");
  }

  if (failures) return 1;
  std::printf("topk api ok (openmp=%d)\n", int(sparseopt::has_openmp()));
  return 0;
}

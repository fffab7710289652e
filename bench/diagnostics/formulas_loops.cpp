// Lazy Adam / SGD-momentum / RMSprop / Adagrad steps on a cache-resident table, one thread:
// the row loops' compute, not memory. Prints ns per touched element (best of 5). Built against
// two trees, it shows whether a change to the row loops (optim/formulas.hpp) kept them
// vectorised -- a scalar loop is several times slower:
//   git archive <commit> cpp/include | tar -x -C /tmp/before
//   g++ -std=c++17 -O3 -fno-math-errno -fopenmp -I/tmp/before/cpp/include formulas_loops.cpp -o before
//   g++ -std=c++17 -O3 -fno-math-errno -fopenmp -Icpp/include formulas_loops.cpp -o after
#include <sparseopt/sparseopt.hpp>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>
#include <algorithm>
int main() {
  const std::int64_t rows = 2048, w = 64, n = 2048, reps = 400;
  std::vector<float> p(rows * w, 0.5f), m(p.size()), v(p.size()), s(p.size(), 0.1f), b(p.size());
  std::vector<std::int64_t> idx(n), steps(rows);
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<float> g(n * w);
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = float(int(i % 13) - 6) * 0.01f;
  sparseopt::Table<float> t{p.data(), rows, w};
  sparseopt::RowSparse<float, std::int64_t> grad{idx.data(), g.data(), n, w};
  auto time = [&](const char* name, auto f) {
    double best = 1e30;
    for (int k = 0; k < 5; ++k) {
      auto t0 = std::chrono::steady_clock::now();
      for (std::int64_t r = 1; r <= reps; ++r) f(r);
      double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, ns / double(reps * n * w));
    }
    std::printf("%-10s %.3f ns/element\n", name, best);
  };
  sparseopt::AdamOptions ao; sparseopt::AdamState<float> as{{m.data(), rows, w}, {v.data(), rows, w}};
  time("adam", [&](std::int64_t r) { sparseopt::adam_step(t, grad, as, ao, r, 1); });
  sparseopt::SgdOptions so; so.momentum = 0.9; sparseopt::SgdState<float> ss{{b.data(), rows, w}, steps.data()};
  time("sgd_mom", [&](std::int64_t r) { sparseopt::sgd_step(t, grad, ss, so, r, 1); });
  sparseopt::RmspropOptions ro; sparseopt::RmspropState<float> rs{{s.data(), rows, w}};
  time("rmsprop", [&](std::int64_t r) { sparseopt::rmsprop_step(t, grad, rs, ro, r, 1); });
  sparseopt::AdagradOptions go; sparseopt::AdagradState<float> gs{{s.data(), rows, w}};
  time("adagrad", [&](std::int64_t r) { sparseopt::adagrad_step(t, grad, gs, go, r, 1); });
  return int(p[0] > 1e30f);
}

// How close sparseopt's meProp kernels are to the cost of writing their output on this
// machine, at the MNIST example's shapes (minibatch 50, 500 output units, k = 20; the 500->500
// layer and the 784->500 first layer). It backs the closing note of issue 4 (why the 5x
// backward speedup at k = 20 is out of reach on a 2-core machine): per step the two weight
// gradients are ~430 rows of 500 and 784 float32 (2.2 MB), and writing rows that size with
// ordinary stores costs a read of every cache line first once they exceed L2.
//
// Times, in interleaved repetitions (median microseconds; one thread):
//   plan      MePropPlan::build: top-k of each example's |grad_out| and the gather plan
//   grad_x    gather_sum: g W, the 500->500 layer only (the first layer needs no grad_x)
//   grad_W    gather_sum_backward: the selected rows of g^T x
//   floor     a loop that writes the same rows, each the sum of two scaled x rows (fewer
//             terms than grad_W's ~2.3 per row: a lower bound of its memory traffic)
//   memset    writing zeros over the same rows (memset, which may avoid reading the lines)
//
// Build and run from the repository root (no Python needed):
//   g++ -O3 -std=c++17 -fopenmp -I cpp/include bench/diagnostics/meprop_floor.cpp -o /tmp/meprop_floor
//   /tmp/meprop_floor [MB [STEPS]]   (MB written between steps, default 16; STEPS default 2000)
#include <sparseopt/meprop.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

using clk = std::chrono::steady_clock;

namespace {

double micros(clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count() * 1e6; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Layer {
  std::int64_t in;
  bool grad_x;
  std::vector<float> x, w, g, gx, values;
  std::vector<std::int64_t> rows;
  sparseopt::MePropPlan<float> plan;
  std::vector<double> t_plan, t_gx, t_gw, t_floor, t_memset;
};

// The floor: n output rows, each 0.5 x[a] + 0.25 x[b] for two rows a, b of x (batch x in).
__attribute__((noinline)) void write_rows(const float* __restrict x, std::int64_t batch, std::int64_t in,
                                          float* __restrict values, std::int64_t n) {
  for (std::int64_t u = 0; u < n; ++u) {
    const float* __restrict a = x + (u % batch) * in;
    const float* __restrict b = x + ((u * 7 + 3) % batch) * in;
    float* __restrict o = values + u * in;
    for (std::int64_t j = 0; j < in; ++j) o[j] = 0.5f * a[j] + 0.25f * b[j];
  }
}

}  // namespace

int main(int argc, char** argv) {
  constexpr std::int64_t batch = 50, out = 500, k = 20;
  const std::int64_t reps = argc > 2 ? std::max(1L, std::atol(argv[2])) : 2000, warmup = std::min<std::int64_t>(100, reps / 2);
  std::mt19937_64 rng(0);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform;
  // Written between steps, as the optimizer steps between two backward passes write the
  // layers' weights and state (Adam: ~12 MB for these two layers).
  const long evict_mb = argc > 1 ? std::atol(argv[1]) : 16;
  std::vector<float> evict(static_cast<std::size_t>(evict_mb) << 18);
  Layer layers[2] = {{500, true, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}},
                     {784, false, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}};
  for (Layer& l : layers) {
    l.x.resize(batch * l.in);
    l.w.resize(out * l.in);
    l.g.resize(batch * out);
    l.gx.resize(batch * l.in);
    l.values.resize(out * l.in);
    l.rows.resize(out);
    for (float& v : l.x) v = uniform(rng) < 0.5f ? uniform(rng) : 0.f;  // ReLU-like activations
    for (float& v : l.w) v = normal(rng);
    for (float& v : l.g) v = normal(rng);
  }
  double checksum = 0;
  for (std::int64_t r = 0; r < reps; ++r) {
    for (float& v : evict) v += 1.f;
    for (Layer& l : layers) {
      const std::int64_t in = l.in;
      auto t0 = clk::now();
      l.plan.build(l.g.data(), batch, out, in, k, false, 1);
      auto t1 = clk::now();
      const auto bags = l.plan.bags();
      if (l.grad_x)
        sparseopt::gather_sum(sparseopt::Table<const float>{l.w.data(), out, in}, bags,
                              sparseopt::Table<float>{l.gx.data(), batch, in}, sparseopt::BagReduction::sum, 1);
      auto t2 = clk::now();
      const std::int64_t n = l.plan.size();
      sparseopt::gather_sum_backward(sparseopt::Table<const float>{l.x.data(), batch, in}, bags, l.plan.gather_plan(),
                                     l.rows.data(), sparseopt::Table<float>{l.values.data(), n, in},
                                     sparseopt::BagReduction::sum, 1);
      auto t3 = clk::now();
      write_rows(l.x.data(), batch, in, l.values.data(), n);
      auto t4 = clk::now();
      std::memset(l.values.data(), 0, sizeof(float) * static_cast<std::size_t>(n * in));
      auto t5 = clk::now();
      checksum += l.gx[static_cast<std::size_t>(r % (batch * in))] + l.values[static_cast<std::size_t>(r % (n * in))];
      if (r >= warmup) {
        l.t_plan.push_back(micros(t0, t1));
        l.t_gx.push_back(micros(t1, t2));
        l.t_gw.push_back(micros(t2, t3));
        l.t_floor.push_back(micros(t3, t4));
        l.t_memset.push_back(micros(t4, t5));
      }
    }
  }
  std::printf("median microseconds per step, 1 thread, %ld MB written between steps (checksum %g)\n", evict_mb,
              checksum);
  std::printf("%-12s %6s %8s %8s %8s %8s %8s %10s\n", "layer", "rows", "plan", "grad_x", "grad_W", "floor", "memset",
              "grad_W MB");
  for (const Layer& l : layers) {
    const double mb = double(l.plan.size() * l.in * 4) / 1e6;
    std::printf("%4ld -> %-4ld %6ld %8.1f %8.1f %8.1f %8.1f %8.1f %10.2f\n", long(l.in), long(out), long(l.plan.size()),
                median(l.t_plan), l.grad_x ? median(l.t_gx) : 0.0, median(l.t_gw), median(l.t_floor),
                median(l.t_memset), mb);
  }
}

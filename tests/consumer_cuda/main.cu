// A CUDA trainer's use of sparseopt::cuda: counts the devices and, where there is one, runs
// lazy Adam steps on a device table and checks them bit for bit against the CPU's adam_step on
// a copy, then checks that a bad index is rejected without touching the table. Prints
// "consumer-cuda ok devices=N" and exits 0 on success (N = 0: the kernels are linked, not run).
#include <sparseopt/cuda/sparseopt_cuda.hpp>
#include <sparseopt/sparseopt.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <cuda_runtime.h>

namespace {

template <class T>
T* to_device(const std::vector<T>& host) {
  T* d = nullptr;
  if (cudaMalloc(&d, host.size() * sizeof(T)) != cudaSuccess) return nullptr;
  cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

template <class T>
std::vector<T> to_host(const T* d, std::size_t n) {
  std::vector<T> host(n);
  cudaMemcpy(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return host;
}

}  // namespace

int main() {
  const int devices = sparseopt::cuda::device_count();
  if (devices == 0) {
    std::printf("consumer-cuda ok devices=0\n");
    return 0;
  }
  const std::int64_t num_rows = 6, width = 40;  // wider than a warp
  std::vector<float> param(num_rows * width), m(param.size(), 0.f), v(param.size(), 0.f);
  for (std::size_t i = 0; i < param.size(); ++i) param[i] = 0.01f * float(i) - 0.5f;
  const std::vector<std::int64_t> indices = {4, 1, 4};  // row 4 twice: its values are summed
  std::vector<float> values(indices.size() * width);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = float(int(i % 7) - 3) * 0.25f;

  float *d_param = to_device(param), *d_m = to_device(m), *d_v = to_device(v), *d_values = to_device(values);
  std::int64_t* d_indices = to_device(indices);
  sparseopt::AdamOptions options;
  options.lr = 0.01;
  const sparseopt::Table<float> cpu_table{param.data(), num_rows, width}, gpu_table{d_param, num_rows, width};
  const sparseopt::AdamState<float> cpu_state{{m.data(), num_rows, width}, {v.data(), num_rows, width}};
  const sparseopt::AdamState<float> gpu_state{{d_m, num_rows, width}, {d_v, num_rows, width}};
  for (std::int64_t step = 1; step <= 3; ++step) {
    sparseopt::adam_step(cpu_table, sparseopt::RowSparse<float, std::int64_t>{indices.data(), values.data(), 3, width},
                         cpu_state, options, step);
    sparseopt::cuda::adam_step(gpu_table, sparseopt::RowSparse<float, std::int64_t>{d_indices, d_values, 3, width},
                               gpu_state, options, step);
  }
  cudaDeviceSynchronize();
  const std::vector<float> got = to_host(d_param, param.size());
  if (std::memcmp(got.data(), param.data(), param.size() * sizeof(float)) != 0) {
    std::printf("the device's Adam steps differ from the CPU's\n");
    return 1;
  }
  const std::vector<std::int64_t> bad = {0, 6};
  std::int64_t* d_bad = to_device(bad);
  try {
    sparseopt::cuda::adam_step(gpu_table, sparseopt::RowSparse<float, std::int64_t>{d_bad, d_values, 2, width},
                               gpu_state, options, 4);
    std::printf("an out-of-range index was accepted\n");
    return 1;
  } catch (const sparseopt::index_error& e) {
    std::printf("rejected as expected: %s\n", e.what());
  }
  if (to_host(d_param, param.size()) != got) {
    std::printf("a rejected step changed the table\n");
    return 1;
  }
  std::printf("consumer-cuda ok devices=%d\n", devices);
  return 0;
}

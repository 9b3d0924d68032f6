// One-pixel differential evolution on CUDA: trial vectors (one thread per gene), perturbed
// images (one thread per output element), greedy selection (one thread per gene, then one
// per fitness). Random numbers come in as tensors, so the results equal the CPU kernels'
// bit for bit (see Unfused below for the one thing that takes care).
#include <cuda_runtime.h>

#include <cstdint>

#include "../de_math.h"
#include "cuda_utils.cuh"
#include "de_launchers.h"

namespace advrobust {
namespace gpu {
namespace {

// nvcc fuses a + b * c into one FMA (one rounding) by default; the CPU kernel and the
// eager twin round twice. de_trial_gene is therefore evaluated on this wrapper, whose
// operators are the IEEE round-to-nearest intrinsics that nvcc never contracts; the
// formula itself is still the one in de_math.h.
template <typename T>
struct Unfused {
  T v;
};

__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

template <typename T>
__host__ __device__ __forceinline__ Unfused<T> operator+(Unfused<T> a, Unfused<T> b) {
#if defined(__CUDA_ARCH__)
  return {add_rn(a.v, b.v)};
#else
  return {a.v + b.v};
#endif
}
template <typename T>
__host__ __device__ __forceinline__ Unfused<T> operator-(Unfused<T> a, Unfused<T> b) {
#if defined(__CUDA_ARCH__)
  return {sub_rn(a.v, b.v)};
#else
  return {a.v - b.v};
#endif
}
template <typename T>
__host__ __device__ __forceinline__ Unfused<T> operator*(Unfused<T> a, Unfused<T> b) {
#if defined(__CUDA_ARCH__)
  return {mul_rn(a.v, b.v)};
#else
  return {a.v * b.v};
#endif
}
template <typename T>
__host__ __device__ __forceinline__ bool operator<(Unfused<T> a, Unfused<T> b) {
  return a.v < b.v;
}
template <typename T>
__host__ __device__ __forceinline__ bool operator>(Unfused<T> a, Unfused<T> b) {
  return a.v > b.v;
}
template <typename T>
__host__ __device__ __forceinline__ bool operator!=(Unfused<T> a, Unfused<T> b) {  // min_of/max_of's NaN test
  return a.v != b.v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) de_trial_kernel(const DeTrialArgs<T> p) {
  using U = Unfused<T>;
  const int64_t P = p.pop_size, D = p.genes, n = p.batch * P * D;
  for (int64_t t = global_thread_x(); t < n; t += grid_threads_x()) {
    const int64_t bp = t / D, j = t - bp * D, b = bp / P;
    const T* members = p.population + b * P * D;  // population b
    const int64_t* donors = p.donors + bp * 3;
    const T a = members[donors[0] * D + j], bb = members[donors[1] * D + j], c = members[donors[2] * D + j];
    p.out[t] = de_trial_gene<U>(U{p.population[t]}, U{a}, U{bb}, U{c}, U{p.F}, U{p.CR}, U{p.cross_u[t]},
                                j == p.cross_j[bp], U{p.resample_u[t]}, U{p.lower[j]}, U{p.upper[j]},
                                p.resample)
                   .v;
  }
}

// out[b, p, c, h, w] = the image's pixel, then for k = 0..K-1 in order, where candidate
// pixel k lands on (h, w): replaced by (add=false) or increased by (add=true) its value c.
// The same sequence of operations as the CPU's copy-then-write-in-order.
template <typename T>
__global__ void __launch_bounds__(kThreads) de_build_kernel(const DeBuildArgs<T> p) {
  const int64_t C = p.channels, H = p.height, W = p.width, K = p.pixels, G = C + 2;
  const int64_t HW = H * W, image = C * HW, n = p.batch * p.pop_size * image;
  for (int64_t t = global_thread_x(); t < n; t += grid_threads_x()) {
    const int64_t bp = t / image, within = t - bp * image;
    const int64_t c = within / HW, pix = within - c * HW;
    const int64_t b = bp / p.pop_size;
    T v = p.images[b * image + within];
    const T* genes = p.candidates + bp * K * G;
    for (int64_t k = 0; k < K; ++k, genes += G) {
      if (de_pixel_index(genes[0], H) * W + de_pixel_index(genes[1], W) == pix) {
        v = p.add ? v + genes[2 + c] : genes[2 + c];
      }
    }
    p.out[t] = v;
  }
}

// Genes first (reading fitness, not writing it), fitness in a second kernel on the same
// stream: no thread reads a fitness another one rewrites.
template <typename T>
__global__ void __launch_bounds__(kThreads) de_select_genes_kernel(const DeSelectArgs<T> p) {
  const int64_t n = p.candidates * p.genes;
  for (int64_t t = global_thread_x(); t < n; t += grid_threads_x()) {
    const int64_t i = t / p.genes;
    if (p.trial_fitness[i] <= p.fitness[i]) p.population[t] = p.trial[t];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) de_select_fitness_kernel(const DeSelectArgs<T> p) {
  for (int64_t i = global_thread_x(); i < p.candidates; i += grid_threads_x()) {
    const T tf = p.trial_fitness[i];
    if (tf <= p.fitness[i]) p.fitness[i] = tf;
  }
}

}  // namespace

template <typename T>
cudaError_t launch_de_trial(const DeTrialArgs<T>& p, cudaStream_t stream) {
  const int64_t n = p.batch * p.pop_size * p.genes;
  if (n == 0) return cudaSuccess;
  de_trial_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_de_build(const DeBuildArgs<T>& p, cudaStream_t stream) {
  const int64_t n = p.batch * p.pop_size * p.channels * p.height * p.width;
  if (n == 0) return cudaSuccess;
  de_build_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_de_select(const DeSelectArgs<T>& p, cudaStream_t stream) {
  if (p.candidates == 0) return cudaSuccess;
  if (p.genes > 0) {
    de_select_genes_kernel<T><<<blocks_for(p.candidates * p.genes), kThreads, 0, stream>>>(p);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  de_select_fitness_kernel<T><<<blocks_for(p.candidates), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template cudaError_t launch_de_trial<float>(const DeTrialArgs<float>&, cudaStream_t);
template cudaError_t launch_de_trial<double>(const DeTrialArgs<double>&, cudaStream_t);
template cudaError_t launch_de_build<float>(const DeBuildArgs<float>&, cudaStream_t);
template cudaError_t launch_de_build<double>(const DeBuildArgs<double>&, cudaStream_t);
template cudaError_t launch_de_select<float>(const DeSelectArgs<float>&, cudaStream_t);
template cudaError_t launch_de_select<double>(const DeSelectArgs<double>&, cudaStream_t);

}  // namespace gpu
}  // namespace advrobust

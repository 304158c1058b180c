// Declarations that NVRTC provides built in, for compiling kernels.cu with
// clang without the CUDA toolkit (clang -x cuda --cuda-device-only
// -nocudainc -nocudalib -include clang_prelude.h). The math functions are
// only declared: the test checks that the kernels compile to PTX, not that
// the PTX links.
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __forceinline__ __inline__ __attribute__((always_inline))
#include "__clang_cuda_builtin_vars.h"

extern "C" {
__device__ float expf(float);
__device__ float exp2f(float);
__device__ float logf(float);
__device__ float sqrtf(float);
__device__ float rsqrtf(float);
__device__ float tanhf(float);
__device__ float erfcf(float);
__device__ float fminf(float, float);
__device__ float fmaxf(float, float);
__device__ float fmaf(float, float, float);
__device__ float fabsf(float);
__device__ double exp(double);
__device__ double log(double);
__device__ double sqrt(double);
__device__ double pow(double, double);
__device__ void sincos(double, double *, double *);
}

static __device__ __forceinline__ double __longlong_as_double(long long x) { return __nvvm_bitcast_ll2d(x); }

static __device__ __forceinline__ double __shfl_down_sync(unsigned mask, double v, int delta) {
	long long x = __nvvm_bitcast_d2ll(v);
	int lo = __nvvm_shfl_sync_down_i32(mask, (int)x, delta, 31);
	int hi = __nvvm_shfl_sync_down_i32(mask, (int)(x >> 32), delta, 31);
	return __nvvm_bitcast_ll2d(((long long)hi << 32) | (unsigned)lo);
}

static __device__ __forceinline__ double __shfl_sync(unsigned mask, double v, int src) {
	long long x = __nvvm_bitcast_d2ll(v);
	int lo = __nvvm_shfl_sync_idx_i32(mask, (int)x, src, 31);
	int hi = __nvvm_shfl_sync_idx_i32(mask, (int)(x >> 32), src, 31);
	return __nvvm_bitcast_ll2d(((long long)hi << 32) | (unsigned)lo);
}

static __device__ __forceinline__ float __shfl_xor_sync(unsigned mask, float v, int laneMask) {
	return __nvvm_shfl_sync_bfly_f32(mask, v, laneMask, 31);
}

// Host emulation of the CUDA thread model, enough to run kernels.cu on the
// CPU inside the fake libcuda.so.1 (fake_cuda.cpp). Each CUDA thread of a
// block is a ucontext fiber on one host thread; __syncthreads and the warp
// shuffles are barriers at which the fibers switch. Blocks run one after
// another, so a __shared__ variable (here a static) is private to the
// running block.
//
// Because fibers switch only at barriers, a missing __syncthreads shows as
// a wrong result (one thread runs far ahead of the others), and a barrier
// reached by only part of a block is reported as a deadlock. Each barrier
// also records where it was called from: threads of a block (or lanes of a
// warp, for a shuffle) released together from different places, which a
// barrier in divergent code gives even when the numbers of arrivals match,
// fail the launch as divergent.
#ifndef SORA_EMU_H
#define SORA_EMU_H

#include <math.h>
#include <string.h>

struct sora_dim3 {
	unsigned x, y, z;
};

struct sora_thread;
extern sora_thread *sora_emu_cur;
extern sora_dim3 sora_emu_block_idx, sora_emu_block_dim, sora_emu_grid_dim;
const sora_dim3 &sora_emu_thread_idx();

#define threadIdx (sora_emu_thread_idx())
#define blockIdx (sora_emu_block_idx)
#define blockDim (sora_emu_block_dim)
#define gridDim (sora_emu_grid_dim)

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

void __syncthreads();
// mode: 0 reads lane, 1 this lane + lane (down), 2 this lane ^ lane (xor).
double sora_emu_shfl(double v, int lane, int mode);

template <class T>
static inline T __shfl_down_sync(unsigned, T v, int delta) {
	return (T)sora_emu_shfl((double)v, delta, 1);
}
template <class T>
static inline T __shfl_sync(unsigned, T v, int src) {
	return (T)sora_emu_shfl((double)v, src, 0);
}
template <class T>
static inline T __shfl_xor_sync(unsigned, T v, int laneMask) {
	return (T)sora_emu_shfl((double)v, laneMask, 2);
}

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double __longlong_as_double(long long x) {
	double d;
	memcpy(&d, &x, sizeof d);
	return d;
}

#endif

// A check of the emulator itself (emu.cpp), built and run by
// TestEmulatorDivergentBarriers: kernels whose barriers every thread
// reaches from the same place must run, and kernels that reach a
// __syncthreads or a warp shuffle from different places in divergent code
// must be refused, even where the numbers of arrivals match (which a
// count alone does not notice). It prints one line per kernel: its name,
// then "ok" or the emulator's error.
#include <stdio.h>

#include "emu.h"

extern "C" int sora_emu_launch(void (*fn)(void *), void *arg, sora_dim3 grid, sora_dim3 block, unsigned first_x, char *err, int errlen);

static volatile int sink[1024];

// uniform: every thread takes the same barriers, in a loop and in a
// function called from two places.
static void step(int i) {
	sink[threadIdx.x] += i;
	__syncthreads();
}

static void uniform(void *) {
	float v = (float)threadIdx.x;
	for (int i = 0; i < 3; i++) {
		step(i);
		v += __shfl_xor_sync(0xffffffffu, v, 1);
	}
	step(7);
	sink[threadIdx.x] = (int)v;
}

// divergent_sync: the two halves of the block meet at different
// __syncthreads, the same number of times.
static void divergent_sync(void *) {
	if (threadIdx.x & 32) {
		sink[threadIdx.x] = 1;
		__syncthreads();
		sink[threadIdx.x] += 3;
	} else {
		sink[threadIdx.x] = 2;
		__syncthreads();
		sink[threadIdx.x] *= 5;
	}
}

// divergent_shfl: the two halves of a warp shuffle at different places.
static void divergent_shfl(void *) {
	float v = (float)threadIdx.x;
	if (threadIdx.x % 32 < 16) {
		v = __shfl_xor_sync(0xffffffffu, v, 1) + 1.0f;
	} else {
		v = 2.0f * __shfl_xor_sync(0xffffffffu, v, 2);
	}
	sink[threadIdx.x] = (int)v;
}

int main() {
	struct {
		const char *name;
		void (*fn)(void *);
	} kernels[] = {{"uniform", uniform}, {"divergent_sync", divergent_sync}, {"divergent_shfl", divergent_shfl}};
	for (auto &k : kernels) {
		char err[512] = "";
		int rc = sora_emu_launch(k.fn, nullptr, sora_dim3{2, 1, 1}, sora_dim3{128, 1, 1}, 0, err, sizeof err);
		printf("%s: %s\n", k.name, rc == 0 ? "ok" : err);
	}
	return 0;
}

// The scheduler of emu.h: runs a grid block by block, the threads of a
// block as ucontext fibers on the calling host thread, switching at
// barriers (__syncthreads, and the warp barriers of the shuffles).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "emu.h"

enum { RUNNABLE, WAIT_BLOCK, WAIT_WARP, DONE };

struct sora_thread {
	sora_dim3 tid;
	ucontext_t ctx;
	int state;
	int warp;
	double shfl;
	// site is where the thread called the barrier it waits at (the
	// return address of __syncthreads or of the shuffle).
	const void *site;
};

sora_thread *sora_emu_cur;
sora_dim3 sora_emu_block_idx, sora_emu_block_dim, sora_emu_grid_dim;

const sora_dim3 &sora_emu_thread_idx() { return sora_emu_cur->tid; }

static const size_t stack_size = 128 << 10;
static sora_thread threads[1024];
static char *stacks[1024];
static ucontext_t sched;
static int nthreads, block_arrived, warp_arrived[32], warp_size_of[32];
static void (*thread_fn)(void *);
static unsigned long long rng = 0x9e3779b97f4a7c15ull; // fixed seed: runs repeat exactly
static void *thread_arg;
// divergence describes the first barrier of the launch that threads
// reached from different places ("" while none did).
static char divergence[256];

// check_sites records a divergence when the n threads from first on (those
// a barrier just released, the caller among them) called it from more than
// one place: a __syncthreads or a shuffle in code that not every thread of
// the block (or lane of the warp) runs, undefined behaviour on a GPU even
// where the numbers of arrivals happen to match.
static void check_sites(int first, int n, const char *what) {
	if (divergence[0]) return;
	for (int i = first + 1; i < first + n; i++) {
		if (threads[i].site != threads[first].site) {
			snprintf(divergence, sizeof divergence,
			         "emulator: divergent %s: thread %d called it at %p, thread %d at %p (a barrier in code that not every thread runs)",
			         what, first, threads[first].site, i, threads[i].site);
			return;
		}
	}
}

static void fiber_main() {
	thread_fn(thread_arg);
	sora_emu_cur->state = DONE;
	// returning resumes sched (uc_link)
}

static void yield_to_scheduler() { swapcontext(&sora_emu_cur->ctx, &sched); }

void __syncthreads() {
	sora_emu_cur->site = __builtin_return_address(0);
	if (++block_arrived == nthreads) {
		block_arrived = 0;
		check_sites(0, nthreads, "__syncthreads");
		for (int i = 0; i < nthreads; i++)
			if (threads[i].state == WAIT_BLOCK) threads[i].state = RUNNABLE;
		return;
	}
	sora_emu_cur->state = WAIT_BLOCK;
	yield_to_scheduler();
}

static void warp_barrier(const void *site) {
	int w = sora_emu_cur->warp;
	sora_emu_cur->site = site;
	if (++warp_arrived[w] == warp_size_of[w]) {
		warp_arrived[w] = 0;
		check_sites(w * 32, warp_size_of[w], "warp shuffle");
		for (int i = w * 32; i < w * 32 + warp_size_of[w]; i++)
			if (threads[i].state == WAIT_WARP) threads[i].state = RUNNABLE;
		return;
	}
	sora_emu_cur->state = WAIT_WARP;
	yield_to_scheduler();
}

// sora_emu_shfl returns the value of lane (mode 0), of this lane plus lane
// (mode 1, a shuffle down) or of this lane xor lane (mode 2) of the calling
// warp, or the caller's own value when that lane is outside the warp.
double sora_emu_shfl(double v, int lane, int mode) {
	sora_thread *me = sora_emu_cur;
	const void *site = __builtin_return_address(0);
	me->shfl = v;
	warp_barrier(site);
	int self = (int)(me - threads) - me->warp * 32;
	int src = mode == 1 ? self + lane : mode == 2 ? self ^ lane : lane;
	double r = v;
	if (src >= 0 && src < warp_size_of[me->warp]) r = threads[me->warp * 32 + src].shfl;
	warp_barrier(site); // nobody overwrites shfl before every lane has read
	return r;
}

// sora_emu_launch runs the grid's blocks from x index first_x on (those
// before it are skipped, for tests of the last blocks of a large grid).
extern "C" int sora_emu_launch(void (*fn)(void *), void *arg, sora_dim3 grid, sora_dim3 block, unsigned first_x, char *err, int errlen) {
	nthreads = block.x * block.y * block.z;
	thread_fn = fn;
	thread_arg = arg;
	sora_emu_grid_dim = grid;
	sora_emu_block_dim = block;
	int nwarps = (nthreads + 31) / 32;
	divergence[0] = 0;
	for (int w = 0; w < nwarps; w++) warp_size_of[w] = w == nwarps - 1 ? nthreads - w * 32 : 32;
	for (unsigned bz = 0; bz < grid.z; bz++)
		for (unsigned by = 0; by < grid.y; by++)
			for (unsigned bx = first_x; bx < grid.x; bx++) {
				sora_emu_block_idx = sora_dim3{bx, by, bz};
				block_arrived = 0;
				memset(warp_arrived, 0, sizeof warp_arrived);
				for (int i = 0; i < nthreads; i++) {
					sora_thread *t = &threads[i];
					t->tid = sora_dim3{(unsigned)i % block.x, (unsigned)i / block.x % block.y, (unsigned)i / (block.x * block.y)};
					t->state = RUNNABLE;
					t->warp = i / 32;
					if (!stacks[i]) stacks[i] = (char *)malloc(stack_size);
					getcontext(&t->ctx);
					t->ctx.uc_stack.ss_sp = stacks[i];
					t->ctx.uc_stack.ss_size = stack_size;
					t->ctx.uc_link = &sched;
					makecontext(&t->ctx, fiber_main, 0);
				}
				int done = 0;
				while (done < nthreads) {
					int progress = 0;
					// Run one warp at a time as far as it gets (to a
					// __syncthreads or its end), the warps in a
					// pseudo-random order: between two block barriers the
					// warps then run one after another in varying order,
					// so a read of shared data that another warp writes
					// without a barrier in between gives a wrong result.
					rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
					int start = (int)(rng % (unsigned long long)nwarps), dir = (rng >> 32) & 1 ? 1 : -1;
					for (int step = 0; step < nwarps; step++) {
						int w = ((start + dir * step) % nwarps + nwarps) % nwarps;
						for (int ran = 1; ran;) {
							ran = 0;
							for (int i = w * 32; i < w * 32 + warp_size_of[w]; i++) {
								if (threads[i].state != RUNNABLE) continue;
								sora_emu_cur = &threads[i];
								swapcontext(&sched, &threads[i].ctx);
								ran = progress = 1;
								if (threads[i].state == DONE) done++;
							}
						}
					}
					if (!progress) {
						int waiting_block = 0, waiting_warp = 0;
						for (int i = 0; i < nthreads; i++) {
							waiting_block += threads[i].state == WAIT_BLOCK;
							waiting_warp += threads[i].state == WAIT_WARP;
						}
						snprintf(err, errlen,
						         "emulator: deadlock in block (%u,%u,%u): %d threads finished, %d wait at __syncthreads, %d at a warp shuffle",
						         bx, by, bz, done, waiting_block, waiting_warp);
						return 1;
					}
				}
				if (divergence[0]) {
					snprintf(err, errlen, "%s in block (%u,%u,%u)", divergence, bx, by, bz);
					return 1;
				}
			}
	return 0;
}

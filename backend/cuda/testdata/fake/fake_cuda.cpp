// A test double of libcuda.so.1 (the driver API) that runs the backend's
// kernels on the host. It implements exactly the functions the backend
// calls, with the driver's argument checks that matter to it:
//   - a per-thread current context, and CUDA_ERROR_INVALID_CONTEXT from
//     every call that needs one when the primary context is not current on
//     the calling thread (this is what checks the backend's OS-thread
//     discipline);
//   - device memory from the host heap, filled with NaN bytes when
//     allocated, with an optional limit (SORA_FAKE_MEM_LIMIT bytes) past
//     which cuMemAlloc fails with CUDA_ERROR_OUT_OF_MEMORY (and which
//     cuMemGetInfo reports as the total);
//   - modules only from images that the fake NVRTC produced, for the
//     emulated device (compute capability 8.0): SASS for sm_80
//     (CUDA_ERROR_NO_BINARY_FOR_GPU otherwise), PTX for compute_80 or
//     older (CUDA_ERROR_INVALID_PTX otherwise) and from an NVRTC (the
//     fake's is 12.8) no newer than the driver, whose version
//     SORA_FAKE_DRIVER_VERSION sets (12080 by default;
//     CUDA_ERROR_UNSUPPORTED_PTX_VERSION otherwise);
//   - kernels from kernels.cu compiled into this library (KERNELS names
//     the file, KERNEL_TABLE the list of names) and run by emu.cpp.
// Counters (sora_fake_stats) let tests check the memory pool; controls
// (sora_fake_ctl) let them inject launch failures.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utility>
#include <type_traits>

#include "emu.h"

// The kernels, compiled for the host.
#include KERNELS

extern "C" int sora_emu_launch(void (*fn)(void *), void *arg, sora_dim3 grid, sora_dim3 block, unsigned first_x, char *err, int errlen);

// ---------------------------------------------------------------------------
// Kernel table: each entry unpacks cuLaunchKernel's kernelParams by the
// kernel's C++ signature.

template <class... A, size_t... I>
static void invoke_impl(void (*f)(A...), void **p, std::index_sequence<I...>) {
	f(*reinterpret_cast<typename std::remove_cv<typename std::remove_reference<A>::type>::type *>(p[I])...);
}

template <class... A>
static void invoke(void (*f)(A...), void **p) {
	invoke_impl(f, p, std::index_sequence_for<A...>{});
}

struct kernel_entry {
	const char *name;
	void (*run)(void **);
};

#define K(name) {#name, [](void **p) { invoke(name, p); }},
static const kernel_entry kernel_table[] = {
#include KERNEL_TABLE
    {0, 0}};
#undef K

// ---------------------------------------------------------------------------

enum {
	SUCCESS = 0,
	INVALID_VALUE = 1,
	OUT_OF_MEMORY = 2,
	NOT_INITIALIZED = 3,
	INVALID_IMAGE = 200,
	INVALID_CONTEXT = 201,
	NO_BINARY_FOR_GPU = 209,
	INVALID_PTX = 218,
	UNSUPPORTED_PTX_VERSION = 222,
	INVALID_HANDLE = 400,
	NOT_FOUND = 500,
	LAUNCH_FAILED = 719,
	NOT_SUPPORTED = 801,
};

// Counters read by the tests: [0] cuMemAlloc calls, [1] cuMemFree calls,
// [2] kernel launches, [3] bytes allocated now, [4] calls refused for want
// of a current context, [5] module loads.
extern "C" long long sora_fake_stats[16];
long long sora_fake_stats[16];

// Controls set by the tests: [0] the number of coming cuLaunchKernel calls
// to refuse with CUDA_ERROR_OUT_OF_MEMORY (as a launch that needs device
// memory for the kernel's code or local memory does when none is left);
// [1] the first block (x index) that launches run, the blocks before it
// being skipped, to run only the last blocks of a large grid (for kernels
// whose blocks are independent).
extern "C" long long sora_fake_ctl[16];
long long sora_fake_ctl[16];

static int the_ctx_tag;
static void *const the_ctx = &the_ctx_tag;
static int ctx_refs;
static thread_local void *current;
static char launch_error[512];

static int need_ctx() {
	if (current != the_ctx || ctx_refs <= 0) {
		sora_fake_stats[4]++;
		return INVALID_CONTEXT;
	}
	return SUCCESS;
}

#define NEED_CTX()                          \
	do {                                    \
		int r_ = need_ctx();                \
		if (r_ != SUCCESS) return r_;       \
	} while (0)

struct stream {
	int magic;
};
static const int stream_magic = 0x57ea4;

static int check_stream(void *s) {
	if (!s || ((stream *)s)->magic != stream_magic) return INVALID_HANDLE;
	return SUCCESS;
}

extern "C" {

int cuInit(unsigned) { return SUCCESS; }
static int driver_version() {
	const char *s = getenv("SORA_FAKE_DRIVER_VERSION");
	return s && *s ? atoi(s) : 12080;
}
int cuDriverGetVersion(int *v) {
	*v = driver_version();
	return SUCCESS;
}
int cuDeviceGetCount(int *n) {
	*n = 1;
	return SUCCESS;
}
int cuDeviceGet(int *d, int ordinal) {
	if (ordinal != 0) return 101;
	*d = 0;
	return SUCCESS;
}
int cuDeviceGetName(char *name, int len, int) {
	snprintf(name, len, "Emulated GPU");
	return SUCCESS;
}
int cuDeviceGetAttribute(int *v, int attr, int) {
	switch (attr) {
	case 75: *v = 8; return SUCCESS; // compute capability 8.0
	case 76: *v = 0; return SUCCESS;
	case 16: *v = 2; return SUCCESS; // multiprocessors: small grids, still several blocks
	}
	return INVALID_VALUE;
}
int cuDeviceTotalMem_v2(uint64_t *b, int) {
	*b = 1ull << 30;
	return SUCCESS;
}

int cuGetErrorName(int r, const char **s) {
	switch (r) {
	case SUCCESS: *s = "CUDA_SUCCESS"; return 0;
	case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return 0;
	case OUT_OF_MEMORY: *s = "CUDA_ERROR_OUT_OF_MEMORY"; return 0;
	case NOT_INITIALIZED: *s = "CUDA_ERROR_NOT_INITIALIZED"; return 0;
	case 100: *s = "CUDA_ERROR_NO_DEVICE"; return 0;
	case INVALID_IMAGE: *s = "CUDA_ERROR_INVALID_IMAGE"; return 0;
	case INVALID_CONTEXT: *s = "CUDA_ERROR_INVALID_CONTEXT"; return 0;
	case NO_BINARY_FOR_GPU: *s = "CUDA_ERROR_NO_BINARY_FOR_GPU"; return 0;
	case INVALID_PTX: *s = "CUDA_ERROR_INVALID_PTX"; return 0;
	case UNSUPPORTED_PTX_VERSION: *s = "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"; return 0;
	case INVALID_HANDLE: *s = "CUDA_ERROR_INVALID_HANDLE"; return 0;
	case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return 0;
	case LAUNCH_FAILED: *s = "CUDA_ERROR_LAUNCH_FAILED"; return 0;
	case NOT_SUPPORTED: *s = "CUDA_ERROR_NOT_SUPPORTED"; return 0;
	}
	*s = 0;
	return INVALID_VALUE;
}
int cuGetErrorString(int r, const char **s) {
	switch (r) {
	case SUCCESS: *s = "no error"; return 0;
	case INVALID_VALUE: *s = "invalid argument"; return 0;
	case OUT_OF_MEMORY: *s = "out of memory"; return 0;
	case INVALID_IMAGE: *s = "device kernel image is invalid"; return 0;
	case INVALID_CONTEXT: *s = "invalid device context"; return 0;
	case NO_BINARY_FOR_GPU: *s = "no kernel image is available for execution on the device"; return 0;
	case INVALID_PTX: *s = "a PTX JIT compilation failed"; return 0;
	case UNSUPPORTED_PTX_VERSION: *s = "the provided PTX was compiled with an unsupported toolchain."; return 0;
	case INVALID_HANDLE: *s = "invalid resource handle"; return 0;
	case NOT_FOUND: *s = "named symbol not found"; return 0;
	case LAUNCH_FAILED: *s = launch_error[0] ? launch_error : "unspecified launch failure"; return 0;
	case NOT_SUPPORTED: *s = "operation not supported"; return 0;
	}
	*s = 0;
	return INVALID_VALUE;
}

int cuDevicePrimaryCtxRetain(void **ctx, int dev) {
	if (dev != 0) return INVALID_VALUE;
	ctx_refs++;
	*ctx = the_ctx;
	return SUCCESS;
}
int cuDevicePrimaryCtxRelease_v2(int dev) {
	if (dev != 0 || ctx_refs <= 0) return INVALID_CONTEXT;
	ctx_refs--;
	return SUCCESS;
}
int cuCtxSetCurrent(void *ctx) {
	if (ctx != 0 && ctx != the_ctx) return INVALID_CONTEXT;
	current = ctx;
	return SUCCESS;
}
int cuCtxSynchronize(void) {
	NEED_CTX();
	return SUCCESS;
}

static long long mem_limit() {
	const char *s = getenv("SORA_FAKE_MEM_LIMIT");
	return s && *s ? atoll(s) : -1;
}

// Each block carries its size in a header, for the byte count.
int cuMemAlloc_v2(uint64_t *p, size_t bytes) {
	NEED_CTX();
	sora_fake_stats[0]++;
	long long lim = mem_limit();
	if (bytes == 0) return INVALID_VALUE;
	if (lim >= 0 && sora_fake_stats[3] + (long long)bytes > lim) return OUT_OF_MEMORY;
	char *raw = (char *)aligned_alloc(256, 256 + ((bytes + 255) / 256) * 256);
	if (!raw) return OUT_OF_MEMORY;
	*(size_t *)raw = bytes;
	memset(raw + 256, 0xff, bytes); // NaN in every float
	sora_fake_stats[3] += bytes;
	*p = (uint64_t)(raw + 256);
	return SUCCESS;
}
int cuMemFree_v2(uint64_t p) {
	NEED_CTX();
	if (!p) return INVALID_VALUE;
	sora_fake_stats[1]++;
	char *raw = (char *)p - 256;
	sora_fake_stats[3] -= *(size_t *)raw;
	free(raw);
	return SUCCESS;
}
int cuMemGetInfo_v2(size_t *free_, size_t *total) {
	NEED_CTX();
	long long lim = mem_limit();
	*total = lim >= 0 ? (size_t)lim : 1ull << 30;
	*free_ = (long long)*total > sora_fake_stats[3] ? *total - sora_fake_stats[3] : 0;
	return SUCCESS;
}

int cuMemcpyHtoD_v2(uint64_t dst, const void *src, size_t n) {
	NEED_CTX();
	memcpy((void *)dst, src, n);
	return SUCCESS;
}
int cuMemcpyDtoH_v2(void *dst, uint64_t src, size_t n) {
	NEED_CTX();
	memcpy(dst, (void *)src, n);
	return SUCCESS;
}
int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *s) {
	NEED_CTX();
	if (int r = check_stream(s)) return r;
	memcpy((void *)dst, src, n);
	return SUCCESS;
}
int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, void *s) {
	NEED_CTX();
	if (int r = check_stream(s)) return r;
	memcpy(dst, (void *)src, n);
	return SUCCESS;
}
int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void *s) {
	NEED_CTX();
	if (int r = check_stream(s)) return r;
	memmove((void *)dst, (void *)src, n);
	return SUCCESS;
}
int cuMemsetD32Async(uint64_t dst, unsigned v, size_t n, void *s) {
	NEED_CTX();
	if (int r = check_stream(s)) return r;
	unsigned *d = (unsigned *)dst;
	for (size_t i = 0; i < n; i++) d[i] = v;
	return SUCCESS;
}

int cuStreamCreate(void **s, unsigned flags) {
	NEED_CTX();
	if (flags > 1) return INVALID_VALUE;
	stream *st = (stream *)malloc(sizeof(stream));
	st->magic = stream_magic;
	*s = st;
	return SUCCESS;
}
int cuStreamDestroy_v2(void *s) {
	NEED_CTX();
	if (int r = check_stream(s)) return r;
	((stream *)s)->magic = 0;
	free(s);
	return SUCCESS;
}
int cuStreamSynchronize(void *s) {
	NEED_CTX();
	return check_stream(s);
}

static const char fake_image_magic[] = "SORA-FAKE-CUBIN\n";

struct module {
	int magic;
};

int cuModuleLoadData(void **mod, const void *image) {
	NEED_CTX();
	if (strncmp((const char *)image, fake_image_magic, strlen(fake_image_magic)) != 0) return INVALID_IMAGE;
	// The image's options name its target (see fake_nvrtc.c).
	const char *sm = strstr((const char *)image, "\n--gpu-architecture=sm_");
	const char *ptx = strstr((const char *)image, "\n--gpu-architecture=compute_");
	if (sm && atoi(sm + strlen("\n--gpu-architecture=sm_")) != 80) return NO_BINARY_FOR_GPU;
	if (ptx) {
		if (atoi(ptx + strlen("\n--gpu-architecture=compute_")) > 80) return INVALID_PTX;
		if (driver_version() < 12080) return UNSUPPORTED_PTX_VERSION;
	}
	sora_fake_stats[5]++;
	module *m = (module *)malloc(sizeof(module));
	m->magic = 0x30d;
	*mod = m;
	return SUCCESS;
}
int cuModuleUnload(void *mod) {
	NEED_CTX();
	if (!mod || ((module *)mod)->magic != 0x30d) return INVALID_HANDLE;
	((module *)mod)->magic = 0;
	free(mod);
	return SUCCESS;
}
int cuModuleGetFunction(const kernel_entry **fn, void *mod, const char *name) {
	NEED_CTX();
	if (!mod || ((module *)mod)->magic != 0x30d) return INVALID_HANDLE;
	for (const kernel_entry *k = kernel_table; k->name; k++) {
		if (strcmp(k->name, name) == 0) {
			*fn = k;
			return SUCCESS;
		}
	}
	return NOT_FOUND;
}

// cuFuncGetAttribute knows the largest block (the emulator's 1024
// threads); the kernels are compiled for the host, not to SASS, so there
// are no registers, local or shared memory of a GPU's to report.
int cuFuncGetAttribute(int *v, int attr, const kernel_entry *f) {
	NEED_CTX();
	if (!f || !v) return INVALID_HANDLE;
	if (attr == 0) {
		*v = 1024;
		return SUCCESS;
	}
	return NOT_SUPPORTED;
}

// cuOccupancyMaxActiveBlocksPerMultiprocessor answers as for a device of
// 2048 threads per multiprocessor that no kernel's registers limit.
int cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const kernel_entry *f, int blockSize, size_t dynamicShared) {
	NEED_CTX();
	(void)dynamicShared;
	if (!f || !n) return INVALID_HANDLE;
	if (blockSize < 1 || blockSize > 1024) return INVALID_VALUE;
	*n = 2048 / blockSize;
	return SUCCESS;
}

struct launch_arg {
	const kernel_entry *k;
	void **params;
};

static void run_thread(void *a) {
	launch_arg *la = (launch_arg *)a;
	la->k->run(la->params);
}

int cuLaunchKernel(const kernel_entry *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, void *s, void **params, void **extra) {
	NEED_CTX();
	if (int r = check_stream(s)) return r;
	if (!f || extra || shared != 0) return INVALID_VALUE;
	if (gx < 1 || gy < 1 || gz < 1 || gy > 65535 || gz > 65535) return INVALID_VALUE;
	if (bx < 1 || by < 1 || bz < 1 || (unsigned long long)bx * by * bz > 1024) return INVALID_VALUE;
	if (!params) return INVALID_VALUE;
	if (sora_fake_ctl[0] > 0) {
		sora_fake_ctl[0]--;
		return OUT_OF_MEMORY;
	}
	sora_fake_stats[2]++;
	launch_arg la = {f, params};
	unsigned first = sora_fake_ctl[1] > 0 ? (unsigned)sora_fake_ctl[1] : 0;
	if (sora_emu_launch(run_thread, &la, sora_dim3{gx, gy, gz}, sora_dim3{bx, by, bz}, first, launch_error, sizeof launch_error) != 0)
		return LAUNCH_FAILED;
	return SUCCESS;
}

} // extern "C"

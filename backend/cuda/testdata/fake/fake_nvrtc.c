// A test double of libnvrtc: it "compiles" by checking its input and
// returns an image that the fake driver accepts (the magic line, then the
// options). SORA_FAKE_NVRTC_FAIL=1 makes compilation fail with a log;
// SORA_FAKE_NVRTC_FAIL=oom makes it fail with NVRTC_ERROR_OUT_OF_MEMORY.
// SORA_FAKE_NVRTC_ARCHS lists the architectures it compiles for
// (compute capability·10, comma-separated; CUDA 12.8's list by default):
// it refuses --gpu-architecture=sm_XY or compute_XY for any other, as
// NVRTC does. sora_fake_nvrtc[0] counts compilations, [1] those to PTX.
#include <stdlib.h>
#include <string.h>

enum { OK = 0, OUT_OF_MEMORY = 1, INVALID_INPUT = 3, INVALID_PROGRAM = 4, INVALID_OPTION = 5, COMPILATION = 6 };

long long sora_fake_nvrtc[16];

struct prog {
	char *src;
	char *image;
	size_t imageSize;
	int ptx; // compiled to PTX: only nvrtcGetPTX gives the image
	const char *log;
};

int nvrtcVersion(int *major, int *minor) {
	*major = 12;
	*minor = 8;
	return OK;
}
const char *nvrtcGetErrorString(int r) {
	switch (r) {
	case OK: return "NVRTC_SUCCESS";
	case OUT_OF_MEMORY: return "NVRTC_ERROR_OUT_OF_MEMORY";
	case INVALID_INPUT: return "NVRTC_ERROR_INVALID_INPUT";
	case INVALID_OPTION: return "NVRTC_ERROR_INVALID_OPTION";
	case COMPILATION: return "NVRTC_ERROR_COMPILATION";
	}
	return "NVRTC_ERROR unknown";
}
int nvrtcCreateProgram(struct prog **p, const char *src, const char *name, int nh, const char *const *h, const char *const *hn) {
	if (!p || !src || nh != 0) return INVALID_INPUT;
	*p = (struct prog *)calloc(1, sizeof(struct prog));
	(*p)->src = strdup(src);
	return OK;
}
int nvrtcDestroyProgram(struct prog **p) {
	if (!p || !*p) return INVALID_PROGRAM;
	free((*p)->src);
	free((*p)->image);
	free(*p);
	*p = 0;
	return OK;
}
// archs fills a with the supported architectures and returns how many.
static int archs(int *a) {
	const char *s = getenv("SORA_FAKE_NVRTC_ARCHS");
	if (!s || !*s) s = "50,52,53,60,61,62,70,72,75,80,86,87,89,90,100,101,120";
	int n = 0;
	while (*s && n < 64) {
		a[n++] = atoi(s);
		s = strchr(s, ',');
		if (!s) break;
		s++;
	}
	return n;
}
int nvrtcGetNumSupportedArchs(int *n) {
	int a[64];
	*n = archs(a);
	return OK;
}
int nvrtcGetSupportedArchs(int *out) {
	int a[64];
	int n = archs(a);
	memcpy(out, a, n * sizeof(int));
	return OK;
}
// knownArch reports whether the option names a supported architecture
// (sm_XY or compute_XY), and with ptx whether it is compute_XY.
static int knownArch(const char *opt, int *ptx) {
	const char *v;
	if (strncmp(opt, "--gpu-architecture=sm_", 22) == 0) {
		v = opt + 22;
		*ptx = 0;
	} else if (strncmp(opt, "--gpu-architecture=compute_", 27) == 0) {
		v = opt + 27;
		*ptx = 1;
	} else {
		return 0;
	}
	int a[64], n = archs(a), want = atoi(v);
	for (int i = 0; i < n; i++) {
		if (a[i] == want) return 1;
	}
	return 0;
}
int nvrtcCompileProgram(struct prog *p, int n, const char *const *opts) {
	if (!p) return INVALID_PROGRAM;
	const char *fail = getenv("SORA_FAKE_NVRTC_FAIL");
	if (fail && strcmp(fail, "1") == 0) {
		p->log = "sora_kernels.cu(1): error: injected failure for the test";
		return COMPILATION;
	}
	if (fail && strcmp(fail, "oom") == 0) return OUT_OF_MEMORY;
	int arch = 0, ptx = 0;
	size_t len = strlen("SORA-FAKE-CUBIN\n") + 1;
	for (int i = 0; i < n; i++) {
		if (strncmp(opts[i], "--gpu-architecture=", 19) == 0) {
			if (!knownArch(opts[i], &ptx)) return INVALID_OPTION;
			arch = 1;
		}
		len += strlen(opts[i]) + 1;
	}
	if (!arch) return INVALID_OPTION;
	if (!strstr(p->src, "extern \"C\" __global__")) {
		p->log = "no kernels in the source";
		return COMPILATION;
	}
	p->image = (char *)malloc(len);
	strcpy(p->image, "SORA-FAKE-CUBIN\n");
	for (int i = 0; i < n; i++) {
		strcat(p->image, opts[i]);
		strcat(p->image, "\n");
	}
	p->imageSize = strlen(p->image) + 1;
	p->ptx = ptx;
	sora_fake_nvrtc[0]++;
	sora_fake_nvrtc[1] += ptx;
	return OK;
}
// NVRTC has no cubin for a program compiled to PTX (a virtual
// architecture); the fake has no PTX for one compiled to SASS either.
int nvrtcGetCUBINSize(struct prog *p, size_t *n) {
	if (!p || !p->image || p->ptx) return INVALID_PROGRAM;
	*n = p->imageSize;
	return OK;
}
int nvrtcGetCUBIN(struct prog *p, char *out) {
	if (!p || !p->image || p->ptx) return INVALID_PROGRAM;
	memcpy(out, p->image, p->imageSize);
	return OK;
}
int nvrtcGetPTXSize(struct prog *p, size_t *n) {
	if (!p || !p->image || !p->ptx) return INVALID_PROGRAM;
	*n = p->imageSize;
	return OK;
}
int nvrtcGetPTX(struct prog *p, char *out) {
	if (!p || !p->image || !p->ptx) return INVALID_PROGRAM;
	memcpy(out, p->image, p->imageSize);
	return OK;
}
int nvrtcGetProgramLogSize(struct prog *p, size_t *n) {
	if (!p) return INVALID_PROGRAM;
	*n = p->log ? strlen(p->log) + 1 : 1;
	return OK;
}
int nvrtcGetProgramLog(struct prog *p, char *out) {
	if (!p) return INVALID_PROGRAM;
	strcpy(out, p->log ? p->log : "");
	return OK;
}

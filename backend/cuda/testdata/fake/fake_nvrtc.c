// A test double of libnvrtc: it "compiles" by checking its input and
// returns an image that the fake driver accepts (the magic line, then the
// options). SORA_FAKE_NVRTC_FAIL=1 makes compilation fail with a log;
// SORA_FAKE_NVRTC_FAIL=oom makes it fail with NVRTC_ERROR_OUT_OF_MEMORY.
// sora_fake_nvrtc[0] counts compilations.
#include <stdlib.h>
#include <string.h>

enum { OK = 0, OUT_OF_MEMORY = 1, INVALID_INPUT = 3, INVALID_PROGRAM = 4, INVALID_OPTION = 5, COMPILATION = 6 };

long long sora_fake_nvrtc[16];

struct prog {
	char *src;
	char *image;
	size_t imageSize;
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
int nvrtcCompileProgram(struct prog *p, int n, const char *const *opts) {
	if (!p) return INVALID_PROGRAM;
	const char *fail = getenv("SORA_FAKE_NVRTC_FAIL");
	if (fail && strcmp(fail, "1") == 0) {
		p->log = "sora_kernels.cu(1): error: injected failure for the test";
		return COMPILATION;
	}
	if (fail && strcmp(fail, "oom") == 0) return OUT_OF_MEMORY;
	int arch = 0;
	size_t len = strlen("SORA-FAKE-CUBIN\n") + 1;
	for (int i = 0; i < n; i++) {
		if (strncmp(opts[i], "--gpu-architecture=sm_", 22) == 0) arch = 1;
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
	sora_fake_nvrtc[0]++;
	return OK;
}
int nvrtcGetCUBINSize(struct prog *p, size_t *n) {
	if (!p || !p->image) return INVALID_PROGRAM;
	*n = p->imageSize;
	return OK;
}
int nvrtcGetCUBIN(struct prog *p, char *out) {
	if (!p || !p->image) return INVALID_PROGRAM;
	memcpy(out, p->image, p->imageSize);
	return OK;
}
int nvrtcGetPTXSize(struct prog *p, size_t *n) { return nvrtcGetCUBINSize(p, n); }
int nvrtcGetPTX(struct prog *p, char *out) { return nvrtcGetCUBIN(p, out); }
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

// A test double of libcublas: the handle functions the backend calls and
// column-major SGEMM computed on the host in double precision, with
// cuBLAS's argument checks (CUBLAS_STATUS_INVALID_VALUE for bad transpose
// flags, negative sizes and too-small leading dimensions). It records the
// math mode and the last call's arguments (sora_fake_blas) for the tests,
// and refuses GEMM calls with CUBLAS_STATUS_ALLOC_FAILED when told to.
#include <stdlib.h>
#include <string.h>

enum { OK = 0, NOT_INITIALIZED = 1, ALLOC_FAILED = 3, INVALID_VALUE = 7 };

struct handle {
	int magic;
	void *stream;
	int mathMode, pointerMode;
};

// [0] math mode of the last handle, [1] pointer mode, [2] Sgemm calls,
// [3] SgemmStridedBatched calls, [4..9] transa, transb, m, n, k, batch of the last call;
// [10], set by the tests: the number of coming GEMM calls to refuse with
// CUBLAS_STATUS_ALLOC_FAILED, as cuBLAS does when it cannot get device
// memory for its workspace or for kernels it loads.
long long sora_fake_blas[16];

int cublasCreate_v2(struct handle **h) {
	*h = (struct handle *)calloc(1, sizeof(struct handle));
	(*h)->magic = 0xb1a5;
	return OK;
}
static int bad(struct handle *h) { return !h || h->magic != 0xb1a5; }
int cublasDestroy_v2(struct handle *h) {
	if (bad(h)) return NOT_INITIALIZED;
	h->magic = 0;
	free(h);
	return OK;
}
int cublasSetStream_v2(struct handle *h, void *s) {
	if (bad(h)) return NOT_INITIALIZED;
	h->stream = s;
	return OK;
}
int cublasSetMathMode(struct handle *h, int mode) {
	if (bad(h)) return NOT_INITIALIZED;
	h->mathMode = mode;
	sora_fake_blas[0] = mode;
	return OK;
}
int cublasSetPointerMode_v2(struct handle *h, int mode) {
	if (bad(h)) return NOT_INITIALIZED;
	if (mode != 0 && mode != 1) return INVALID_VALUE;
	h->pointerMode = mode;
	sora_fake_blas[1] = mode;
	return OK;
}
const char *cublasGetStatusString(int s) {
	switch (s) {
	case OK: return "the operation completed successfully";
	case NOT_INITIALIZED: return "the library was not initialized";
	case ALLOC_FAILED: return "the resource allocation failed";
	case INVALID_VALUE: return "an invalid numeric value was used as an argument";
	}
	return "unknown error";
}

static int gemm(struct handle *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda, long long sa,
                const float *B, int ldb, long long sb, const float *beta, float *C, int ldc, long long sc, int batch) {
	if (bad(h)) return NOT_INITIALIZED;
	if (sora_fake_blas[10] > 0) {
		sora_fake_blas[10]--;
		return ALLOC_FAILED;
	}
	if (h->pointerMode != 0 || !h->stream) return INVALID_VALUE; // the backend uses host scalars and its stream
	if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1) || m < 0 || n < 0 || k < 0 || batch < 0) return INVALID_VALUE;
	int rowsA = ta == 0 ? m : k, rowsB = tb == 0 ? k : n;
	if (lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) || ldc < (m > 1 ? m : 1)) return INVALID_VALUE;
	long long *r = sora_fake_blas;
	r[4] = ta, r[5] = tb, r[6] = m, r[7] = n, r[8] = k, r[9] = batch;
	double al = *alpha, be = *beta;
	for (int p = 0; p < batch; p++) {
		const float *a = A + p * sa, *b = B + p * sb;
		float *c = C + p * sc;
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				double s = 0;
				for (int l = 0; l < k; l++) {
					double x = ta == 0 ? a[i + (long long)l * lda] : a[l + (long long)i * lda];
					double y = tb == 0 ? b[l + (long long)j * ldb] : b[j + (long long)l * ldb];
					s += x * y;
				}
				float *out = &c[i + (long long)j * ldc];
				*out = (float)(al * s + (be == 0 ? 0.0 : be * (double)*out));
			}
	}
	return OK;
}

int cublasSgemm_v2(struct handle *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A, int lda,
                   const float *B, int ldb, const float *beta, float *C, int ldc) {
	sora_fake_blas[2]++;
	return gemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

int cublasSgemmStridedBatched(struct handle *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A,
                              int lda, long long sa, const float *B, int ldb, long long sb, const float *beta, float *C,
                              int ldc, long long sc, int batch) {
	sora_fake_blas[3]++;
	return gemm(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}

// Kernels of the SORA for Go CUDA backend.
//
// This file is embedded in the Go package and compiled at run time by NVRTC
// for the device's compute capability. It includes no header: NVRTC
// provides the device math functions, warp shuffles and __syncthreads
// itself. The package's tests also compile it with clang (to PTX, with a
// small prelude of declarations) and with the host C++ compiler (against a
// host emulation of the CUDA thread model), so it sticks to the common
// subset: no templates in kernel signatures, no dynamic shared memory, no
// atomics, no standard headers.
//
// Conventions shared with the Go side (launch.go, ops_*.go):
//   - every kernel is extern "C", so its name is not mangled;
//   - element-wise kernels take a grid-stride loop over n elements, so any
//     grid size is correct and the host picks one that fills the device;
//     a counter that steps by the grid is 64-bit, or unsigned where n is
//     below 2^31, never an int (it would overflow near 2^31);
//   - int parameters (row lengths, counts) are at most 2^31 − 1 − 1024
//     (check32 in Go), so an int counter stepping by a block's width
//     (j += blockDim.x) stays below 2^31;
//   - row kernels give each row a group of blockDim.x threads (a multiple of
//     32) and blockDim.y groups per block; every thread of a block runs the
//     same number of group reductions (rows past the end join with no
//     elements), because the reductions synchronise the whole block;
//   - reductions combine in a fixed order, so results are deterministic
//     (on one device: the norm gradients' partition of rows follows its
//     multiprocessor count); row kernels sum a thread's few terms in
//     float and everything beyond in double (see "Row kernels").

#define FULL_MASK 0xffffffffu

// Op codes, equal to the Go enums' values (backend.BinaryOp, UnaryOp,
// ReduceOp, RoPELayout).
#define OP_ADD 1
#define OP_SUB 2
#define OP_MUL 3
#define OP_DIV 4

#define U_EXP 1
#define U_LOG 2
#define U_SQRT 3
#define U_RSQRT 4
#define U_TANH 5
#define U_SILU 6
#define U_GELU 7
#define U_RELU 8
#define U_NEG 9
#define U_SQUARE 10
#define U_SIGMOID 11
#define U_GELU_TANH 12

#define R_SUM 1
#define R_SUMSQ 2
#define R_MAX 3

#define BC_NONE 0
#define BC_ROW 1
#define BC_COL 2

#define ROPE_INTERLEAVED 1
#define ROPE_HALFSPLIT 2

// Shared scratch for group reductions: one slot per warp of every group in
// the block (blockDim.x * blockDim.y <= 1024, so at most 32 warps).
#define REDUCE_SLOTS 32

// ROW_BLOCK is the most threads the host gives a row kernel's block
// (rowBlock in launch.go).
#define ROW_BLOCK 256

#define NEG_INF (-__longlong_as_double(0x7ff0000000000000LL))
#define NEG_INF_F ((float)NEG_INF)
#define FLT_MAX_F 3.40282347e38f

// ---------------------------------------------------------------------------
// Group reductions. A group is the blockDim.x threads with the same
// threadIdx.y. Every thread of the block must call these the same number of
// times; every thread of the group gets the result.

__device__ __forceinline__ double warpSum(double v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL_MASK, v, o);
	return v;
}

// maxNaN is max that propagates NaN from either side.
__device__ __forceinline__ double maxNaN(double a, double b) {
	if (b != b || b > a) return b;
	return a;
}

// maxNaNf is maxNaN in float.
__device__ __forceinline__ float maxNaNf(float a, float b) {
	if (b != b || b > a) return b;
	return a;
}

__device__ __forceinline__ double warpMax(double v) {
	for (int o = 16; o > 0; o >>= 1) v = maxNaN(v, __shfl_down_sync(FULL_MASK, v, o));
	return v;
}

__device__ double groupSum(double v, double *sh) {
	v = warpSum(v);
	int warps = blockDim.x >> 5;
	if (warps == 1) return __shfl_sync(FULL_MASK, v, 0);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	int base = threadIdx.y * warps;
	__syncthreads(); // the slots may still be read by a previous reduction
	if (lane == 0) sh[base + warp] = v;
	__syncthreads();
	v = lane < warps ? sh[base + lane] : 0.0;
	v = warpSum(v);
	return __shfl_sync(FULL_MASK, v, 0);
}

// groupSum2 is groupSum of two values at once, with one pair of barriers;
// sh holds 2·REDUCE_SLOTS.
__device__ void groupSum2(double *a, double *b, double *sh) {
	double va = warpSum(*a), vb = warpSum(*b);
	int warps = blockDim.x >> 5;
	if (warps == 1) {
		*a = __shfl_sync(FULL_MASK, va, 0);
		*b = __shfl_sync(FULL_MASK, vb, 0);
		return;
	}
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	int base = threadIdx.y * warps;
	__syncthreads();
	if (lane == 0) {
		sh[base + warp] = va;
		sh[REDUCE_SLOTS + base + warp] = vb;
	}
	__syncthreads();
	va = warpSum(lane < warps ? sh[base + lane] : 0.0);
	vb = warpSum(lane < warps ? sh[REDUCE_SLOTS + base + lane] : 0.0);
	*a = __shfl_sync(FULL_MASK, va, 0);
	*b = __shfl_sync(FULL_MASK, vb, 0);
}

__device__ double groupMax(double v, double *sh) {
	v = warpMax(v);
	int warps = blockDim.x >> 5;
	if (warps == 1) return __shfl_sync(FULL_MASK, v, 0);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	int base = threadIdx.y * warps;
	__syncthreads();
	if (lane == 0) sh[base + warp] = v;
	__syncthreads();
	v = lane < warps ? sh[base + lane] : NEG_INF;
	v = warpMax(v);
	return __shfl_sync(FULL_MASK, v, 0);
}

// ---------------------------------------------------------------------------
// Copy of strided views. The host merges axes first (see copy.go), so most
// copies reach here with one to three axes; up to 8 are handled.

#define COPY_MAX_RANK 8

struct CopyParams {
	long long n;     // elements
	int rank;        // axes in use, outermost first
	int accumulate;  // dst += src instead of dst = src
	long long shape[COPY_MAX_RANK];
	long long dstStride[COPY_MAX_RANK];
	long long srcStride[COPY_MAX_RANK];
};

extern "C" __global__ void copy_strided(CopyParams p, float *dst, const float *src) {
	long long step = (long long)gridDim.x * blockDim.x;
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += step) {
		long long rest = i, d = 0, s = 0;
		for (int k = p.rank - 1; k >= 0; k--) {
			long long c = rest % p.shape[k];
			rest /= p.shape[k];
			d += c * p.dstStride[k];
			s += c * p.srcStride[k];
		}
		if (p.accumulate) dst[d] += src[s];
		else dst[d] = src[s];
	}
}

// copy_strided32 is copy_strided with 32-bit index arithmetic, used when
// every extent and offset fits (much cheaper divisions). The element
// counter is unsigned: n < 2^31 and the host's grids make step < 2^31, so
// i + step < 2^32 cannot wrap, where an int would overflow once n is within
// one step of 2^31 (a 46340×46340 copy on a large GPU).
extern "C" __global__ void copy_strided32(CopyParams p, float *dst, const float *src) {
	unsigned n = (unsigned)p.n;
	unsigned step = gridDim.x * blockDim.x;
	for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
		int rest = (int)i, d = 0, s = 0;
		for (int k = p.rank - 1; k >= 0; k--) {
			int e = (int)p.shape[k];
			int c = rest % e;
			rest /= e;
			d += c * (int)p.dstStride[k];
			s += c * (int)p.srcStride[k];
		}
		if (p.accumulate) dst[d] += src[s];
		else dst[d] = src[s];
	}
}

// ---------------------------------------------------------------------------
// Element-wise arithmetic.
//
// The element-wise kernels take ELEM_UNROLL elements per thread on each trip
// of their grid-stride loop, i + k·step for k < ELEM_UNROLL, and load them
// all before computing any, so that each thread keeps that many loads in
// flight: with one at a time, the memory sits idle while a thread computes
// and stores, which held these kernels to 57-89% of the device's copy
// bandwidth on an H200. Outputs alias inputs only element for element, so
// loading ahead of the stores is safe.

#define ELEM_UNROLL 4

// ELEM_EACH(k) runs the statement after it for each k < ELEM_UNROLL whose
// element i + k·step is below n (the names of the loops below).
#define ELEM_EACH(k)                                   \
	_Pragma("unroll") for (int k = 0; k < ELEM_UNROLL; k++) \
		if (i + k * step < n)

// ELEM_LOOP steps i over this thread's first elements of each trip.
#define ELEM_LOOP                                                              \
	long long step = (long long)gridDim.x * blockDim.x;                        \
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; \
	     i += ELEM_UNROLL * step)

__device__ __forceinline__ float binaryOp(int op, float a, float b) {
	switch (op) {
	case OP_ADD: return a + b;
	case OP_SUB: return a - b;
	case OP_MUL: return a * b;
	default: return a / b;
	}
}

// binary computes dst = a op b; b is indexed per element (BC_NONE), per
// column (BC_ROW: one row of cols applied to every row) or per row (BC_COL:
// one value per row). Broadcast indices use 32-bit division when n fits,
// which costs a fraction of the 64-bit one.
extern "C" __global__ void binary(int op, int bc, long long n, long long cols, float *dst, const float *a, const float *b) {
	bool small = n <= 0x7fffffffLL;
	unsigned c = (unsigned)cols;
	ELEM_LOOP {
		float va[ELEM_UNROLL], vb[ELEM_UNROLL];
		ELEM_EACH(k) {
			long long e = i + k * step;
			long long at = bc == BC_NONE ? e
			               : small    ? (long long)(bc == BC_ROW ? (unsigned)e % c : (unsigned)e / c)
			               : bc == BC_ROW ? e % cols
			                              : e / cols;
			va[k] = a[e];
			vb[k] = b[at];
		}
		ELEM_EACH(k) dst[i + k * step] = binaryOp(op, va[k], vb[k]);
	}
}

extern "C" __global__ void scale(long long n, float alpha, float *dst, const float *src) {
	ELEM_LOOP {
		float v[ELEM_UNROLL];
		ELEM_EACH(k) v[k] = src[i + k * step];
		ELEM_EACH(k) dst[i + k * step] = alpha * v[k];
	}
}

extern "C" __global__ void axpy(long long n, float alpha, float *y, const float *x) {
	ELEM_LOOP {
		float vx[ELEM_UNROLL], vy[ELEM_UNROLL];
		ELEM_EACH(k) {
			vx[k] = x[i + k * step];
			vy[k] = y[i + k * step];
		}
		ELEM_EACH(k) y[i + k * step] = vy[k] + alpha * vx[k];
	}
}

// widen_bf16 sets (accumulate = 0) or adds to (accumulate = 1) dst[i] the
// float32 whose top half is the bfloat16 src[i]: exact, a shift of the bits
// (NaNs, infinities and signed zeros included). The union is the bit cast
// that NVRTC, clang and the host emulation all accept without intrinsics.
extern "C" __global__ void widen_bf16(long long n, int accumulate, float *dst, const unsigned short *src) {
	ELEM_LOOP {
		unsigned short h[ELEM_UNROLL];
		float d[ELEM_UNROLL];
		ELEM_EACH(k) {
			h[k] = src[i + k * step];
			d[k] = accumulate ? dst[i + k * step] : 0.0f;
		}
		ELEM_EACH(k) {
			union { unsigned int u; float f; } v;
			v.u = (unsigned int)h[k] << 16;
			dst[i + k * step] = accumulate ? d[k] + v.f : v.f;
		}
	}
}

// ---------------------------------------------------------------------------
// Unary functions and their derivatives. Single-precision library functions
// are within a few ulps; GELU is the exact x·Φ(x), with Φ through erfc so
// the left tail keeps its relative precision; GELU_TANH is below.

// sigmoidf is 1/(1 + e^{−x}) for x ≥ 0 and e^{x}/(1 + e^{x}) below, from
// one e^{−|x|} without a branch: the two forms on either side of a warp's
// mixed signs would otherwise both run, at twice the cost.
__device__ __forceinline__ float sigmoidf(float x) {
	float e = expf(-fabsf(x));
	return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

#define SQRT1_2F 0.70710678118654752f
#define FLT_MAXF 3.402823466e38f // the largest float: only ±Inf exceed it
#define INV_SQRT_2PI 0.39894228040143268f

__device__ __forceinline__ float gaussCDF(float x) { return 0.5f * erfcf(-x * SQRT1_2F); }

// GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) is
// x·σ(y) = x/(1 + e^{−y}) with y = x·P, P = c1 + c3·x² (c1 = 2·√(2/π), c3 =
// c1·0.044715), which keeps its relative precision in the left tail where
// 1 + tanh cancels. There e^{−y} is huge or tiny and its relative error is
// y's absolute one: y's float rounding alone would cost |y|·2⁻²⁴, 50 ulps
// where |y| nears 87. So y is formed as yh + yl in float with the
// roundings compensated by fused multiply-adds (as the CPU kernels do,
// without double, which consumer GPUs run at 1/64 of float's rate), and
// e^{−y} = expf(−yh)·(1 − yl) (|yl| ≤ 2⁻²³·|y|, so the second order is
// below 2⁻⁴⁰). P = Ph + Pl: with s = x² rounded and sl = x² − s (exact),
// Ph = fmaf(c3h, s, c1h) and its rounding error exactly as fmaf(c3h, s,
// −(Ph − c1h)), Ph − c1h being exact because GT_C1H is a multiple of 2⁻²⁰
// and |Ph| < 16; Pl adds to that c3h·sl + c3l·s + c1l. yh = x·Ph rounded
// and yl = (x·Ph − yh) + x·Pl. x is clamped to ±GT_XMAX first: from
// |x| = 10.75 on e^{−|y|} < 2⁻¹⁵⁰ (|y| > 105.8), so results do not change,
// and the clamp keeps x², P and, in the derivative, x·y′ finite and small.
#define GT_C1H 1.595768928527832f         // c1 to a multiple of 2⁻²⁰
#define GT_C1L 1.9307789500544e-07f       // c1 − GT_C1H
#define GT_C3H 0.07135481387376785f       // c3 rounded to float
#define GT_C3L 2.3988324659996e-09f       // c3 − GT_C3H
#define GT_C1 1.5957691216057308f         // 2·√(2/π), for y′
#define GT_3C3 0.21406444881780075f       // 3·c3, for y′
#define GT_XMAX 10.75f

// gtExpNeg returns e^{−y} for y = a·(c1 + c3·a²), |a| ≤ GT_XMAX, and
// a² rounded in *a2. The operations are kept apart where the compiler
// could contract them (each product feeding an addition is an explicit
// fmaf or is needed rounded).
__device__ __forceinline__ float gtExpNeg(float a, float *a2) {
	float s = a * a;
	float sl = fmaf(a, a, -s);
	float ph = fmaf(GT_C3H, s, GT_C1H);
	float pl = fmaf(GT_C3H, s, -(ph - GT_C1H));
	pl += fmaf(GT_C3H, sl, fmaf(GT_C3L, s, GT_C1L));
	float yh = a * ph;
	float yl = fmaf(a, pl, fmaf(a, ph, -yh));
	*a2 = s;
	return expf(-yh) * (1.0f - yl);
}

__device__ float geluTanhF(float x) {
	if (x != x) return x;
	float s;
	return x / (1.0f + gtExpNeg(fminf(fmaxf(x, -GT_XMAX), GT_XMAX), &s));
}

// geluTanhDF is σ(y) + x·y′·σ(y)σ(−y) with y′ = c1 + 3·c3·x², from
// e = e^{−|y|}: s0 = e/(1+e) = σ(−|y|), σ(y)σ(−y) = s0·(1 − s0), and x
// clamped to ±GT_XMAX in the second term, where beyond it σ(y)σ(−y) is
// 0 and x·y′ would overflow to ∞ (∞·0 is NaN).
__device__ float geluTanhDF(float x) {
	if (x != x) return x;
	float xc = fminf(fmaxf(x, -GT_XMAX), GT_XMAX), x2;
	float e = gtExpNeg(fabsf(xc), &x2);
	float r = 1.0f / (1.0f + e), s0 = e * r;
	float s = x >= 0.0f ? r : s0;
	float yp = fmaf(x2, GT_3C3, GT_C1);
	return fmaf(xc * yp, fmaf(-s0, s0, s0), s);
}

__device__ __forceinline__ float unaryF(int op, float x) {
	switch (op) {
	case U_EXP: return expf(x);
	case U_LOG: return logf(x);
	case U_SQRT: return sqrtf(x);
	case U_RSQRT: return rsqrtf(x);
	case U_TANH: return tanhf(x);
	case U_SILU: return x * sigmoidf(x);
	// ±Inf: x·Φ(x) would be −∞·0 = NaN at −Inf.
	case U_GELU: return fabsf(x) > FLT_MAXF ? fmaxf(x, 0.0f) : x * gaussCDF(x);
	case U_RELU: return x <= 0.0f ? 0.0f : x; // NaN passes through
	case U_NEG: return -x;
	case U_SQUARE: return x * x;
	case U_GELU_TANH: return geluTanhF(x);
	default: return sigmoidf(x);
	}
}

__device__ __forceinline__ float unaryDF(int op, float x) {
	switch (op) {
	case U_EXP: return expf(x);
	case U_LOG: return 1.0f / x;
	case U_SQRT: return 0.5f / sqrtf(x);
	case U_RSQRT: return -0.5f / (x * sqrtf(x));
	case U_TANH: {
		float t = tanhf(x);
		return 1.0f - t * t;
	}
	case U_SILU: {
		float s = sigmoidf(x);
		return s * (1.0f + x * (1.0f - s));
	}
	// ±Inf: x·φ(x) would be ∞·0 = NaN; the derivative is 1 or 0 there.
	case U_GELU: return fabsf(x) > FLT_MAXF ? (x > 0.0f ? 1.0f : 0.0f) : gaussCDF(x) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
	case U_RELU: return x > 0.0f ? 1.0f : 0.0f;
	case U_NEG: return -1.0f;
	case U_SQUARE: return 2.0f * x;
	case U_GELU_TANH: return geluTanhDF(x);
	default: {
		float s = sigmoidf(x);
		return s * (1.0f - s);
	}
	}
}

// The unary kernels switch on the function once, outside their loops
// (unaryLoop<OP>), so that the function is inlined and a thread's
// ELEM_UNROLL elements are computed interleaved; a switch per element
// computed them one after another.
template <int OP>
__device__ __forceinline__ void unaryLoop(long long n, float *dst, const float *src) {
	ELEM_LOOP {
		float v[ELEM_UNROLL];
		ELEM_EACH(k) v[k] = src[i + k * step];
		ELEM_EACH(k) dst[i + k * step] = unaryF(OP, v[k]);
	}
}

template <int OP>
__device__ __forceinline__ void unaryGradLoop(long long n, float *dx, const float *x, const float *dy) {
	ELEM_LOOP {
		float vx[ELEM_UNROLL], vg[ELEM_UNROLL];
		ELEM_EACH(k) {
			vx[k] = x[i + k * step];
			vg[k] = dy[i + k * step];
		}
		ELEM_EACH(k) dx[i + k * step] = vg[k] * unaryDF(OP, vx[k]);
	}
}

#define UNARY_OPS(F)                                                                          \
	F(U_EXP) F(U_LOG) F(U_SQRT) F(U_RSQRT) F(U_TANH) F(U_SILU) F(U_GELU) F(U_RELU) F(U_NEG) \
	F(U_SQUARE) F(U_SIGMOID) F(U_GELU_TANH)

extern "C" __global__ void unary(int op, long long n, float *dst, const float *src) {
#define UNARY_CASE(c) \
	case c: unaryLoop<c>(n, dst, src); return;
	switch (op) { UNARY_OPS(UNARY_CASE) }
#undef UNARY_CASE
}

extern "C" __global__ void unary_grad(int op, long long n, float *dx, const float *x, const float *dy) {
#define UNARY_CASE(c) \
	case c: unaryGradLoop<c>(n, dx, x, dy); return;
	switch (op) { UNARY_OPS(UNARY_CASE) }
#undef UNARY_CASE
}

// ---------------------------------------------------------------------------
// Row kernels. ROW_LOOP steps every thread of a block over the block's rows
// together; ROW_HEAD names this group's row and whether it exists.
//
// A row is read in chunks of ROW_CACHE elements per thread of its group,
// element base + threadIdx.x + k·blockDim.x for k < ROW_CACHE, loaded into
// registers together, so that each thread keeps that many loads in flight.
// A row that fits in one chunk (up to 4096 elements at the 256 threads the
// host gives long rows) stays in registers, and every pass a kernel makes
// over it after the first reads the registers: the row comes from memory
// once. Longer rows are loaded again, chunk by chunk, in each pass.
//
// Within a chunk a thread computes in float and sums its at most
// ROW_CACHE terms in float; the chunks' sums and the reductions across
// threads are in double. Double arithmetic and float-double conversions
// per element run at a fraction of float's rate, and these kernels issue
// about as many instructions as the memory leaves time for: with them they
// reached about half the H200's copy bandwidth (docs/cuda-h200.md, along
// with the other changes of that run).
// Centred values x − mean are formed from the mean split into two floats,
// (x − hi) − lo, so that they keep their relative precision when the mean
// is large next to the spread.

#define ROW_LOOP(rows)                                                            \
	for (long long rowBase = (long long)blockIdx.x * blockDim.y; rowBase < (rows); \
	     rowBase += (long long)gridDim.x * blockDim.y)

#define ROW_HEAD(rows)                          \
	long long row = rowBase + threadIdx.y; \
	bool live = row < (rows);

// ROW_STRIDE is the step of ROW_LOOP; FIRST_ROW is this group's first row.
#define ROW_STRIDE ((long long)gridDim.x * blockDim.y)
#define FIRST_ROW ((long long)blockIdx.x * blockDim.y + threadIdx.y)

#define ROW_CACHE 16

// Where every row fits, rmsnorm, rmsnorm_grad and cross_entropy_grad have
// each group load its next row's elements (RowAhead) while it works on the
// current row, so that loads are in flight through the current row's
// reductions and stores. It costs registers, and so resident blocks: on an
// H200 it paid in those three kernels and cost in the others. (Nor did
// __launch_bounds__ asking for four resident blocks help: the kernels are
// as much bound by instructions issued as by rows in flight.)

// ROW_CHUNKS(base, lo, hi) steps base over the chunks of [lo, hi). The
// counter is unsigned: a chunk's end can pass 2^31 − 1 for rows near
// check32's limit.
#define ROW_CHUNKS(base, lo, hi) \
	for (unsigned base = (unsigned)(lo); base < (unsigned)(hi); base += ROW_CACHE * blockDim.x)

// ROW_EACH(j, base, end) runs the statement after it for this thread's
// elements j of the chunk at base below end, k being the register slot.
// The inner loop runs at most once (its step moves j to the largest
// unsigned, below no end): C++11 has no if statement that declares j, and
// the statement must neither change j nor break. A step to end instead
// left clang 14 (-O2, sm_80) unable to prove the second trip false in
// cross_entropy and cross_entropy_grad, 31 loops with a back edge; with
// ~0u their PTX is the if statement's, instruction for instruction.
#define ROW_EACH(j, base, end)                                                \
	_Pragma("unroll") for (int k = 0; k < ROW_CACHE; k++)                      \
		for (unsigned j = (base) + threadIdx.x + (unsigned)k * blockDim.x; \
		     j < (unsigned)(end); j = ~0u)

// rowFits says whether [lo, hi) fits in one chunk, and so in registers.
__device__ __forceinline__ bool rowFits(int lo, int hi) { return hi - lo <= ROW_CACHE * (int)blockDim.x; }

// rowLoad loads this thread's elements of the chunk at base, those below
// end, from x into v.
__device__ __forceinline__ void rowLoad(float *v, const float *x, unsigned base, int end) {
	ROW_EACH(j, base, end) v[k] = x[j];
}

// RowAhead holds the next row's elements of one input, loaded ahead.
struct RowAhead {
	float next[ROW_CACHE];

	// fetch starts loading elements [lo, hi) of the row at x (which must
	// fit in one chunk).
	__device__ __forceinline__ void fetch(const float *x, int lo, int hi) { rowLoad(next, x, (unsigned)lo, hi); }

	// take copies the fetched elements into v.
	__device__ __forceinline__ void take(float *v) const {
		_Pragma("unroll") for (int k = 0; k < ROW_CACHE; k++) v[k] = next[k];
	}
};

// rowExp is e^t for the row kernels' exponents (t ≤ 0 up to rounding), as
// 2^(t·log₂e) through exp2f: half the instructions of expf, whose care in
// reducing its argument buys nothing here, where t carries a rounding of
// |t|·2⁻²⁴ already; the product adds about as much again (relative error
// of the result about 1.4·|t|·2⁻²⁴ + 2 ulps). The softmax and
// cross-entropy kernels issue instructions as fast as they read memory,
// so the exponentials set their speed.
#define LOG2E_F 1.4426950408889634f
__device__ __forceinline__ float rowExp(float t) { return exp2f(t * LOG2E_F); }

// onlineAdd folds the chunk's values scale·v (those below end) into this
// thread's running maximum *m and sum *s of exp(value − *m), rescaling the
// sum once per chunk when the maximum grows, so that the row is read once.
// The maximum is that of the float products scale·v, so the exponent
// fmaf(scale, v, −m) is rounded once. A NaN makes both NaN; so does a
// maximum of +∞ (exp(∞ − ∞)), as the two-pass form gives. The rescaling
// factor is a float exp: it multiplies sums of terms that are smaller by
// as much, so its relative error reaches the total only scaled down.
__device__ __forceinline__ void onlineAdd(double *m, double *s, const float *v, float scale, unsigned base, int end) {
	float cm = NEG_INF_F;
	ROW_EACH(j, base, end) cm = maxNaNf(cm, scale * v[k]);
	if (cm != cm || (double)cm > *m) {
		if (*s != 0.0) *s *= (double)expf((float)(*m - (double)cm));
		*m = cm;
	}
	float mm = (float)*m, acc = 0.0f;
	if (mm == NEG_INF_F) return; // nothing above −∞ yet: every term is 0
	ROW_EACH(j, base, end) acc += rowExp(fmaf(scale, v[k], -mm));
	*s += acc;
}

// chunkSquares returns Σ (v − hi − lo)² over this thread's elements of the
// chunk at base below end: in float, or in double where the float sum
// overflows (elements of size above about 4.6e18), which would otherwise
// turn a norm's scale into 0. A NaN or ∞ among the elements passes
// through either way.
template <typename V>
__device__ __forceinline__ double chunkSquares(const V &v, unsigned base, int end, float hi, float lo) {
	float c = 0.0f;
	ROW_EACH(j, base, end) {
		float d = (v[k] - hi) - lo;
		c = fmaf(d, d, c);
	}
	if (!(c > FLT_MAX_F)) return c;
	double e = 0.0, mu = (double)hi + (double)lo;
	ROW_EACH(j, base, end) {
		double d = (double)v[k] - mu;
		e += d * d;
	}
	return e;
}

// splitF returns x as hi + *lo, two floats.
__device__ __forceinline__ float splitF(double x, float *lo) {
	float hi = (float)x;
	*lo = (float)(x - (double)hi);
	return hi;
}

// groupOnline combines the group's running (m, s) pairs into the row's
// maximum and its sum of exp(value − maximum), in every thread. Threads
// that saw no element (s = 0) add nothing.
__device__ __forceinline__ void groupOnline(double *m, double *s, double *sh) {
	double top = groupMax(*m, sh);
	double part = *s == 0.0 ? 0.0 : *s * (double)expf((float)(*m - top));
	*s = groupSum(part, sh);
	*m = top;
}

extern "C" __global__ void reduce_rows(int op, int rows, int cols, float *dst, const float *src) {
	__shared__ double sh[REDUCE_SLOTS];
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int n = live ? cols : 0;
		const float *x = src + row * cols;
		float v[ROW_CACHE];
		double acc = op == R_MAX ? NEG_INF : 0.0;
		ROW_CHUNKS(base, 0, n) {
			rowLoad(v, x, base, n);
			float c = op == R_MAX ? NEG_INF_F : 0.0f;
			if (op == R_MAX) {
				ROW_EACH(j, base, n) c = maxNaNf(c, v[k]);
				acc = maxNaN(acc, (double)c);
			} else {
				// Squares add without cancelling, so float is exact enough
				// within a chunk; a sum can cancel to far below its terms
				// and stays in double throughout.
				if (op == R_SUMSQ) {
					ROW_EACH(j, base, n) c = fmaf(v[k], v[k], c);
					acc += c;
				} else {
					ROW_EACH(j, base, n) acc += (double)v[k];
				}
			}
		}
		double r = op == R_MAX ? groupMax(acc, sh) : groupSum(acc, sh);
		if (live && threadIdx.x == 0) dst[row] = (float)r;
	}
}

// ---------------------------------------------------------------------------
// Sums over rows, per column, without atomics: pass one gives each chunk of
// rowsPerChunk rows and each column a partial sum (blocks of 32 columns ×
// 8 row lanes, the lanes combined in a fixed order); pass two adds the
// chunks' partials in order. The same scheme gives the weight gradients of
// the norms, with the per-row statistics saved by the row kernel.

#define COL_TILE 32
#define COL_LANES 8

// colLanes returns to the threads of lane 0 the sum of the COL_LANES
// lanes' v of their column, in lane order (others get 0).
__device__ double colLanes(double v) {
	__shared__ double sh[COL_LANES][COL_TILE];
	sh[threadIdx.y][threadIdx.x] = v;
	__syncthreads();
	double s = 0.0;
	if (threadIdx.y == 0)
		for (int k = 0; k < COL_LANES; k++) s += sh[k][threadIdx.x];
	__syncthreads(); // before the slots are written again
	return s;
}

// colPartialFinish combines the COL_LANES lanes' sums of one column tile
// and writes them to partial[chunk][col].
__device__ void colPartialFinish(double v, int col, int cols, double *partial) {
	double s = colLanes(v);
	if (threadIdx.y == 0 && col < cols) partial[(long long)blockIdx.y * cols + col] = s;
}

// colsum_partial: grid (ceil(cols/32), chunks), block (32, 8).
extern "C" __global__ void colsum_partial(int rows, int cols, int rowsPerChunk, const float *src, double *partial) {
	int col = blockIdx.x * COL_TILE + threadIdx.x;
	long long r0 = (long long)blockIdx.y * rowsPerChunk;
	long long r1 = r0 + rowsPerChunk < rows ? r0 + rowsPerChunk : rows;
	double s = 0.0;
	if (col < cols)
		for (long long r = r0 + threadIdx.y; r < r1; r += COL_LANES) s += src[r * cols + col];
	colPartialFinish(s, col, cols, partial);
}

// colsum_final: dst[col] (+)= Σ_chunks partial[chunk][col]. Grid and
// block as colsum_partial's with one chunk row: lane y adds chunks y,
// y + 8, ... in order and the lanes are combined in order, so that a
// column's chunks are summed by eight threads at once.
extern "C" __global__ void colsum_final(int chunks, int cols, int accumulate, const double *partial, float *dst) {
	int col = blockIdx.x * COL_TILE + threadIdx.x;
	double s = 0.0;
	if (col < cols)
		for (int c = threadIdx.y; c < chunks; c += COL_LANES) s += partial[(long long)c * cols + col];
	s = colLanes(s);
	if (threadIdx.y == 0 && col < cols) {
		if (accumulate) s += (double)dst[col];
		dst[col] = (float)s;
	}
}

// ---------------------------------------------------------------------------
// Softmax over rows of [batch, queries, keys], with an optional causal mask:
// query q (row % queries), at position q + qoff, sees keys j <= q + qoff,
// and with a sliding window (window > 0) only those with
// q + qoff - j < window. Each row works on its visible keys [lo, hi) only
// and writes zeros on either side.

__device__ __forceinline__ void visibleKeys(long long row, int queries, int keys, int causal, int qoff, int window, int *lo, int *hi) {
	*lo = 0;
	*hi = keys;
	if (!causal) return;
	long long pos = row % queries + qoff;
	if (pos + 1 < keys) *hi = (int)(pos + 1);
	if (window > 0 && pos - window + 1 > 0) *lo = (int)(pos - window + 1);
}

extern "C" __global__ void softmax(int rows, int queries, int keys, float scale, int causal, int qoff, int window, float *dst, const float *src) {
	__shared__ double sh[REDUCE_SLOTS];
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int lo = 0, hi = 0;
		if (live) visibleKeys(row, queries, keys, causal, qoff, window, &lo, &hi);
		const float *x = src + row * keys;
		float *y = dst + row * keys;
		bool fits = rowFits(lo, hi);
		float v[ROW_CACHE];
		double m = NEG_INF, s = 0.0;
		ROW_CHUNKS(base, lo, hi) {
			rowLoad(v, x, base, hi);
			onlineAdd(&m, &s, v, scale, base, hi);
		}
		groupOnline(&m, &s, sh);
		float mf = (float)m, inv = 1.0f / (float)s;
		// Every read of the row is done (groupOnline synchronised) or is
		// this thread's own, so dst may alias src.
		ROW_CHUNKS(base, lo, hi) {
			if (!fits) rowLoad(v, x, base, hi);
			ROW_EACH(j, base, hi) y[j] = rowExp(fmaf(scale, v[k], -mf)) * inv;
		}
		if (live) {
			for (int j = threadIdx.x; j < lo; j += blockDim.x) y[j] = 0.0f;
			for (int j = hi + threadIdx.x; j < keys; j += blockDim.x) y[j] = 0.0f;
		}
	}
}

extern "C" __global__ void softmax_grad(int rows, int queries, int keys, float scale, int causal, int qoff, int window, float *dx, const float *y, const float *dy) {
	__shared__ double sh[REDUCE_SLOTS];
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int lo = 0, hi = 0;
		if (live) visibleKeys(row, queries, keys, causal, qoff, window, &lo, &hi);
		const float *yr = y + row * keys, *gr = dy + row * keys;
		float *dr = dx + row * keys;
		bool fits = rowFits(lo, hi);
		float yv[ROW_CACHE], gv[ROW_CACHE];
		double dot = 0.0;
		ROW_CHUNKS(base, lo, hi) {
			rowLoad(yv, yr, base, hi);
			rowLoad(gv, gr, base, hi);
			float c = 0.0f;
			ROW_EACH(j, base, hi) c = fmaf(yv[k], gv[k], c);
			dot += c;
		}
		float dl, dh = splitF(groupSum(dot, sh), &dl);
		ROW_CHUNKS(base, lo, hi) {
			if (!fits) {
				rowLoad(yv, yr, base, hi);
				rowLoad(gv, gr, base, hi);
			}
			ROW_EACH(j, base, hi) dr[j] = scale * yv[k] * ((gv[k] - dh) - dl);
		}
		if (live) {
			for (int j = threadIdx.x; j < lo; j += blockDim.x) dr[j] = 0.0f;
			for (int j = hi + threadIdx.x; j < keys; j += blockDim.x) dr[j] = 0.0f;
		}
	}
}

// ---------------------------------------------------------------------------
// RMSNorm and LayerNorm. The backward row kernels find the parameter
// gradients, column sums over rows, in one of two ways. Where a row fits
// in one chunk, every row of a group puts the same columns in the same
// thread, which sums its columns' terms over the group's rows (in float:
// the host gives a group at most 64 rows; rmsnorm_grad in registers,
// layernorm_grad, with two sums, in shared memory) and writes them as the
// group's row of a partial block (*Part != 0); colsum_final adds those
// rows. The rows are then read once. Otherwise they save
// per-row statistics (rstd, or mean and rstd; stats != 0) for the partial
// kernels, which read the rows again.

// zeroCache clears a register row.
__device__ __forceinline__ void zeroCache(float *acc) {
	_Pragma("unroll") for (int k = 0; k < ROW_CACHE; k++) acc[k] = 0.0f;
}

// partialRow writes this group's column sums acc, for a row of cols that
// fits in one chunk, as row blockIdx.x·blockDim.y + threadIdx.y of part.
__device__ __forceinline__ void partialRow(double *part, const float *acc, int cols) {
	double *p = part + ((long long)blockIdx.x * blockDim.y + threadIdx.y) * cols;
	ROW_EACH(j, 0u, cols) p[j] = acc[k];
}

extern "C" __global__ void rmsnorm(int rows, int cols, float eps, float *dst, const float *x, const float *w) {
	__shared__ double sh[REDUCE_SLOTS];
	double invCols = 1.0 / cols;
	bool ahead = rowFits(0, cols);
	RowAhead nx;
	if (ahead && FIRST_ROW < rows) nx.fetch(x + FIRST_ROW * cols, 0, cols);
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int n = live ? cols : 0;
		const float *xr = x + row * cols;
		float *dr = dst + row * cols;
		bool fits = rowFits(0, n);
		float xv[ROW_CACHE];
		if (ahead) {
			nx.take(xv);
			if (row + ROW_STRIDE < rows) nx.fetch(xr + ROW_STRIDE * cols, 0, cols);
		}
		double ss = 0.0;
		ROW_CHUNKS(base, 0, n) {
			if (!ahead) rowLoad(xv, xr, base, n);
			ss += chunkSquares(xv, base, n, 0.0f, 0.0f);
		}
		ss = groupSum(ss, sh);
		float r = (float)(1.0 / sqrt(ss * invCols + eps));
		ROW_CHUNKS(base, 0, n) {
			if (!fits) rowLoad(xv, xr, base, n);
			ROW_EACH(j, base, n) dr[j] = xv[k] * r * w[j];
		}
	}
}

extern "C" __global__ void rmsnorm_grad(int rows, int cols, float eps, float *dx, const float *x, const float *w, const float *dy, double *stats, double *dwPart) {
	__shared__ double sh[2 * REDUCE_SLOTS];
	double invCols = 1.0 / cols;
	float aw[ROW_CACHE];
	zeroCache(aw);
	bool ahead = rowFits(0, cols);
	RowAhead nx, ng;
	if (ahead && FIRST_ROW < rows) {
		nx.fetch(x + FIRST_ROW * cols, 0, cols);
		ng.fetch(dy + FIRST_ROW * cols, 0, cols);
	}
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int n = live ? cols : 0;
		const float *xr = x + row * cols, *gr = dy + row * cols;
		float *dr = dx + row * cols;
		bool fits = rowFits(0, n);
		float xv[ROW_CACHE], gv[ROW_CACHE];
		if (ahead) {
			nx.take(xv);
			ng.take(gv);
			if (row + ROW_STRIDE < rows) {
				nx.fetch(xr + ROW_STRIDE * cols, 0, cols);
				ng.fetch(gr + ROW_STRIDE * cols, 0, cols);
			}
		}
		double ss = 0.0, dot = 0.0;
		ROW_CHUNKS(base, 0, n) {
			if (!ahead) {
				rowLoad(xv, xr, base, n);
				rowLoad(gv, gr, base, n);
			}
			float cd = 0.0f;
			ROW_EACH(j, base, n) cd = fmaf(w[j] * gv[k], xv[k], cd);
			ss += chunkSquares(xv, base, n, 0.0f, 0.0f);
			dot += cd;
		}
		groupSum2(&ss, &dot, sh);
		// The row's factors in double: r³ under- or overflows float for
		// rows of size beyond about 1e13 or, with eps = 0, below 1e-13.
		double rd = 1.0 / sqrt(ss * invCols + eps);
		float rf = (float)rd, c = (float)(rd * rd * rd * dot * invCols);
		ROW_CHUNKS(base, 0, n) {
			if (!fits) {
				rowLoad(xv, xr, base, n);
				rowLoad(gv, gr, base, n);
			}
			ROW_EACH(j, base, n) {
				dr[j] = fmaf(rf * w[j], gv[k], -xv[k] * c);
				if (dwPart) aw[k] = fmaf(gv[k], xv[k] * rf, aw[k]);
			}
		}
		if (live && stats && threadIdx.x == 0) stats[row] = rf;
	}
	if (dwPart) partialRow(dwPart, aw, cols);
}

// rmsnorm_dw_partial: partial sums of dy·x·rstd per column; grid and block
// as colsum_partial.
extern "C" __global__ void rmsnorm_dw_partial(int rows, int cols, int rowsPerChunk, const float *x, const float *dy, const double *stats, double *partial) {
	int col = blockIdx.x * COL_TILE + threadIdx.x;
	long long r0 = (long long)blockIdx.y * rowsPerChunk;
	long long r1 = r0 + rowsPerChunk < rows ? r0 + rowsPerChunk : rows;
	double s = 0.0;
	if (col < cols)
		for (long long r = r0 + threadIdx.y; r < r1; r += COL_LANES) {
			long long k = r * cols + col;
			s += (double)dy[k] * (double)x[k] * stats[r];
		}
	colPartialFinish(s, col, cols, partial);
}

// layerStats returns the mean and 1/sqrt(variance + eps) of the row xr of
// n elements (n = cols, or 0 for a group without a row), from the
// registers xv when the row fits (fits), which it loads; the mean also as
// the two floats *mh + *ml. A thread's float sums within a chunk are of x − x₀,
// x₀ being its first element of the chunk, so that they are of the size of
// the spread and not of the mean; the shifts are added back in double.
__device__ __forceinline__ void layerStats(const float *xr, float *xv, int n, double invCols, float eps, bool fits, double *sh, double *mean, float *mh, float *ml, float *rstd) {
	double s = 0.0;
	ROW_CHUNKS(base, 0, n) {
		rowLoad(xv, xr, base, n);
		float x0 = xv[0], c = 0.0f;
		int count = 0;
		ROW_EACH(j, base, n) {
			c += xv[k] - x0;
			count++;
		}
		if (count > 0) s += (double)c + (double)count * (double)x0;
	}
	double mu = groupSum(s, sh) * invCols;
	float lo, hi = splitF(mu, &lo);
	double ss = 0.0;
	ROW_CHUNKS(base, 0, n) {
		if (!fits) rowLoad(xv, xr, base, n);
		ss += chunkSquares(xv, base, n, hi, lo);
	}
	*mean = mu;
	*mh = hi;
	*ml = lo;
	*rstd = (float)(1.0 / sqrt(groupSum(ss, sh) * invCols + eps));
}

extern "C" __global__ void layernorm(int rows, int cols, float eps, float *dst, const float *x, const float *gamma, const float *beta) {
	__shared__ double sh[REDUCE_SLOTS];
	double invCols = 1.0 / cols;
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int n = live ? cols : 0;
		const float *xr = x + row * cols;
		float *dr = dst + row * cols;
		bool fits = rowFits(0, n);
		float xv[ROW_CACHE];
		double mean;
		float mh, ml, r;
		layerStats(xr, xv, n, invCols, eps, fits, sh, &mean, &mh, &ml, &r);
		ROW_CHUNKS(base, 0, n) {
			if (!fits) rowLoad(xv, xr, base, n);
			ROW_EACH(j, base, n) {
				float v = ((xv[k] - mh) - ml) * r * gamma[j];
				dr[j] = beta ? v + beta[j] : v;
			}
		}
	}
}

// layernorm_grad writes dx and, when stats is not 0, mean and rstd of each
// row at stats[2*row] and stats[2*row+1]; with dgPart and dbPart, the
// group's sums of dy·x̂ and of dy (see above), which it keeps in shared
// memory, each thread in its own slots, to leave registers to the rows.
extern "C" __global__ void layernorm_grad(int rows, int cols, float eps, float *dx, const float *x, const float *gamma, const float *dy, double *stats, double *dgPart, double *dbPart) {
	__shared__ double sh[2 * REDUCE_SLOTS];
	__shared__ float acc[2][ROW_CACHE * ROW_BLOCK];
	double invCols = 1.0 / cols;
	int slot = threadIdx.y * blockDim.x + threadIdx.x, slots = blockDim.x * blockDim.y;
	if (dgPart || dbPart) {
		_Pragma("unroll") for (int k = 0; k < ROW_CACHE; k++) {
			acc[0][k * slots + slot] = 0.0f;
			acc[1][k * slots + slot] = 0.0f;
		}
	}
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int n = live ? cols : 0;
		const float *xr = x + row * cols, *gr = dy + row * cols;
		float *dr = dx + row * cols;
		bool fits = rowFits(0, n);
		float xv[ROW_CACHE], gv[ROW_CACHE];
		if (fits) rowLoad(gv, gr, 0u, n); // in flight through the statistics
		double mean;
		float mh, ml, r;
		layerStats(xr, xv, n, invCols, eps, fits, sh, &mean, &mh, &ml, &r);
		double sg = 0.0, sgx = 0.0;
		ROW_CHUNKS(base, 0, n) {
			if (!fits) {
				rowLoad(xv, xr, base, n);
				rowLoad(gv, gr, base, n);
			}
			float cg = 0.0f, cgx = 0.0f;
			ROW_EACH(j, base, n) {
				float g = gv[k] * gamma[j];
				cg += g;
				cgx = fmaf(g, ((xv[k] - mh) - ml) * r, cgx);
			}
			sg += cg;
			sgx += cgx;
		}
		groupSum2(&sg, &sgx, sh);
		float mg = (float)(sg * invCols), mgx = (float)(sgx * invCols);
		ROW_CHUNKS(base, 0, n) {
			if (!fits) {
				rowLoad(xv, xr, base, n);
				rowLoad(gv, gr, base, n);
			}
			ROW_EACH(j, base, n) {
				float xh = ((xv[k] - mh) - ml) * r;
				dr[j] = r * fmaf(-xh, mgx, gv[k] * gamma[j] - mg);
				if (dgPart) acc[0][k * slots + slot] = fmaf(gv[k], xh, acc[0][k * slots + slot]);
				if (dbPart) acc[1][k * slots + slot] += gv[k];
			}
		}
		if (live && stats && threadIdx.x == 0) {
			stats[2 * row] = mean;
			stats[2 * row + 1] = r;
		}
	}
	float part[ROW_CACHE];
	if (dgPart) {
		_Pragma("unroll") for (int k = 0; k < ROW_CACHE; k++) part[k] = acc[0][k * slots + slot];
		partialRow(dgPart, part, cols);
	}
	if (dbPart) {
		_Pragma("unroll") for (int k = 0; k < ROW_CACHE; k++) part[k] = acc[1][k * slots + slot];
		partialRow(dbPart, part, cols);
	}
}

// layernorm_params_partial: partial sums of dy·x̂ (into pg) and of dy (into
// pb) per column; either output may be 0. Grid and block as colsum_partial.
extern "C" __global__ void layernorm_params_partial(int rows, int cols, int rowsPerChunk, const float *x, const float *dy, const double *stats, double *pg, double *pb) {
	int col = blockIdx.x * COL_TILE + threadIdx.x;
	long long r0 = (long long)blockIdx.y * rowsPerChunk;
	long long r1 = r0 + rowsPerChunk < rows ? r0 + rowsPerChunk : rows;
	double sgx = 0.0, sb = 0.0;
	if (col < cols)
		for (long long r = r0 + threadIdx.y; r < r1; r += COL_LANES) {
			long long k = r * cols + col;
			double g = dy[k];
			sgx += g * ((double)x[k] - stats[2 * r]) * stats[2 * r + 1];
			sb += g;
		}
	if (pg) colPartialFinish(sgx, col, cols, pg);
	if (pb) colPartialFinish(sb, col, cols, pb);
}

// ---------------------------------------------------------------------------
// Rotary position embedding of [batch, seq, heads, hd]: one thread per
// rotated pair; angles in double, as pos·θ^(−2i/hd) reaches thousands of
// radians where float32 would lose the phase. freqs, when not null, holds
// the hd/2 inverse frequencies in place of θ^(−2i/hd).

extern "C" __global__ void rope(int layout, int inverse, long long pairs, int seq, int heads, int hd, int offset, float theta, const double *freqs, float *dst, const float *src) {
	int half = hd / 2;
	int stride = layout == ROPE_HALFSPLIT ? 1 : 2;
	int second = layout == ROPE_HALFSPLIT ? half : 1;
	long long step = (long long)gridDim.x * blockDim.x;
	for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += step) {
		int i = (int)(p % half);
		long long head = p / half; // (bt*heads + h)
		long long bt = head / heads;
		int t = (int)(bt % seq);
		double inv = freqs ? freqs[i] : pow((double)theta, -(double)(2 * i) / (double)hd);
		double angle = (double)(offset + t) * inv;
		double sn, cs;
		sincos(angle, &sn, &cs);
		if (inverse) sn = -sn;
		long long j = head * hd + (long long)i * stride;
		double x0 = src[j], x1 = src[j + second];
		dst[j] = (float)(x0 * cs - x1 * sn);
		dst[j + second] = (float)(x0 * sn + x1 * cs);
	}
}

// ---------------------------------------------------------------------------
// Embeddings. ids live in device memory, uploaded by the host per call.

extern "C" __global__ void gather(long long n, int dim, const int *ids, float *dst, const float *table) {
	long long step = (long long)gridDim.x * blockDim.x;
	for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n * dim; k += step) {
		long long i = k / dim;
		int j = (int)(k - i * dim);
		dst[k] = table[(long long)ids[i] * dim + j];
	}
}

// gather_bf16 is gather from a bfloat16 table: each element widened to the
// float32 whose top half it is, exactly (as widen_bf16 does).
extern "C" __global__ void gather_bf16(long long n, int dim, const int *ids, float *dst, const unsigned short *table) {
	long long step = (long long)gridDim.x * blockDim.x;
	for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n * dim; k += step) {
		long long i = k / dim;
		int j = (int)(k - i * dim);
		union { unsigned int u; float f; } v;
		v.u = (unsigned int)table[(long long)ids[i] * dim + j] << 16;
		dst[k] = v.f;
	}
}

// scatter_add adds the rows of dy into dtable without atomics: the host
// groups equal ids (packed = [ids of the segments | segment starts (one
// more) | positions in dy, grouped by id, in increasing order]); each block
// takes whole segments, so no two threads write the same element, and each
// element's rows are summed in a fixed order.
extern "C" __global__ void scatter_add(int segments, int dim, const int *packed, float *dtable, const float *dy) {
	const int *segIds = packed;
	const int *starts = packed + segments;
	const int *order = starts + segments + 1;
	for (int sgm = blockIdx.x; sgm < segments; sgm += gridDim.x) {
		long long id = segIds[sgm];
		int a = starts[sgm], b = starts[sgm + 1];
		for (int j = threadIdx.x; j < dim; j += blockDim.x) {
			float acc = dtable[id * dim + j];
			for (int k = a; k < b; k++) acc += dy[(long long)order[k] * dim + j];
			dtable[id * dim + j] = acc;
		}
	}
}

// ---------------------------------------------------------------------------
// Cross-entropy from logits [rows, vocab] with targets in device memory.
// Both kernels read the row once for its maximum and sum of exponentials
// (online, see onlineAdd); the gradient reads it again to write dlogits
// unless it fits in registers. Each group loads the target of its next row
// while it works on this one, so that a row's loads never wait for its
// target, and the thread that holds the target's logit writes the loss.

// targetOf returns the target of row, ignore past the last row.
__device__ __forceinline__ int targetOf(long long row, int rows, int ignore, const int *targets) {
	return row < rows ? targets[row] : ignore;
}

extern "C" __global__ void cross_entropy(int rows, int vocab, int ignore, float smoothing, const int *targets, float *loss, const float *logits) {
	__shared__ double sh[REDUCE_SLOTS];
	int next = targetOf(FIRST_ROW, rows, ignore, targets);
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int t = next;
		next = targetOf(row + ROW_STRIDE, rows, ignore, targets);
		int n = live && t != ignore ? vocab : 0;
		const float *x = logits + row * vocab;
		float v[ROW_CACHE], xt = 0.0f;
		bool owner = false;
		double m = NEG_INF, s = 0.0, sx = 0.0;
		ROW_CHUNKS(base, 0, n) {
			rowLoad(v, x, base, n);
			ROW_EACH(j, base, n) if ((int)j == t) {
				xt = v[k];
				owner = true;
			}
			if (smoothing != 0.0f) {
				float c = 0.0f;
				ROW_EACH(j, base, n) c += v[k];
				sx += c;
			}
			onlineAdd(&m, &s, v, 1.0f, base, n);
		}
		groupOnline(&m, &s, sh);
		if (smoothing != 0.0f) sx = groupSum(sx, sh);
		if (live && n == 0 && threadIdx.x == 0) loss[row] = 0.0f;
		if (owner) {
			double eps = smoothing;
			double l = m + log(s) - (1.0 - eps) * (double)xt;
			if (eps != 0.0) l -= eps * sx / vocab;
			loss[row] = (float)l;
		}
	}
}

extern "C" __global__ void cross_entropy_grad(int rows, int vocab, int ignore, float smoothing, float scale, const int *targets, float *dlogits, const float *logits) {
	__shared__ double sh[REDUCE_SLOTS];
	bool ahead = rowFits(0, vocab);
	RowAhead nx;
	int next = targetOf(FIRST_ROW, rows, ignore, targets);
	if (ahead && next != ignore) nx.fetch(logits + FIRST_ROW * vocab, 0, vocab);
	float uniform = (float)((double)smoothing / vocab);
	float target = (float)((double)smoothing / vocab + (1.0 - (double)smoothing));
	ROW_LOOP(rows) {
		ROW_HEAD(rows)
		int t = next;
		next = targetOf(row + ROW_STRIDE, rows, ignore, targets);
		int n = live && t != ignore ? vocab : 0;
		const float *x = logits + row * vocab;
		float *d = dlogits + row * vocab;
		bool fits = rowFits(0, n);
		float v[ROW_CACHE];
		if (ahead) {
			nx.take(v);
			if (next != ignore) nx.fetch(x + ROW_STRIDE * vocab, 0, vocab);
		}
		double m = NEG_INF, s = 0.0;
		ROW_CHUNKS(base, 0, n) {
			if (!ahead) rowLoad(v, x, base, n);
			onlineAdd(&m, &s, v, 1.0f, base, n);
		}
		groupOnline(&m, &s, sh);
		float ll, lh = splitF(m + (double)logf((float)s), &ll);
		if (live && n == 0)
			for (int j = threadIdx.x; j < vocab; j += blockDim.x) d[j] = 0.0f;
		ROW_CHUNKS(base, 0, n) {
			if (!fits) rowLoad(v, x, base, n);
			ROW_EACH(j, base, n) d[j] = scale * (rowExp((v[k] - lh) - ll) - ((int)j == t ? target : uniform));
		}
	}
}

// ---------------------------------------------------------------------------
// AdamW, as torch.optim.AdamW, in double from the stored float32 values
// (see the CPU backend). stepSize = lr/(1−β₁^t), sqrtBC2 = sqrt(1−β₂^t) and
// decay = 1 − lr·wd come from the host.

extern "C" __global__ void adamw(long long n, double beta1, double beta2, double eps, double stepSize, double sqrtBC2, double decay, float *param, const float *grad, float *m, float *v) {
	ELEM_LOOP {
		float pg[ELEM_UNROLL], pm[ELEM_UNROLL], pv[ELEM_UNROLL], pp[ELEM_UNROLL];
		ELEM_EACH(k) {
			long long e = i + k * step;
			pg[k] = grad[e];
			pm[k] = m[e];
			pv[k] = v[e];
			pp[k] = param[e];
		}
		ELEM_EACH(k) {
			long long e = i + k * step;
			double g = pg[k];
			double mi = beta1 * (double)pm[k] + (1.0 - beta1) * g;
			double vi = beta2 * (double)pv[k] + (1.0 - beta2) * g * g;
			m[e] = (float)mi;
			v[e] = (float)vi;
			param[e] = (float)((double)pp[k] * decay - stepSize * mi / (sqrt(vi) / sqrtBC2 + eps));
		}
	}
}

// ---------------------------------------------------------------------------
// Fused attention, in the manner of FlashAttention-2, in float32 on the CUDA
// cores (no tensor cores, so that results keep float32 precision).
//
// q and out are [batch, queries, heads, D], k and v [batch, keys, kvHeads,
// D]; query head h reads key/value head h / group. The [queries, keys]
// scores are never stored: attn_fwd keeps a running maximum and sum per
// query (online softmax) over tiles of keys and writes out and the
// log-sum-exp lse [batch, heads, queries]; the backward recomputes the
// probabilities from lse, P = exp(s − lse), in attn_dq (one block per query
// tile: dq) and attn_dkdv (one block per key tile and key/value head: dk
// and dv, summed over the group's query heads in registers), after
// attn_delta has formed δ = Σ_d dout·out per query. No atomics: every output
// element is written by one thread, its sums in a fixed order.
//
// The keys a query sees are an interval: [0, keys) without a mask, up to
// its position under a causal mask, from the window's first key with a
// window, and within its own document when the sequences are packed
// (AttentionParams.Segments). For packing the host passes seg, 2·batch·keys
// ints: the first key of each key's document (starts, [batch, keys]), then
// one past its last (ends); without packing seg is 0. Each block puts the
// intervals of its rows in shared memory (the keys each query sees in
// attn_fwd and attn_dq, the queries that see each key in attn_dkdv), masks
// with them, and visits only the tiles some row's interval reaches: without
// seg, those between the bounds of the mask (attnKeys, attnQueries), as
// before packing existed; with seg, each next tile is found from the rows'
// intervals (attnNextTile), which skips the tiles of the documents before
// the first row's and after the last row's. (The intervals of consecutive
// rows meet, so there are no gaps between; the search does not rely on it.)
//
// Any D works with fixed static shared memory: the dot products of the
// scores read q, k, v and dout in slices of ATT_KD head elements, and the
// per-thread accumulators (rows of out or dq, or of dk and dv) cover DCH
// columns of the head, the kernel variant's (64, 128 or 256; the host picks
// the smallest that holds D). A head wider than 256 is done in passes of
// 256 columns, each recomputing the scores. Columns past D and rows past
// the sequences are loaded as zeros and never written.
//
// Threads are (ty, tx) = (threadIdx.x / 16, threadIdx.x % 16): a thread
// holds RA consecutive rows ty·RA.. of one operand of a tile and the
// columns tx, tx + 16, ... of the other (or of the head), so that the 16
// lanes of a row group read consecutive or broadcast shared-memory words.
// Exponentials are expf of float arguments.

#define ATT_KD 32     // head elements per shared slice of the dot products
#define ATT_NT 128    // threads of attn_fwd and attn_dq: 8 row groups × 16
#define ATT_BR 32     // queries per tile of attn_fwd and attn_dq (4 per row group)
#define ATT_BC 64     // keys per tile of attn_fwd and attn_dq (4 per lane)
#define ATT_VK 16     // rows of v, k, dout or q per shared slice of the accumulations
#define ATT_KV_NT 256 // threads of attn_dkdv: 16 row groups × 16
#define ATT_BK 32     // keys per block of attn_dkdv (2 per row group)
#define ATT_BQ 64     // queries per tile of attn_dkdv (4 per lane)

// AttnParams mirrors attnParams of attention.go.
struct AttnParams {
	int batch, queries, keys, heads, kvHeads, headDim;
	int group;  // heads / kvHeads
	int causal; // 0 or 1
	int qoff;   // the position of query 0 (causal masks and segments only)
	int window; // sliding window in keys, 0 for none (causal masks only)
	float scale, softcap;
};

__device__ __forceinline__ int attnMin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int attnMax(int a, int b) { return a > b ? a : b; }

// attnRowKeys sets [*lo, *hi) to the keys that query i of sequence b sees:
// under a causal mask those up to its position (from the window's first
// one with a window), with seg only those of its position's document.
__device__ __forceinline__ void attnRowKeys(const AttnParams p, const int *seg, int b, int i, int *lo, int *hi) {
	const int pos = i + p.qoff;
	int l = 0, h = p.keys;
	if (p.causal) {
		if (pos + 1 < h) h = pos + 1;
		if (p.window > 0 && pos - p.window + 1 > 0) l = pos - p.window + 1;
	}
	if (seg) {
		const long long at = (long long)b * p.keys + pos;
		l = attnMax(l, seg[at]);
		h = attnMin(h, seg[(long long)p.batch * p.keys + at]);
	}
	*lo = l;
	*hi = h;
}

// attnKeyQueries sets [*lo, *hi) to the queries that see key j of sequence
// b (empty when none does): under a causal mask those from its position
// on, with a window only those whose window reaches it, and with seg only
// those at positions of its document.
__device__ __forceinline__ void attnKeyQueries(const AttnParams p, const int *seg, int b, int j, int *lo, int *hi) {
	// Positions minus qoff: a window's end can pass the int range.
	long long l = 0, h = p.queries;
	if (p.causal) {
		l = (long long)j - p.qoff;
		const long long end = (long long)j - p.qoff + p.window;
		if (p.window > 0 && end < h) h = end;
	}
	if (seg) {
		const long long at = (long long)b * p.keys + j;
		const long long first = (long long)seg[at] - p.qoff, last = (long long)seg[(long long)p.batch * p.keys + at] - p.qoff;
		if (first > l) l = first;
		if (last < h) h = last;
	}
	if (l < 0) l = 0;
	if (h < l) h = l;
	*lo = (int)l;
	*hi = (int)h;
}

// attnNextTile returns the first index of the tile of T (a multiple of T)
// that holds the smallest index ≥ i (a multiple of T) lying in one of the
// n intervals [lo[r], hi[r]), or end when there is none. The intervals'
// bounds must be non-decreasing in r, as the rows' are (positions and
// documents run in order): then the first interval that is not empty and
// ends after i holds the answer, max(i, its start), and the intervals
// before it never matter again as i grows. *cur is the first interval not
// yet passed over (0 to begin).
template <int T>
__device__ __forceinline__ int attnNextTile(const int *lo, const int *hi, int n, int i, int *cur, int end) {
	while (*cur < n && (hi[*cur] <= i || hi[*cur] <= lo[*cur])) ++*cur;
	if (*cur == n) return end;
	const int x = attnMax(i, lo[*cur]);
	return x - x % T;
}

// attnKeys sets [lo, hi) to the keys that some query of [i0, i1) sees
// (i1 > i0): a causal mask hides those after the last query's position, a
// window those before the first query's window.
__device__ __forceinline__ void attnKeys(const AttnParams p, int i0, int i1, int *lo, int *hi) {
	*lo = 0;
	*hi = p.keys;
	if (!p.causal) return;
	int last = i1 - 1 + p.qoff;
	if (last + 1 < p.keys) *hi = last + 1;
	if (p.window > 0 && i0 + p.qoff - p.window + 1 > 0) *lo = i0 + p.qoff - p.window + 1;
}

// attnQueries sets [lo, hi) to the queries that see some key of [j0, j1)
// (j1 > j0): those from the position of j0 on, and with a window only those
// whose window still reaches j1 − 1.
__device__ __forceinline__ void attnQueries(const AttnParams p, int j0, int j1, int *lo, int *hi) {
	*lo = 0;
	*hi = p.queries;
	if (!p.causal) return;
	if (j0 - p.qoff > 0) *lo = j0 - p.qoff;
	if (p.window > 0) {
		long long end = (long long)j1 - 1 + p.window - p.qoff; // queries i < end
		if (end < *hi) *hi = end > 0 ? (int)end : 0;
	}
}

// attnScore turns a dot product q·k into the score: scaled and, with a
// soft cap c, c·tanh(x/c).
__device__ __forceinline__ float attnScore(const AttnParams p, float dot) {
	float x = dot * p.scale;
	if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
	return x;
}

// attnScoreGrad is the derivative of the score x = attnScore(dot) with
// respect to dot, from x: scale·(1 − (x/c)²) with a cap, scale without.
__device__ __forceinline__ float attnScoreGrad(const AttnParams p, float x) {
	if (p.softcap > 0.0f) {
		float t = x / p.softcap;
		return p.scale * (1.0f - t * t);
	}
	return p.scale;
}

// attnRowMax and attnRowSum reduce over the 16 lanes of a row group (lanes
// 0–15 or 16–31 of a warp; every lane gets the result).
__device__ __forceinline__ float attnRowMax(float v) {
	for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
	return v;
}

__device__ __forceinline__ float attnRowSum(float v) {
	for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
	return v;
}

// attnDots sets s[a][c] = A[ty·RA + a]·B[tx + 16c], dot products over the D
// elements of rows of A (na rows of the tile's AR exist, stride aStride
// floats) and of B (nb of BR, stride bStride); missing rows count as
// zeros. as and bs are shared slices; it starts with a barrier, so shared
// data the caller read before the call may be overwritten after it.
template <int RA, int AR, int BR>
__device__ __forceinline__ void attnDots(float s[RA][BR / 16], const float *A, long long aStride, int na, const float *B, long long bStride,
                         int nb, int D, float (*as)[ATT_KD + 1], float (*bs)[ATT_KD + 1]) {
	const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15, nt = blockDim.x;
#pragma unroll
	for (int a = 0; a < RA; a++)
#pragma unroll
		for (int c = 0; c < BR / 16; c++) s[a][c] = 0.0f;
	for (int d0 = 0; d0 < D; d0 += ATT_KD) {
		__syncthreads();
		for (int e = tid; e < AR * ATT_KD; e += nt) {
			int r = e / ATT_KD, c = e % ATT_KD;
			as[r][c] = r < na && d0 + c < D ? A[r * aStride + d0 + c] : 0.0f;
		}
		for (int e = tid; e < BR * ATT_KD; e += nt) {
			int r = e / ATT_KD, c = e % ATT_KD;
			bs[r][c] = r < nb && d0 + c < D ? B[r * bStride + d0 + c] : 0.0f;
		}
		__syncthreads();
#pragma unroll 8
		for (int kk = 0; kk < ATT_KD; kk++) {
			float av[RA], bv[BR / 16];
#pragma unroll
			for (int a = 0; a < RA; a++) av[a] = as[ty * RA + a][kk];
#pragma unroll
			for (int c = 0; c < BR / 16; c++) bv[c] = bs[tx + 16 * c][kk];
#pragma unroll
			for (int a = 0; a < RA; a++)
#pragma unroll
				for (int c = 0; c < BR / 16; c++) s[a][c] = fmaf(av[a], bv[c], s[a][c]);
		}
	}
}

// attnAccumulate adds W·X to acc: acc[a][e] += Σ_j w[ty·RA + a][j] ·
// X[j][d0 + tx + 16e] over the n rows of X (stride xStride floats), which
// pass through rows in slices of ATT_VK; w is a shared tile with LD
// columns, n ≤ its width. It starts with a barrier, as attnDots does.
template <int RA, int DCH, int LD>
__device__ __forceinline__ void attnAccumulate(float acc[RA][DCH / 16], float (*w)[LD], const float *X, long long xStride, int n, int d0,
                               int D, float (*rows)[DCH]) {
	const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15, nt = blockDim.x;
	for (int j0 = 0; j0 < n; j0 += ATT_VK) {
		__syncthreads();
		for (int e = tid; e < ATT_VK * DCH; e += nt) {
			int r = e / DCH, c = e % DCH;
			rows[r][c] = j0 + r < n && d0 + c < D ? X[(j0 + r) * xStride + d0 + c] : 0.0f;
		}
		__syncthreads();
#pragma unroll 4
		for (int jj = 0; jj < ATT_VK; jj++) {
			float wv[RA];
#pragma unroll
			for (int a = 0; a < RA; a++) wv[a] = w[ty * RA + a][j0 + jj];
#pragma unroll
			for (int e = 0; e < DCH / 16; e++) {
				float x = rows[jj][tx + 16 * e];
#pragma unroll
				for (int a = 0; a < RA; a++) acc[a][e] = fmaf(wv[a], x, acc[a][e]);
			}
		}
	}
}

// AttnStage is the shared memory that attnDots and attnAccumulate use in
// turn (each starts with a barrier): the slices of the dot products' AR
// and BR rows, or ATT_VK rows of DCH head columns being accumulated.
template <int AR, int BR, int DCH>
union AttnStage {
	struct {
		float a[AR][ATT_KD + 1];
		float b[BR][ATT_KD + 1];
	} dots;
	float rows[ATT_VK][DCH];
};

// Shared memory of attn_fwd and attn_dq: the keys [lo, hi) each query of
// the tile sees, the tile's probabilities (or dS) and, at different times,
// the slices of the dot products or rows of v (or k). 25 KB for DCH = 256.
template <int DCH>
struct AttnRowsShared {
	int lo[ATT_BR], hi[ATT_BR];
	float p[ATT_BR][ATT_BC + 1];
	AttnStage<ATT_BR, ATT_BC, DCH> u;
};

// Shared memory of attn_dkdv: the queries [lo, hi) that see each key of
// the block, Pᵀ and dSᵀ of the tile, the tile's lse and δ, and the slices
// of the dot products or rows of dout (or q). 33.8 KB for DCH = 256.
template <int DCH>
struct AttnColsShared {
	int lo[ATT_BK], hi[ATT_BK];
	float pt[ATT_BK][ATT_BQ + 1];
	float dst[ATT_BK][ATT_BQ + 1];
	float lse[ATT_BQ], delta[ATT_BQ];
	AttnStage<ATT_BK, ATT_BQ, DCH> u;
};

// attnRowBounds puts the keys [lo, hi) each query of the tile at i0 (nq
// of them) sees into sh (the rows past nq see none) and sets [*lo, *hi) to
// the range of key tiles to visit, *lo the first tile's start. It starts
// with a barrier (the previous tile's last reads of sh's bounds come before
// it) and ends with one.
template <int DCH>
__device__ __forceinline__ void attnRowBounds(const AttnParams p, const int *seg, int b, int i0, int nq, AttnRowsShared<DCH> &sh, int *lo,
                              int *hi) {
	__syncthreads();
	for (int r = threadIdx.x; r < ATT_BR; r += blockDim.x) {
		if (r < nq) {
			attnRowKeys(p, seg, b, i0 + r, &sh.lo[r], &sh.hi[r]);
		} else {
			sh.lo[r] = sh.hi[r] = 0;
		}
	}
	__syncthreads();
	if (seg) {
		int cur = 0;
		*lo = attnNextTile<ATT_BC>(sh.lo, sh.hi, nq, 0, &cur, p.keys);
		*hi = p.keys;
	} else {
		// A mask alone leaves no gaps between the rows' keys.
		attnKeys(p, i0, i0 + nq, lo, hi);
		*lo -= *lo % ATT_BC;
	}
}

// attnRowTileCount is the number of query tiles of attn_fwd and attn_dq:
// ⌈queries/ATT_BR⌉ for each (batch element, head).
__device__ __forceinline__ long long attnRowTileCount(const AttnParams p) {
	return (long long)p.batch * p.heads * ((p.queries + ATT_BR - 1) / ATT_BR);
}

// AttnRowTile is query tile t of attn_fwd and attn_dq: its first query i0
// and number of queries nq, batch element b, query head h, bh = b·heads + h
// (the row of lse and δ), and the offsets of its first query in q (out,
// dq, dout) and of its sequence's first key of key/value head h / group
// in k and v.
struct AttnRowTile {
	int i0, nq, b, h;
	long long bh, qOff, kOff;
};

__device__ __forceinline__ AttnRowTile attnRowTile(const AttnParams p, long long t) {
	const long long heads = (long long)p.batch * p.heads;
	const int qTiles = (p.queries + ATT_BR - 1) / ATT_BR;
	AttnRowTile r;
	// The last query tiles first: under a causal mask they see the most keys.
	r.i0 = (qTiles - 1 - (int)(t / heads)) * ATT_BR;
	r.nq = attnMin(ATT_BR, p.queries - r.i0);
	r.bh = t % heads;
	r.b = (int)(r.bh / p.heads);
	r.h = (int)(r.bh % p.heads);
	r.qOff = ((long long)r.b * p.queries + r.i0) * p.heads * p.headDim + (long long)r.h * p.headDim;
	r.kOff = ((long long)r.b * p.keys * p.kvHeads + r.h / p.group) * p.headDim;
	return r;
}

// attnForward is attn_fwd: a block per (query tile, batch element, head),
// blocks striding over them; 4 queries per row group, keys in tiles of
// ATT_BC, the tiles no query of the tile sees skipped.
template <int DCH>
__device__ __forceinline__ void attnForward(const AttnParams p, float *out, float *lse, const float *q, const float *k, const float *v,
                            const int *seg, AttnRowsShared<DCH> &sh) {
	const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15, D = p.headDim;
	const long long qStride = (long long)p.heads * D, kStride = (long long)p.kvHeads * D;
	for (long long t = blockIdx.x; t < attnRowTileCount(p); t += gridDim.x) {
		const AttnRowTile rt = attnRowTile(p, t);
		const int i0 = rt.i0, nq = rt.nq, b = rt.b;
		const long long bh = rt.bh;
		const float *qt = q + rt.qOff, *kt = k + rt.kOff, *vt = v + rt.kOff;
		int lo, hi;
		attnRowBounds(p, seg, b, i0, nq, sh, &lo, &hi);
		for (int d0 = 0; d0 < D; d0 += DCH) {
			float o[4][DCH / 16], m[4], l[4];
#pragma unroll
			for (int a = 0; a < 4; a++) {
				m[a] = NEG_INF_F;
				l[a] = 0.0f;
#pragma unroll
				for (int e = 0; e < DCH / 16; e++) o[a][e] = 0.0f;
			}
			int cur = 0;
			for (int j0 = lo; j0 < hi; j0 = seg ? attnNextTile<ATT_BC>(sh.lo, sh.hi, nq, j0 + ATT_BC, &cur, hi) : j0 + ATT_BC) {
				const int nk = attnMin(ATT_BC, p.keys - j0);
				float s[4][4];
				attnDots<4, ATT_BR, ATT_BC>(s, qt, qStride, nq, kt + j0 * kStride, kStride, nk, D, sh.u.dots.a, sh.u.dots.b);
#pragma unroll
				for (int a = 0; a < 4; a++) {
					const int r = ty * 4 + a;
					// The row's keys, as offsets in the tile (none past nq).
					const int rlo = sh.lo[r] - j0, rhi = sh.hi[r] - j0;
					float mt = NEG_INF_F;
#pragma unroll
					for (int c = 0; c < 4; c++) {
						const int j = tx + 16 * c;
						float x = NEG_INF_F;
						if (j >= rlo && j < rhi) x = attnScore(p, s[a][c]);
						s[a][c] = x;
						mt = fmaxf(mt, x);
					}
					const float mn = fmaxf(m[a], attnRowMax(mt));
					// A row that has seen no key yet keeps 0 for its sum
					// and output (exp(−∞ − 0)); −∞ − −∞ would be NaN.
					const float base = mn == NEG_INF_F ? 0.0f : mn;
					const float alpha = expf(m[a] - base);
					float rs = 0.0f;
#pragma unroll
					for (int c = 0; c < 4; c++) {
						const float e = expf(s[a][c] - base);
						sh.p[r][tx + 16 * c] = e;
						rs += e;
					}
					l[a] = l[a] * alpha + attnRowSum(rs);
					m[a] = mn;
#pragma unroll
					for (int e = 0; e < DCH / 16; e++) o[a][e] *= alpha;
				}
				attnAccumulate<4, DCH, ATT_BC + 1>(o, sh.p, vt + j0 * kStride, kStride, nk, d0, D, sh.u.rows);
			}
#pragma unroll
			for (int a = 0; a < 4; a++) {
				const int r = ty * 4 + a;
				if (r >= nq) continue;
				float *orow = out + rt.qOff + (long long)r * qStride;
#pragma unroll
				for (int e = 0; e < DCH / 16; e++) {
					const int col = d0 + tx + 16 * e;
					if (col < D) orow[col] = o[a][e] / l[a];
				}
				if (lse && d0 == 0 && tx == 0) lse[bh * p.queries + i0 + r] = m[a] + logf(l[a]);
			}
		}
	}
}

// attnGradQ is attn_dq: the tiling of attnForward, with dS = P·(dP − δ)·s′
// in place of P and k in place of v.
template <int DCH>
__device__ __forceinline__ void attnGradQ(const AttnParams p, float *dq, const float *q, const float *k, const float *v, const float *dout,
                          const float *lse, const float *delta, const int *seg, AttnRowsShared<DCH> &sh) {
	const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15, D = p.headDim;
	const long long qStride = (long long)p.heads * D, kStride = (long long)p.kvHeads * D;
	for (long long t = blockIdx.x; t < attnRowTileCount(p); t += gridDim.x) {
		const AttnRowTile rt = attnRowTile(p, t);
		const int i0 = rt.i0, nq = rt.nq, b = rt.b;
		const long long bh = rt.bh, qOff = rt.qOff;
		const float *qt = q + qOff, *ot = dout + qOff, *kt = k + rt.kOff, *vt = v + rt.kOff;
		float lr[4], dl[4];
#pragma unroll
		for (int a = 0; a < 4; a++) {
			const int r = ty * 4 + a;
			lr[a] = r < nq ? lse[bh * p.queries + i0 + r] : 0.0f;
			dl[a] = r < nq ? delta[bh * p.queries + i0 + r] : 0.0f;
		}
		int lo, hi;
		attnRowBounds(p, seg, b, i0, nq, sh, &lo, &hi);
		for (int d0 = 0; d0 < D; d0 += DCH) {
			float acc[4][DCH / 16];
#pragma unroll
			for (int a = 0; a < 4; a++)
#pragma unroll
				for (int e = 0; e < DCH / 16; e++) acc[a][e] = 0.0f;
			int cur = 0;
			for (int j0 = lo; j0 < hi; j0 = seg ? attnNextTile<ATT_BC>(sh.lo, sh.hi, nq, j0 + ATT_BC, &cur, hi) : j0 + ATT_BC) {
				const int nk = attnMin(ATT_BC, p.keys - j0);
				float s[4][4], dp[4][4];
				attnDots<4, ATT_BR, ATT_BC>(s, qt, qStride, nq, kt + j0 * kStride, kStride, nk, D, sh.u.dots.a, sh.u.dots.b);
				attnDots<4, ATT_BR, ATT_BC>(dp, ot, qStride, nq, vt + j0 * kStride, kStride, nk, D, sh.u.dots.a, sh.u.dots.b);
#pragma unroll
				for (int a = 0; a < 4; a++) {
					const int r = ty * 4 + a;
					const int rlo = sh.lo[r] - j0, rhi = sh.hi[r] - j0;
#pragma unroll
					for (int c = 0; c < 4; c++) {
						const int j = tx + 16 * c;
						float ds = 0.0f;
						if (j >= rlo && j < rhi) {
							const float x = attnScore(p, s[a][c]);
							ds = expf(x - lr[a]) * (dp[a][c] - dl[a]) * attnScoreGrad(p, x);
						}
						sh.p[r][j] = ds;
					}
				}
				attnAccumulate<4, DCH, ATT_BC + 1>(acc, sh.p, kt + j0 * kStride, kStride, nk, d0, D, sh.u.rows);
			}
#pragma unroll
			for (int a = 0; a < 4; a++) {
				const int r = ty * 4 + a;
				if (r >= nq) continue;
				float *row = dq + qOff + (long long)r * qStride;
#pragma unroll
				for (int e = 0; e < DCH / 16; e++) {
					const int col = d0 + tx + 16 * e;
					if (col < D) row[col] = acc[a][e];
				}
			}
		}
	}
}

// attnGradKV is attn_dkdv: a block per (key tile of ATT_BK, batch element,
// key/value head), blocks striding over them; 2 keys per row group. It
// loops over the group's query heads and the query tiles in which some
// query sees a key of the tile, accumulating dv += Pᵀ·dout and dk += dSᵀ·q
// in registers, and writes every element of its rows of dk and dv (zeros
// for keys no query sees).
template <int DCH>
__device__ __forceinline__ void attnGradKV(const AttnParams p, float *dk, float *dv, const float *q, const float *k, const float *v,
                           const float *dout, const float *lse, const float *delta, const int *seg, AttnColsShared<DCH> &sh) {
	const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15, D = p.headDim;
	const int kTiles = (p.keys + ATT_BK - 1) / ATT_BK;
	const long long kvHeads = (long long)p.batch * p.kvHeads, tiles = kvHeads * kTiles;
	const long long qStride = (long long)p.heads * D, kStride = (long long)p.kvHeads * D;
	for (long long t = blockIdx.x; t < tiles; t += gridDim.x) {
		// The first key tiles first: under a causal mask the most queries see them.
		const int j0 = (int)(t / kvHeads) * ATT_BK, nk = attnMin(ATT_BK, p.keys - j0);
		const long long bg = t % kvHeads;
		const int b = (int)(bg / p.kvHeads), g = (int)(bg % p.kvHeads);
		const long long kOff = ((long long)b * p.keys + j0) * kStride + (long long)g * D;
		const float *kt = k + kOff, *vt = v + kOff;
		// The queries [lo, hi) that see each key, as attnRowBounds does
		// for queries' keys.
		__syncthreads();
		for (int r = tid; r < ATT_BK; r += blockDim.x) {
			if (r < nk) {
				attnKeyQueries(p, seg, b, j0 + r, &sh.lo[r], &sh.hi[r]);
			} else {
				sh.lo[r] = sh.hi[r] = 0;
			}
		}
		__syncthreads();
		int lo, hi;
		if (seg) {
			int cur = 0;
			lo = attnNextTile<ATT_BQ>(sh.lo, sh.hi, nk, 0, &cur, p.queries);
			hi = p.queries;
		} else {
			attnQueries(p, j0, j0 + nk, &lo, &hi);
			lo -= lo % ATT_BQ;
		}
		for (int d0 = 0; d0 < D; d0 += DCH) {
			float gk[2][DCH / 16], gv[2][DCH / 16];
#pragma unroll
			for (int a = 0; a < 2; a++)
#pragma unroll
				for (int e = 0; e < DCH / 16; e++) gk[a][e] = gv[a][e] = 0.0f;
			for (int hh = 0; hh < p.group; hh++) {
				const int h = g * p.group + hh;
				const long long bh = (long long)b * p.heads + h;
				int cur = 0;
				for (int i0 = lo; i0 < hi; i0 = seg ? attnNextTile<ATT_BQ>(sh.lo, sh.hi, nk, i0 + ATT_BQ, &cur, hi) : i0 + ATT_BQ) {
					const int nq = attnMin(ATT_BQ, p.queries - i0);
					const long long qOff = ((long long)b * p.queries + i0) * qStride + (long long)h * D;
					const float *qt = q + qOff, *ot = dout + qOff;
					// The previous tile's reads of lse and delta ended
					// before the barriers of its accumulations; attnDots
					// starts with one before these are read.
					for (int e = tid; e < ATT_BQ; e += blockDim.x) {
						sh.lse[e] = e < nq ? lse[bh * p.queries + i0 + e] : 0.0f;
						sh.delta[e] = e < nq ? delta[bh * p.queries + i0 + e] : 0.0f;
					}
					float s[2][4], dp[2][4];
					attnDots<2, ATT_BK, ATT_BQ>(s, kt, kStride, nk, qt, qStride, nq, D, sh.u.dots.a, sh.u.dots.b);
					attnDots<2, ATT_BK, ATT_BQ>(dp, vt, kStride, nk, ot, qStride, nq, D, sh.u.dots.a, sh.u.dots.b);
#pragma unroll
					for (int a = 0; a < 2; a++) {
						const int r = ty * 2 + a;
						// The key's queries, as offsets in the tile (none past nk).
						const int rlo = sh.lo[r] - i0, rhi = sh.hi[r] - i0;
#pragma unroll
						for (int c = 0; c < 4; c++) {
							const int i = tx + 16 * c;
							float pr = 0.0f, ds = 0.0f;
							if (i >= rlo && i < rhi) {
								const float x = attnScore(p, s[a][c]);
								pr = expf(x - sh.lse[i]);
								ds = pr * (dp[a][c] - sh.delta[i]) * attnScoreGrad(p, x);
							}
							sh.pt[r][i] = pr;
							sh.dst[r][i] = ds;
						}
					}
					attnAccumulate<2, DCH, ATT_BQ + 1>(gv, sh.pt, ot, qStride, nq, d0, D, sh.u.rows);
					attnAccumulate<2, DCH, ATT_BQ + 1>(gk, sh.dst, qt, qStride, nq, d0, D, sh.u.rows);
				}
			}
#pragma unroll
			for (int a = 0; a < 2; a++) {
				const int r = ty * 2 + a;
				if (r >= nk) continue;
				float *krow = dk + kOff + (long long)r * kStride, *vrow = dv + kOff + (long long)r * kStride;
#pragma unroll
				for (int e = 0; e < DCH / 16; e++) {
					const int col = d0 + tx + 16 * e;
					if (col < D) {
						krow[col] = gk[a][e];
						vrow[col] = gv[a][e];
					}
				}
			}
		}
	}
}

// The kernels, one per DCH: attn_fwd_* and attn_dq_* take blocks of
// ATT_NT threads, attn_dkdv_* of ATT_KV_NT. lse may be 0 in attn_fwd, seg
// is 0 without packed sequences.

extern "C" __global__ void attn_fwd_64(AttnParams p, float *out, float *lse, const float *q, const float *k, const float *v,
                                        const int *seg) {
	__shared__ AttnRowsShared<64> sh;
	attnForward<64>(p, out, lse, q, k, v, seg, sh);
}

extern "C" __global__ void attn_fwd_128(AttnParams p, float *out, float *lse, const float *q, const float *k, const float *v,
                                        const int *seg) {
	__shared__ AttnRowsShared<128> sh;
	attnForward<128>(p, out, lse, q, k, v, seg, sh);
}

extern "C" __global__ void attn_fwd_256(AttnParams p, float *out, float *lse, const float *q, const float *k, const float *v,
                                        const int *seg) {
	__shared__ AttnRowsShared<256> sh;
	attnForward<256>(p, out, lse, q, k, v, seg, sh);
}

extern "C" __global__ void attn_dq_64(AttnParams p, float *dq, const float *q, const float *k, const float *v, const float *dout,
                                      const float *lse, const float *delta, const int *seg) {
	__shared__ AttnRowsShared<64> sh;
	attnGradQ<64>(p, dq, q, k, v, dout, lse, delta, seg, sh);
}

extern "C" __global__ void attn_dq_128(AttnParams p, float *dq, const float *q, const float *k, const float *v, const float *dout,
                                       const float *lse, const float *delta, const int *seg) {
	__shared__ AttnRowsShared<128> sh;
	attnGradQ<128>(p, dq, q, k, v, dout, lse, delta, seg, sh);
}

extern "C" __global__ void attn_dq_256(AttnParams p, float *dq, const float *q, const float *k, const float *v, const float *dout,
                                       const float *lse, const float *delta, const int *seg) {
	__shared__ AttnRowsShared<256> sh;
	attnGradQ<256>(p, dq, q, k, v, dout, lse, delta, seg, sh);
}

extern "C" __global__ void attn_dkdv_64(AttnParams p, float *dk, float *dv, const float *q, const float *k, const float *v,
                                        const float *dout, const float *lse, const float *delta, const int *seg) {
	__shared__ AttnColsShared<64> sh;
	attnGradKV<64>(p, dk, dv, q, k, v, dout, lse, delta, seg, sh);
}

extern "C" __global__ void attn_dkdv_128(AttnParams p, float *dk, float *dv, const float *q, const float *k, const float *v,
                                         const float *dout, const float *lse, const float *delta, const int *seg) {
	__shared__ AttnColsShared<128> sh;
	attnGradKV<128>(p, dk, dv, q, k, v, dout, lse, delta, seg, sh);
}

extern "C" __global__ void attn_dkdv_256(AttnParams p, float *dk, float *dv, const float *q, const float *k, const float *v,
                                         const float *dout, const float *lse, const float *delta, const int *seg) {
	__shared__ AttnColsShared<256> sh;
	attnGradKV<256>(p, dk, dv, q, k, v, dout, lse, delta, seg, sh);
}

// attn_delta: delta[b, h, i] = Σ_d dout·out over row (b, i, h) of the
// [batch, queries, heads, D] tensors, summed in double, one warp per row
// (blockDim.x a multiple of 32), warps striding over the rows.
extern "C" __global__ void attn_delta(AttnParams p, float *delta, const float *out, const float *dout) {
	const int lane = threadIdx.x & 31, D = p.headDim;
	const long long rows = (long long)p.batch * p.queries * p.heads;
	const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
	for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
		const float *o = out + r * D, *g = dout + r * D;
		double s = 0.0;
		for (int d = lane; d < D; d += 32) s += (double)o[d] * (double)g[d];
		s = warpSum(s);
		if (lane == 0) {
			const long long bi = r / p.heads, b = bi / p.queries;
			const int h = (int)(r % p.heads), i = (int)(bi % p.queries);
			delta[(b * p.heads + h) * p.queries + i] = (float)s;
		}
	}
}

/*
 * ACL test double: the math operators (libopapi_math.so in the split
 * layout): matrix products, arithmetic, unary math, reductions, copy, fill
 * and flip. Signatures follow CANN's aclnnop/aclnn_*.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "opapi.h"

/* ---------------- elementwise definitions ---------------- */

static double f_add(const double *x, const double *p) { return x[0] + p[0] * x[1]; }
static double f_sub(const double *x, const double *p) { return x[0] - p[0] * x[1]; }
static double f_mul(const double *x, const double *p) { (void)p; return x[0] * x[1]; }
static double f_div(const double *x, const double *p) { (void)p; return x[0] / x[1]; }
/* scalar forms: p[0] = other, p[1] = alpha */
static double f_adds(const double *x, const double *p) { return x[0] + p[1] * p[0]; }
static double f_muls(const double *x, const double *p) { return x[0] * p[0]; }
static double f_copy(const double *x, const double *p) { (void)p; return x[0]; }
static double f_fill(const double *x, const double *p) { (void)x; return p[0]; }
static double f_exp(const double *x, const double *p) { (void)p; return exp(x[0]); }
static double f_log(const double *x, const double *p) { (void)p; return log(x[0]); }
static double f_sqrt(const double *x, const double *p) { (void)p; return sqrt(x[0]); }
static double f_rsqrt(const double *x, const double *p) { (void)p; return 1 / sqrt(x[0]); }
static double f_tanh(const double *x, const double *p) { (void)p; return tanh(x[0]); }
static double f_neg(const double *x, const double *p) { (void)p; return -x[0]; }
static double f_sigmoid(const double *x, const double *p) { (void)p; return 1 / (1 + exp(-x[0])); }

#define UNARY(X, FN)                                                                                               \
    TD_EXPORT aclnnStatus aclnn##X##GetWorkspaceSize(const aclTensor *self, aclTensor *out,                        \
                                                     uint64_t *workspaceSize, aclOpExecutor **executor) {          \
        const aclTensor *in[1] = {self};                                                                           \
        const char *nm[1] = {"self"};                                                                              \
        return ew_prepare("aclnn" #X "GetWorkspaceSize", "aclnn" #X, FN, NULL, NULL, 0, NULL, 0, out, 1, in, nm,  \
                          0, workspaceSize, executor);                                                             \
    }                                                                                                              \
    LAUNCH(X)

UNARY(Exp, f_exp)
UNARY(Log, f_log)
UNARY(Sqrt, f_sqrt)
UNARY(Rsqrt, f_rsqrt)
UNARY(Tanh, f_tanh)
UNARY(Neg, f_neg)
UNARY(Sigmoid, f_sigmoid)

/* out = self + alpha·other (aclnn_add.h); Sub likewise. */
#define BINARY_ALPHA(X, FN)                                                                                        \
    TD_EXPORT aclnnStatus aclnn##X##GetWorkspaceSize(const aclTensor *self, const aclTensor *other,                \
                                                     const aclScalar *alpha, aclTensor *out,                       \
                                                     uint64_t *workspaceSize, aclOpExecutor **executor) {          \
        const aclTensor *in[2] = {self, other};                                                                    \
        const char *nm[2] = {"self", "other"};                                                                     \
        const aclScalar *sc[1] = {alpha};                                                                          \
        const char *scn[1] = {"alpha"};                                                                            \
        return ew_prepare("aclnn" #X "GetWorkspaceSize", "aclnn" #X, FN, sc, scn, 1, NULL, 0, out, 2, in, nm, 1,   \
                          workspaceSize, executor);                                                                \
    }                                                                                                              \
    LAUNCH(X)

BINARY_ALPHA(Add, f_add)
BINARY_ALPHA(Sub, f_sub)

#define BINARY(X, FN)                                                                                              \
    TD_EXPORT aclnnStatus aclnn##X##GetWorkspaceSize(const aclTensor *self, const aclTensor *other, aclTensor *out, \
                                                     uint64_t *workspaceSize, aclOpExecutor **executor) {          \
        const aclTensor *in[2] = {self, other};                                                                    \
        const char *nm[2] = {"self", "other"};                                                                     \
        return ew_prepare("aclnn" #X "GetWorkspaceSize", "aclnn" #X, FN, NULL, NULL, 0, NULL, 0, out, 2, in, nm,  \
                          1, workspaceSize, executor);                                                             \
    }                                                                                                              \
    LAUNCH(X)

BINARY(Mul, f_mul)
BINARY(Div, f_div)

/* out = self + alpha·other for a scalar other (aclnn_add.h). */
TD_EXPORT aclnnStatus aclnnAddsGetWorkspaceSize(const aclTensor *self, const aclScalar *other, const aclScalar *alpha,
                                                aclTensor *out, uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *in[1] = {self};
    const char *nm[1] = {"self"};
    const aclScalar *sc[2] = {other, alpha};
    const char *scn[2] = {"other", "alpha"};
    return ew_prepare("aclnnAddsGetWorkspaceSize", "aclnnAdds", f_adds, sc, scn, 2, NULL, 0, out, 1, in, nm, 1,
                      workspaceSize, executor);
}
LAUNCH(Adds)

TD_EXPORT aclnnStatus aclnnMulsGetWorkspaceSize(const aclTensor *self, const aclScalar *other, aclTensor *out,
                                                uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *in[1] = {self};
    const char *nm[1] = {"self"};
    const aclScalar *sc[1] = {other};
    const char *scn[1] = {"other"};
    return ew_prepare("aclnnMulsGetWorkspaceSize", "aclnnMuls", f_muls, sc, scn, 1, NULL, 0, out, 1, in, nm, 1,
                      workspaceSize, executor);
}
LAUNCH(Muls)

/* In-place forms: selfRef is both the output and the first input. */
TD_EXPORT aclnnStatus aclnnInplaceAddGetWorkspaceSize(const aclTensor *selfRef, const aclTensor *other,
                                                      const aclScalar *alpha, uint64_t *workspaceSize,
                                                      aclOpExecutor **executor) {
    const aclTensor *in[2] = {selfRef, other};
    const char *nm[2] = {"selfRef", "other"};
    const aclScalar *sc[1] = {alpha};
    const char *scn[1] = {"alpha"};
    return ew_prepare("aclnnInplaceAddGetWorkspaceSize", "aclnnInplaceAdd", f_add, sc, scn, 1, NULL, 0, selfRef, 2,
                      in, nm, 1, workspaceSize, executor);
}
LAUNCH(InplaceAdd)

TD_EXPORT aclnnStatus aclnnInplaceAddsGetWorkspaceSize(const aclTensor *selfRef, const aclScalar *other,
                                                       const aclScalar *alpha, uint64_t *workspaceSize,
                                                       aclOpExecutor **executor) {
    const aclTensor *in[1] = {selfRef};
    const char *nm[1] = {"selfRef"};
    const aclScalar *sc[2] = {other, alpha};
    const char *scn[2] = {"other", "alpha"};
    return ew_prepare("aclnnInplaceAddsGetWorkspaceSize", "aclnnInplaceAdds", f_adds, sc, scn, 2, NULL, 0, selfRef,
                      1, in, nm, 1, workspaceSize, executor);
}
LAUNCH(InplaceAdds)

TD_EXPORT aclnnStatus aclnnInplaceMulGetWorkspaceSize(aclTensor *selfRef, const aclTensor *other,
                                                      uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *in[2] = {selfRef, other};
    const char *nm[2] = {"selfRef", "other"};
    return ew_prepare("aclnnInplaceMulGetWorkspaceSize", "aclnnInplaceMul", f_mul, NULL, NULL, 0, NULL, 0, selfRef, 2,
                      in, nm, 1, workspaceSize, executor);
}
LAUNCH(InplaceMul)

TD_EXPORT aclnnStatus aclnnInplaceMulsGetWorkspaceSize(aclTensor *selfRef, const aclScalar *other,
                                                       uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *in[1] = {selfRef};
    const char *nm[1] = {"selfRef"};
    const aclScalar *sc[1] = {other};
    const char *scn[1] = {"other"};
    return ew_prepare("aclnnInplaceMulsGetWorkspaceSize", "aclnnInplaceMuls", f_muls, sc, scn, 1, NULL, 0, selfRef, 1,
                      in, nm, 1, workspaceSize, executor);
}
LAUNCH(InplaceMuls)

/* selfRef = src, src broadcast to selfRef's shape (aclnn_copy.h). */
TD_EXPORT aclnnStatus aclnnInplaceCopyGetWorkspaceSize(aclTensor *selfRef, const aclTensor *src,
                                                       uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *in[1] = {src};
    const char *nm[1] = {"src"};
    return ew_prepare("aclnnInplaceCopyGetWorkspaceSize", "aclnnInplaceCopy", f_copy, NULL, NULL, 0, NULL, 0, selfRef,
                      1, in, nm, 2, workspaceSize, executor);
}
LAUNCH(InplaceCopy)

TD_EXPORT aclnnStatus aclnnInplaceFillScalarGetWorkspaceSize(aclTensor *selfRef, const aclScalar *value,
                                                             uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclScalar *sc[1] = {value};
    const char *scn[1] = {"value"};
    return ew_prepare("aclnnInplaceFillScalarGetWorkspaceSize", "aclnnInplaceFillScalar", f_fill, sc, scn, 1, NULL, 0,
                      selfRef, 0, NULL, NULL, 1, workspaceSize, executor);
}
LAUNCH(InplaceFillScalar)

/* selfRef[i] = value where mask (ACL_BOOL, broadcast to selfRef) is true
 * (aclnn_masked_fill_scalar.h); elsewhere selfRef is left alone, NaN and
 * infinities included. */
static int run_masked_fill(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *s = &e->t[0], *m = &e->t[1];
    int64_t n = v_numel(s), idx[TD_MAXDIM];
    for (int64_t l = 0; l < n; l++) {
        unravel(l, s->dims, s->ndim, idx);
        if (((const bool *)m->data)[v_off_bc(m, idx, s->ndim)]) v_set(s, v_off(s, idx), e->f[0]);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnInplaceMaskedFillScalarGetWorkspaceSize(aclTensor *selfRef, const aclTensor *mask,
                                                                   const aclScalar *value, uint64_t *workspaceSize,
                                                                   aclOpExecutor **executor) {
    const char *call = "aclnnInplaceMaskedFillScalarGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnInplaceMaskedFillScalar");
    TRY(ex_tensor(e, call, "selfRef", selfRef, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "mask", mask, T_REQ, DT_MASK));
    TRY(ex_scalar(call, "value", value, &e->f[0]));
    if (!can_broadcast(&e->t[1], &e->t[0])) {
        char a[128], b[128];
        shape_str(&e->t[1], a, sizeof a);
        shape_str(&e->t[0], b, sizeof b);
        BAD("%s: mask %s does not broadcast to selfRef %s", call, a, b);
    }
    TRY(check_no_alias(e, call, 0, 0, 1, 1));
    e->run = run_masked_fill;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(InplaceMaskedFillScalar)

/* ---------------- matrix products ---------------- */

/* round_mantissa rounds x to bits explicit mantissa bits, to nearest even:
 * the reduced-precision cube modes. HFLOAT32 is assumed to keep 11 bits
 * and float32's exponent range (not verified against hardware). */
static double round_mantissa(float x, int bits) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return x;
    int drop = 23 - bits;
    uint32_t lsb = (u >> drop) & 1u;
    u += (1u << (drop - 1)) - 1u + lsb;
    u &= ~((1u << drop) - 1u);
    memcpy(&x, &u, 4);
    return x;
}

/* round_fp16 rounds x to the nearest FLOAT16 value (ties to even):
 * magnitudes from 65520 up overflow to infinity, and below 2^-14 only
 * multiples of 2^-24 (the subnormals) remain. */
static double round_fp16(float x) {
    if (isnan(x) || isinf(x)) return x;
    double a = fabs((double)x);
    if (a >= 65520.0) return copysign(INFINITY, x);
    if (a < 0x1p-14) return copysign(nearbyint(a * 0x1p24) * 0x1p-24, x);
    return round_mantissa(x, 10);
}

/* Input rounding of the cube modes, chosen at phase one: e->i[1]. */
enum { CUBE_FLOAT32, CUBE_HF32, CUBE_FP16 };

static double cube_round(float x, int how) {
    switch (how) {
    case CUBE_HF32: return round_mantissa(x, 11);
    case CUBE_FP16: return round_fp16(x);
    }
    return x;
}

/* batch_base returns the offset of the matrix of v at batch index bidx
 * (nb batch axes of the output; v's batch axes align to the right). */
static int64_t batch_base(const td_view *v, const int64_t *bidx, int nb) {
    int64_t off = v->offset;
    int vb = v->ndim - 2, shift = nb - vb;
    for (int i = 0; i < vb; i++)
        if (v->dims[i] != 1) off += bidx[i + shift] * v->strides[i];
    return off;
}

static int run_mm(aclOpExecutor *e, char *ws) {
    const td_view *a = &e->t[0], *b = &e->t[1], *o = &e->t[2];
    int how = (int)e->i[1];
    int nd = o->ndim, nb = nd - 2;
    int64_t M = o->dims[nd - 2], N = o->dims[nd - 1], K = a->dims[a->ndim - 1];
    int64_t B = 1, bidx[TD_MAXDIM];
    for (int i = 0; i < nb; i++) B *= o->dims[i];
    const int64_t as0 = a->strides[a->ndim - 2], as1 = a->strides[a->ndim - 1];
    const int64_t bs0 = b->strides[b->ndim - 2], bs1 = b->strides[b->ndim - 1];
    const int64_t os0 = o->strides[nd - 2], os1 = o->strides[nd - 1];
    double *acc = (double *)ws; /* one output row of accumulators */
    for (int64_t bl = 0; bl < B; bl++) {
        unravel(bl, o->dims, nb, bidx);
        int64_t ab = batch_base(a, bidx, nb), bb = batch_base(b, bidx, nb), ob = batch_base(o, bidx, nb);
        for (int64_t i = 0; i < M; i++) {
            for (int64_t j = 0; j < N; j++) acc[j] = 0;
            for (int64_t k = 0; k < K; k++) {
                float av = ((const float *)a->data)[ab + i * as0 + k * as1];
                double ar = cube_round(av, how);
                const float *brow = (const float *)b->data + bb + k * bs0;
                for (int64_t j = 0; j < N; j++) acc[j] += ar * cube_round(brow[j * bs1], how);
            }
            for (int64_t j = 0; j < N; j++) ((float *)o->data)[ob + i * os0 + j * os1] = (float)acc[j];
        }
    }
    return 0;
}

/* mm_prepare validates a matrix product. kind: 0 Mm (2-D only), 1
 * BatchMatMul (3-D, equal batches), 2 Matmul (2..6-D, broadcast batches). */
static aclnnStatus mm_prepare(const char *call, const char *name, int kind, const aclTensor *self,
                              const aclTensor *mat2, aclTensor *out, int8_t cubeMathType, uint64_t *workspaceSize,
                              aclOpExecutor **executor) {
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new(name);
    TRY(ex_tensor(e, call, "self", self, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "mat2", mat2, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    {
        const td_view *a = &e->t[0], *b = &e->t[1], *o = &e->t[2];
        char sa[128], sb[128], so[128];
        shape_str(a, sa, sizeof sa);
        shape_str(b, sb, sizeof sb);
        shape_str(o, so, sizeof so);
        if (cubeMathType < 0 || cubeMathType > 3)
            BAD("%s: cubeMathType %d is not one of 0 (KEEP_DTYPE), 1 (ALLOW_FP32_DOWN_PRECISION), 2 (USE_FP16), 3 "
                "(USE_HF32) for float32 inputs",
                call, cubeMathType);
        /* CANN's aclnnMm: the Atlas training and inference series have no
         * float32 or HFLOAT32 cube mode; 0 and 3 with FLOAT inputs report
         * an error there, and 1 computes in FLOAT16. */
        if (acltd_soc_float16_cube() && (cubeMathType == 0 || cubeMathType == 3))
            BAD("%s: cubeMathType %d (%s) with FLOAT inputs is not supported on %s (Atlas training and inference "
                "series); use 1 (ALLOW_FP32_DOWN_PRECISION) or 2 (USE_FP16)",
                call, cubeMathType, cubeMathType == 0 ? "KEEP_DTYPE" : "USE_HF32", acltd_soc_name());
        if (kind == 0 && (a->ndim != 2 || b->ndim != 2 || o->ndim != 2))
            BAD("%s: self %s, mat2 %s and out %s must be 2-D", call, sa, sb, so);
        if (kind == 1 && (a->ndim != 3 || b->ndim != 3 || o->ndim != 3))
            BAD("%s: self %s, mat2 %s and out %s must be 3-D", call, sa, sb, so);
        if (a->ndim < 2 || b->ndim < 2 || a->ndim > 6 || b->ndim > 6)
            BAD("%s: self %s and mat2 %s need 2 to 6 dimensions in the test double", call, sa, sb);
        int64_t m = a->dims[a->ndim - 2], k = a->dims[a->ndim - 1];
        int64_t k2 = b->dims[b->ndim - 2], n = b->dims[b->ndim - 1];
        if (k != k2) BAD("%s: reduce dimensions of self %s and mat2 %s differ", call, sa, sb);
        td_view ab = *a, bbv = *b;
        ab.ndim -= 2;
        bbv.ndim -= 2;
        int64_t bd[TD_MAXDIM];
        int nbd;
        if (kind == 1 && a->dims[0] != b->dims[0])
            BAD("%s: batch sizes of self %s and mat2 %s differ", call, sa, sb);
        if (!broadcast_shape(&ab, &bbv, bd, &nbd)) BAD("%s: batch dimensions of self %s and mat2 %s do not broadcast", call, sa, sb);
        int ok = o->ndim == nbd + 2 && o->dims[o->ndim - 2] == m && o->dims[o->ndim - 1] == n;
        for (int i = 0; ok && i < nbd; i++) ok = o->dims[i] == bd[i];
        if (!ok) BAD("%s: out %s does not match self %s @ mat2 %s", call, so, sa, sb);
    }
    TRY(check_no_alias(e, call, 2, 2, 0, 1));
    e->i[0] = cubeMathType;
    e->i[1] = cubeMathType == 2 || (cubeMathType == 1 && acltd_soc_float16_cube()) ? CUBE_FP16
              : cubeMathType == 0                                                  ? CUBE_FLOAT32
                                                                                   : CUBE_HF32;
    e->run = run_mm;
    TRY(ex_finish(e, call, (uint64_t)(e->t[2].dims[e->t[2].ndim - 1] + 8) * 8, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}

TD_EXPORT aclnnStatus aclnnMmGetWorkspaceSize(const aclTensor *self, const aclTensor *mat2, aclTensor *out,
                                              int8_t cubeMathType, uint64_t *workspaceSize,
                                              aclOpExecutor **executor) {
    return mm_prepare("aclnnMmGetWorkspaceSize", "aclnnMm", 0, self, mat2, out, cubeMathType, workspaceSize,
                      executor);
}
LAUNCH(Mm)

TD_EXPORT aclnnStatus aclnnBatchMatMulGetWorkspaceSize(const aclTensor *self, const aclTensor *mat2, aclTensor *out,
                                                       int8_t cubeMathType, uint64_t *workspaceSize,
                                                       aclOpExecutor **executor) {
    return mm_prepare("aclnnBatchMatMulGetWorkspaceSize", "aclnnBatchMatMul", 1, self, mat2, out, cubeMathType,
                      workspaceSize, executor);
}
LAUNCH(BatchMatMul)

TD_EXPORT aclnnStatus aclnnMatmulGetWorkspaceSize(const aclTensor *self, const aclTensor *mat2, aclTensor *out,
                                                  int8_t cubeMathType, uint64_t *workspaceSize,
                                                  aclOpExecutor **executor) {
    return mm_prepare("aclnnMatmulGetWorkspaceSize", "aclnnMatmul", 2, self, mat2, out, cubeMathType, workspaceSize,
                      executor);
}
LAUNCH(Matmul)

/* ---------------- reductions ---------------- */

/* run_reduce: e->i[0] is the bit mask of reduced axes, e->i[1] keepDims,
 * e->i[2] 0 for sum and 1 for max. Accumulators live in the workspace. */
static int run_reduce(aclOpExecutor *e, char *ws) {
    const td_view *x = &e->t[0], *o = &e->t[1];
    int64_t mask = e->i[0], keep = e->i[1], isMax = e->i[2];
    int64_t no = v_numel(o), nx = v_numel(x), idx[TD_MAXDIM], oidx[TD_MAXDIM];
    double *acc = (double *)ws;
    for (int64_t j = 0; j < no; j++) acc[j] = isMax ? -INFINITY : 0;
    for (int64_t lin = 0; lin < nx; lin++) {
        unravel(lin, x->dims, x->ndim, idx);
        int k = 0;
        for (int d = 0; d < x->ndim; d++) {
            if (mask >> d & 1) {
                if (keep) oidx[k++] = 0;
            } else
                oidx[k++] = idx[d];
        }
        int64_t ol = 0;
        for (int d = 0; d < o->ndim; d++) ol = ol * o->dims[d] + oidx[d];
        double v = v_get(x, v_off(x, idx));
        if (!isMax)
            acc[ol] += v;
        else if (!isnan(acc[ol]) && (isnan(v) || v > acc[ol]))
            acc[ol] = v; /* NaN propagates, as torch.amax does */
    }
    for (int64_t j = 0; j < no; j++) {
        unravel(j, o->dims, o->ndim, oidx);
        v_set(o, v_off(o, oidx), acc[j]);
    }
    return 0;
}

static aclnnStatus reduce_prepare(const char *call, const char *name, int isMax, const aclTensor *self,
                                  const aclIntArray *dims, bool keepDims, aclTensor *out, uint64_t *workspaceSize,
                                  aclOpExecutor **executor) {
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new(name);
    int64_t dv[TD_MAXDIM];
    int nd = 0;
    TRY(ex_tensor(e, call, "self", self, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    TRY(ex_intarray(call, "dims", dims, dv, &nd));
    {
        const td_view *x = &e->t[0], *o = &e->t[1];
        int64_t mask = 0;
        if (nd == 0) mask = (1 << x->ndim) - 1;
        for (int i = 0; i < nd; i++) {
            int d;
            TRY(normalize_dim(call, dv[i], x->ndim, &d));
            if (mask >> d & 1) BAD("%s: dim %d listed twice", call, d);
            mask |= (int64_t)1 << d;
        }
        td_view want = *o;
        int k = 0;
        for (int d = 0; d < x->ndim; d++) {
            if (mask >> d & 1) {
                if (keepDims) want.dims[k++] = 1;
            } else
                want.dims[k++] = x->dims[d];
        }
        want.ndim = k;
        if (!same_shape(&want, o)) {
            char a[128], b[128];
            shape_str(&want, a, sizeof a);
            shape_str(o, b, sizeof b);
            BAD("%s: out has shape %s, want %s", call, b, a);
        }
        if (isMax) {
            for (int d = 0; d < x->ndim; d++)
                if ((mask >> d & 1) && x->dims[d] == 0) BAD("%s: cannot take the max over an empty dimension", call);
        }
        e->i[0] = mask;
    }
    TRY(check_no_alias(e, call, 1, 1, 0, 0));
    e->i[1] = keepDims;
    e->i[2] = isMax;
    e->run = run_reduce;
    TRY(ex_finish(e, call, (uint64_t)(v_numel(&e->t[1]) + 1) * 8, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}

TD_EXPORT aclnnStatus aclnnReduceSumGetWorkspaceSize(const aclTensor *self, const aclIntArray *dims, bool keepDims,
                                                     aclDataType dtype, aclTensor *out, uint64_t *workspaceSize,
                                                     aclOpExecutor **executor) {
    if (dtype != ACL_FLOAT) {
        int st = acltd_enter("aclnnReduceSumGetWorkspaceSize");
        if (st) return st;
        acltd_set_error("aclnnReduceSumGetWorkspaceSize: dtype %d; the test double implements ACL_FLOAT only", dtype);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return reduce_prepare("aclnnReduceSumGetWorkspaceSize", "aclnnReduceSum", 0, self, dims, keepDims, out,
                          workspaceSize, executor);
}
LAUNCH(ReduceSum)

TD_EXPORT aclnnStatus aclnnAmaxGetWorkspaceSize(const aclTensor *self, const aclIntArray *dim, bool keepDim,
                                                aclTensor *out, uint64_t *workspaceSize, aclOpExecutor **executor) {
    return reduce_prepare("aclnnAmaxGetWorkspaceSize", "aclnnAmax", 1, self, dim, keepDim, out, workspaceSize,
                          executor);
}
LAUNCH(Amax)

/* ---------------- flip ---------------- */

static int run_flip(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *x = &e->t[0], *o = &e->t[1];
    int64_t n = v_numel(o), idx[TD_MAXDIM], sidx[TD_MAXDIM];
    for (int64_t lin = 0; lin < n; lin++) {
        unravel(lin, o->dims, o->ndim, idx);
        for (int d = 0; d < o->ndim; d++) sidx[d] = (e->i[0] >> d & 1) ? o->dims[d] - 1 - idx[d] : idx[d];
        v_set(o, v_off(o, idx), v_get(x, v_off(x, sidx)));
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnFlipGetWorkspaceSize(const aclTensor *self, const aclIntArray *dims, aclTensor *out,
                                                uint64_t *workspaceSize, aclOpExecutor **executor) {
    const char *call = "aclnnFlipGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnFlip");
    int64_t dv[TD_MAXDIM];
    int nd = 0;
    TRY(ex_tensor(e, call, "self", self, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    TRY(ex_intarray(call, "dims", dims, dv, &nd));
    if (!same_shape(&e->t[0], &e->t[1])) BAD("%s: self and out shapes differ", call);
    for (int i = 0; i < nd; i++) {
        int d;
        TRY(normalize_dim(call, dv[i], e->t[0].ndim, &d));
        e->i[0] |= (int64_t)1 << d;
    }
    TRY(check_no_alias(e, call, 1, 1, 0, 0));
    e->run = run_flip;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(Flip)

/*
 * ACL test double: the neural-network operators (libopapi_nn.so in the
 * split layout): activations and their backwards, softmax, layer norm,
 * embedding and index operators. Signatures follow CANN's
 * aclnnop/aclnn_*.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opapi.h"

/* ---------------- activations ---------------- */

static double sigm(double x) { return 1 / (1 + exp(-x)); }
static const double kInvSqrt2 = 0.70710678118654752440;
static const double kInvSqrt2Pi = 0.39894228040143267794;
static const double kSqrt2OverPi = 0.79788456080286535588;

static double f_silu(const double *x, const double *p) { (void)p; return x[0] * sigm(x[0]); }
static double f_relu(const double *x, const double *p) { (void)p; return x[0] > 0 ? x[0] : 0; }
/* p[0]: approximate (0 none, 1 tanh) */
static double f_gelu(const double *x, const double *p) {
    double v = x[0];
    if (p[0] == 1) return 0.5 * v * (1 + tanh(kSqrt2OverPi * (v + 0.044715 * v * v * v)));
    return 0.5 * v * (1 + erf(v * kInvSqrt2));
}
/* backwards: x[0] = gradOutput, x[1] = self or output */
static double f_silu_bw(const double *x, const double *p) {
    (void)p;
    double s = sigm(x[1]);
    return x[0] * s * (1 + x[1] * (1 - s));
}
static double f_gelu_bw(const double *x, const double *p) {
    double v = x[1];
    if (p[0] == 1) {
        double u = kSqrt2OverPi * (v + 0.044715 * v * v * v), t = tanh(u);
        double du = kSqrt2OverPi * (1 + 3 * 0.044715 * v * v);
        return x[0] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du);
    }
    return x[0] * (0.5 * (1 + erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * exp(-0.5 * v * v));
}
static double f_tanh_bw(const double *x, const double *p) { (void)p; return x[0] * (1 - x[1] * x[1]); }
static double f_sigmoid_bw(const double *x, const double *p) { (void)p; return x[0] * x[1] * (1 - x[1]); }
/* p[0]: threshold */
static double f_threshold_bw(const double *x, const double *p) { return x[1] > p[0] ? x[0] : 0; }

TD_EXPORT aclnnStatus aclnnSiluGetWorkspaceSize(const aclTensor *self, aclTensor *out, uint64_t *workspaceSize,
                                                aclOpExecutor **executor) {
    const aclTensor *in[1] = {self};
    const char *nm[1] = {"self"};
    return ew_prepare("aclnnSiluGetWorkspaceSize", "aclnnSilu", f_silu, NULL, NULL, 0, NULL, 0, out, 1, in, nm, 0,
                      workspaceSize, executor);
}
LAUNCH(Silu)

TD_EXPORT aclnnStatus aclnnReluGetWorkspaceSize(const aclTensor *self, const aclTensor *out, uint64_t *workspaceSize,
                                                aclOpExecutor **executor) {
    const aclTensor *in[1] = {self};
    const char *nm[1] = {"self"};
    return ew_prepare("aclnnReluGetWorkspaceSize", "aclnnRelu", f_relu, NULL, NULL, 0, NULL, 0, out, 1, in, nm, 0,
                      workspaceSize, executor);
}
LAUNCH(Relu)

/* aclnnGeluV2: approximate 0 is the exact x·Φ(x), 1 the tanh form. */
TD_EXPORT aclnnStatus aclnnGeluV2GetWorkspaceSize(const aclTensor *x, int64_t approximate, aclTensor *y,
                                                  uint64_t *workspaceSize, aclOpExecutor **executor) {
    if (approximate != 0 && approximate != 1) {
        int st = acltd_enter("aclnnGeluV2GetWorkspaceSize");
        if (st) return st;
        acltd_set_error("aclnnGeluV2GetWorkspaceSize: approximate %lld is not 0 (none) or 1 (tanh)",
                        (long long)approximate);
        return ACLNN_ERR_PARAM_INVALID;
    }
    const aclTensor *in[1] = {x};
    const char *nm[1] = {"x"};
    double p[1] = {(double)approximate};
    return ew_prepare("aclnnGeluV2GetWorkspaceSize", "aclnnGeluV2", f_gelu, NULL, NULL, 0, p, 1, y, 1, in, nm, 0,
                      workspaceSize, executor);
}
LAUNCH(GeluV2)

TD_EXPORT aclnnStatus aclnnSiluBackwardGetWorkspaceSize(const aclTensor *gradOutput, const aclTensor *self,
                                                        aclTensor *gradInput, uint64_t *workspaceSize,
                                                        aclOpExecutor **executor) {
    const aclTensor *in[2] = {gradOutput, self};
    const char *nm[2] = {"gradOutput", "self"};
    return ew_prepare("aclnnSiluBackwardGetWorkspaceSize", "aclnnSiluBackward", f_silu_bw, NULL, NULL, 0, NULL, 0,
                      gradInput, 2, in, nm, 0, workspaceSize, executor);
}
LAUNCH(SiluBackward)

/* aclnnGeluBackwardV2: approximate is the string "none" or "tanh". */
TD_EXPORT aclnnStatus aclnnGeluBackwardV2GetWorkspaceSize(const aclTensor *gradOutput, const aclTensor *self,
                                                          char *approximate, aclTensor *gradInput,
                                                          uint64_t *workspaceSize, aclOpExecutor **executor) {
    double p[1];
    if (approximate && strcmp(approximate, "tanh") == 0)
        p[0] = 1;
    else if (approximate && strcmp(approximate, "none") == 0)
        p[0] = 0;
    else {
        int st = acltd_enter("aclnnGeluBackwardV2GetWorkspaceSize");
        if (st) return st;
        acltd_set_error("aclnnGeluBackwardV2GetWorkspaceSize: approximate %s is not \"none\" or \"tanh\"",
                        approximate ? approximate : "(NULL)");
        return ACLNN_ERR_PARAM_INVALID;
    }
    const aclTensor *in[2] = {gradOutput, self};
    const char *nm[2] = {"gradOutput", "self"};
    return ew_prepare("aclnnGeluBackwardV2GetWorkspaceSize", "aclnnGeluBackwardV2", f_gelu_bw, NULL, NULL, 0, p, 1,
                      gradInput, 2, in, nm, 0, workspaceSize, executor);
}
LAUNCH(GeluBackwardV2)

TD_EXPORT aclnnStatus aclnnTanhBackwardGetWorkspaceSize(const aclTensor *gradOutput, const aclTensor *output,
                                                        aclTensor *gradInput, uint64_t *workspaceSize,
                                                        aclOpExecutor **executor) {
    const aclTensor *in[2] = {gradOutput, output};
    const char *nm[2] = {"gradOutput", "output"};
    return ew_prepare("aclnnTanhBackwardGetWorkspaceSize", "aclnnTanhBackward", f_tanh_bw, NULL, NULL, 0, NULL, 0,
                      gradInput, 2, in, nm, 0, workspaceSize, executor);
}
LAUNCH(TanhBackward)

TD_EXPORT aclnnStatus aclnnSigmoidBackwardGetWorkspaceSize(const aclTensor *gradOutput, const aclTensor *output,
                                                           aclTensor *gradInput, uint64_t *workspaceSize,
                                                           aclOpExecutor **executor) {
    const aclTensor *in[2] = {gradOutput, output};
    const char *nm[2] = {"gradOutput", "output"};
    return ew_prepare("aclnnSigmoidBackwardGetWorkspaceSize", "aclnnSigmoidBackward", f_sigmoid_bw, NULL, NULL, 0,
                      NULL, 0, gradInput, 2, in, nm, 0, workspaceSize, executor);
}
LAUNCH(SigmoidBackward)

/* out = gradOutput where self > threshold, else 0 (ReLU's backward). */
TD_EXPORT aclnnStatus aclnnThresholdBackwardGetWorkspaceSize(const aclTensor *gradOutput, const aclTensor *self,
                                                             const aclScalar *threshold, aclTensor *out,
                                                             uint64_t *workspaceSize, aclOpExecutor **executor) {
    const aclTensor *in[2] = {gradOutput, self};
    const char *nm[2] = {"gradOutput", "self"};
    const aclScalar *sc[1] = {threshold};
    const char *scn[1] = {"threshold"};
    return ew_prepare("aclnnThresholdBackwardGetWorkspaceSize", "aclnnThresholdBackward", f_threshold_bw, sc, scn, 1,
                      NULL, 0, out, 2, in, nm, 0, workspaceSize, executor);
}
LAUNCH(ThresholdBackward)

/* ---------------- softmax family ---------------- */

/* Rows along axis e->i[0]; e->i[1]: 0 softmax, 1 log-softmax, 2 softmax
 * backward. Slots: softmax/log-softmax (self, out); backward (gradOutput,
 * output, out). The workspace holds one row. */
static int run_softmax(aclOpExecutor *e, char *ws) {
    int axis = (int)e->i[0], mode = (int)e->i[1];
    const td_view *x = &e->t[0];
    const td_view *o = mode == 2 ? &e->t[2] : &e->t[1];
    int64_t odims[TD_MAXDIM], idx[TD_MAXDIM];
    memcpy(odims, x->dims, sizeof odims);
    int64_t L = x->dims[axis];
    odims[axis] = 1;
    int64_t R = 1;
    for (int d = 0; d < x->ndim; d++) R *= odims[d];
    double *row = (double *)ws;
    for (int64_t r = 0; r < R; r++) {
        unravel(r, odims, x->ndim, idx);
        if (mode == 2) {
            const td_view *y = &e->t[1];
            double s = 0;
            for (int64_t k = 0; k < L; k++) {
                idx[axis] = k;
                double g = v_get(x, v_off(x, idx)), yy = v_get(y, v_off(y, idx));
                row[k] = yy;
                s += g * yy;
            }
            for (int64_t k = 0; k < L; k++) {
                idx[axis] = k;
                double g = v_get(x, v_off(x, idx));
                v_set(o, v_off(o, idx), row[k] * (g - s));
            }
            continue;
        }
        double mx = -INFINITY;
        for (int64_t k = 0; k < L; k++) {
            idx[axis] = k;
            row[k] = v_get(x, v_off(x, idx));
            if (row[k] > mx || isnan(row[k])) mx = row[k];
        }
        double s = 0;
        for (int64_t k = 0; k < L; k++) s += exp(row[k] - mx);
        for (int64_t k = 0; k < L; k++) {
            idx[axis] = k;
            double v = mode == 1 ? row[k] - mx - log(s) : exp(row[k] - mx) / s;
            v_set(o, v_off(o, idx), v);
        }
    }
    return 0;
}

static aclnnStatus softmax_prepare(const char *call, const char *name, int mode, const aclTensor *a,
                                   const aclTensor *b, int64_t dim, aclTensor *out, uint64_t *workspaceSize,
                                   aclOpExecutor **executor) {
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new(name);
    int nin = mode == 2 ? 2 : 1;
    TRY(ex_tensor(e, call, mode == 2 ? "gradOutput" : "self", a, T_REQ, DT_FLOAT));
    if (mode == 2) TRY(ex_tensor(e, call, "output", b, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    for (int k = 1; k <= nin; k++)
        if (!same_shape(&e->t[0], &e->t[k])) BAD("%s: %s and %s shapes differ", call, e->tname[0], e->tname[k]);
    {
        int d;
        TRY(normalize_dim(call, dim, e->t[0].ndim, &d));
        e->i[0] = d;
    }
    TRY(check_no_alias(e, call, nin, nin, 0, nin - 1));
    e->i[1] = mode;
    e->run = run_softmax;
    TRY(ex_finish(e, call, (uint64_t)(e->t[0].dims[e->i[0]] + 1) * 8, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}

TD_EXPORT aclnnStatus aclnnSoftmaxGetWorkspaceSize(const aclTensor *self, int64_t dim, aclTensor *out,
                                                   uint64_t *workspaceSize, aclOpExecutor **executor) {
    return softmax_prepare("aclnnSoftmaxGetWorkspaceSize", "aclnnSoftmax", 0, self, NULL, dim, out, workspaceSize,
                           executor);
}
LAUNCH(Softmax)

TD_EXPORT aclnnStatus aclnnLogSoftmaxGetWorkspaceSize(const aclTensor *self, int64_t dim, aclTensor *out,
                                                      uint64_t *workspaceSize, aclOpExecutor **executor) {
    return softmax_prepare("aclnnLogSoftmaxGetWorkspaceSize", "aclnnLogSoftmax", 1, self, NULL, dim, out,
                           workspaceSize, executor);
}
LAUNCH(LogSoftmax)

TD_EXPORT aclnnStatus aclnnSoftmaxBackwardGetWorkspaceSize(const aclTensor *gradOutput, const aclTensor *output,
                                                           int64_t dim, aclTensor *out, uint64_t *workspaceSize,
                                                           aclOpExecutor **executor) {
    return softmax_prepare("aclnnSoftmaxBackwardGetWorkspaceSize", "aclnnSoftmaxBackward", 2, gradOutput, output, dim,
                           out, workspaceSize, executor);
}
LAUNCH(SoftmaxBackward)

/* ---------------- layer norm ---------------- */

/* check_stat_shape: a per-row statistic (mean, rstd) has x's rank, x's
 * leading extents and 1 on the k normalised axes. */
static int check_stat_shape(const char *call, const char *arg, const td_view *s, const td_view *x, int k) {
    int ok = s->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++) ok = s->dims[d] == (d < x->ndim - k ? x->dims[d] : 1);
    if (!ok) {
        char a[128], b[128];
        shape_str(s, a, sizeof a);
        shape_str(x, b, sizeof b);
        acltd_set_error("%s: %s has shape %s; want the leading dims of %s and 1 on the %d normalised ones", call, arg,
                        a, b, k);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

/* check_param_shape: weight and bias have exactly the normalised shape. */
static int check_param_shape(const char *call, const char *arg, const td_view *p, const td_view *x, int k) {
    int ok = p->ndim == k;
    for (int d = 0; ok && d < k; d++) ok = p->dims[d] == x->dims[x->ndim - k + d];
    if (!ok) {
        acltd_set_error("%s: %s does not have the normalised shape", call, arg);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

static int norm_axes(const char *call, const aclIntArray *ns, const td_view *x, int *k) {
    int64_t v[TD_MAXDIM];
    int n;
    int st = ex_intarray(call, "normalizedShape", ns, v, &n);
    if (st) return st;
    if (n < 1 || n > x->ndim) {
        acltd_set_error("%s: normalizedShape has %d entries for an input of rank %d", call, n, x->ndim);
        return ACLNN_ERR_PARAM_INVALID;
    }
    for (int i = 0; i < n; i++) {
        if (v[i] != x->dims[x->ndim - n + i]) {
            acltd_set_error("%s: normalizedShape does not match the trailing dims of the input", call);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    *k = n;
    return 0;
}

/* Slots: 0 input, 1 weight, 2 bias, 3 out, 4 mean, 5 rstd; e->i[0] = k,
 * e->f[0] = eps. */
static int run_layernorm(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *x = &e->t[0], *w = &e->t[1], *b = &e->t[2], *o = &e->t[3], *mo = &e->t[4], *ro = &e->t[5];
    int k = (int)e->i[0], nd = x->ndim;
    int64_t N = 1, idx[TD_MAXDIM];
    for (int d = nd - k; d < nd; d++) N *= x->dims[d];
    int64_t R = N ? v_numel(x) / N : 0;
    for (int64_t r = 0; r < R; r++) {
        double mean = 0, var = 0;
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            mean += v_get(x, v_off(x, idx));
        }
        mean /= N;
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double c = v_get(x, v_off(x, idx)) - mean;
            var += c * c;
        }
        var /= N;
        double rstd = 1 / sqrt(var + e->f[0]);
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double y = (v_get(x, v_off(x, idx)) - mean) * rstd;
            if (e->has[1]) y *= v_get(w, v_off_bc(w, idx, nd));
            if (e->has[2]) y += v_get(b, v_off_bc(b, idx, nd));
            v_set(o, v_off(o, idx), y);
        }
        unravel(r * N, x->dims, nd, idx);
        if (e->has[4]) v_set(mo, v_off_bc(mo, idx, nd), mean);
        if (e->has[5]) v_set(ro, v_off_bc(ro, idx, nd), rstd);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnLayerNormGetWorkspaceSize(const aclTensor *input, const aclIntArray *normalizedShape,
                                                     const aclTensor *weightOptional, const aclTensor *biasOptional,
                                                     double eps, aclTensor *out, aclTensor *meanOutOptional,
                                                     aclTensor *rstdOutOptional, uint64_t *workspaceSize,
                                                     aclOpExecutor **executor) {
    const char *call = "aclnnLayerNormGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnLayerNorm");
    int k;
    TRY(ex_tensor(e, call, "input", input, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "weightOptional", weightOptional, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "biasOptional", biasOptional, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "meanOutOptional", meanOutOptional, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "rstdOutOptional", rstdOutOptional, T_OPT, DT_FLOAT));
    TRY(norm_axes(call, normalizedShape, &e->t[0], &k));
    if (e->has[1]) TRY(check_param_shape(call, "weightOptional", &e->t[1], &e->t[0], k));
    if (e->has[2]) TRY(check_param_shape(call, "biasOptional", &e->t[2], &e->t[0], k));
    if (!same_shape(&e->t[0], &e->t[3])) BAD("%s: out and input shapes differ", call);
    if (e->has[4]) TRY(check_stat_shape(call, "meanOutOptional", &e->t[4], &e->t[0], k));
    if (e->has[5]) TRY(check_stat_shape(call, "rstdOutOptional", &e->t[5], &e->t[0], k));
    TRY(check_no_alias(e, call, 3, 5, 0, 2));
    TRY(check_no_alias(e, call, 3, 5, 3, 5));
    e->i[0] = k;
    e->f[0] = eps;
    e->run = run_layernorm;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(LayerNorm)

/* Slots: 0 gradOut, 1 input, 2 mean, 3 rstd, 4 weight, 5 bias, 6
 * gradInput, 7 gradWeight, 8 gradBias. The workspace accumulates the
 * parameter gradients. */
static int run_layernorm_bw(aclOpExecutor *e, char *ws) {
    const td_view *dy = &e->t[0], *x = &e->t[1], *mt = &e->t[2], *rt = &e->t[3], *w = &e->t[4];
    int k = (int)e->i[0], nd = x->ndim;
    int64_t N = 1, idx[TD_MAXDIM];
    for (int d = nd - k; d < nd; d++) N *= x->dims[d];
    int64_t R = N ? v_numel(x) / N : 0;
    double *dg = (double *)ws, *db = dg + N;
    for (int64_t j = 0; j < 2 * N; j++) dg[j] = 0;
    for (int64_t r = 0; r < R; r++) {
        unravel(r * N, x->dims, nd, idx);
        double mean = v_get(mt, v_off_bc(mt, idx, nd)), rstd = v_get(rt, v_off_bc(rt, idx, nd));
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double g = v_get(dy, v_off(dy, idx)), xh = (v_get(x, v_off(x, idx)) - mean) * rstd;
            double gw = e->has[4] ? g * v_get(w, v_off_bc(w, idx, nd)) : g;
            s1 += gw;
            s2 += gw * xh;
            dg[j] += g * xh;
            db[j] += g;
        }
        if (!e->mask[0]) continue;
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double g = v_get(dy, v_off(dy, idx)), xh = (v_get(x, v_off(x, idx)) - mean) * rstd;
            double gw = e->has[4] ? g * v_get(w, v_off_bc(w, idx, nd)) : g;
            v_set(&e->t[6], v_off(&e->t[6], idx), rstd * (gw - s1 / N - xh * s2 / N));
        }
    }
    for (int64_t j = 0; j < N; j++) {
        unravel(j, e->t[1].dims + (nd - k), k, idx);
        if (e->mask[1]) v_set(&e->t[7], v_off(&e->t[7], idx), dg[j]);
        if (e->mask[2]) v_set(&e->t[8], v_off(&e->t[8], idx), db[j]);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnLayerNormBackwardGetWorkspaceSize(
    const aclTensor *gradOut, const aclTensor *input, const aclIntArray *normalizedShape, const aclTensor *mean,
    const aclTensor *rstd, const aclTensor *weightOptional, const aclTensor *biasOptional,
    const aclBoolArray *outputMask, aclTensor *gradInputOut, aclTensor *gradWeightOut, aclTensor *gradBiasOut,
    uint64_t *workspaceSize, aclOpExecutor **executor) {
    const char *call = "aclnnLayerNormBackwardGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnLayerNormBackward");
    int k;
    TRY(ex_tensor(e, call, "gradOut", gradOut, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "input", input, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "mean", mean, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "rstd", rstd, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "weightOptional", weightOptional, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "biasOptional", biasOptional, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "gradInputOut", gradInputOut, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "gradWeightOut", gradWeightOut, T_OPT, DT_FLOAT));
    TRY(ex_tensor(e, call, "gradBiasOut", gradBiasOut, T_OPT, DT_FLOAT));
    if (!outputMask) {
        acltd_set_error("%s: outputMask is NULL", call);
        st = ACLNN_ERR_PARAM_NULLPTR;
        goto fail;
    }
    if (outputMask->magic != TD_MAGIC_BOOLARR || outputMask->n != 3)
        BAD("%s: outputMask must be a live aclBoolArray of 3 entries", call);
    for (int i = 0; i < 3; i++) {
        e->mask[i] = outputMask->v[i];
        if (e->mask[i] && !e->has[6 + i]) {
            acltd_set_error("%s: outputMask[%d] is true but %s is NULL", call, i, e->tname[6 + i]);
            st = ACLNN_ERR_PARAM_NULLPTR;
            goto fail;
        }
    }
    TRY(norm_axes(call, normalizedShape, &e->t[1], &k));
    if (!same_shape(&e->t[0], &e->t[1])) BAD("%s: gradOut and input shapes differ", call);
    TRY(check_stat_shape(call, "mean", &e->t[2], &e->t[1], k));
    TRY(check_stat_shape(call, "rstd", &e->t[3], &e->t[1], k));
    if (e->has[4]) TRY(check_param_shape(call, "weightOptional", &e->t[4], &e->t[1], k));
    if (e->has[5]) TRY(check_param_shape(call, "biasOptional", &e->t[5], &e->t[1], k));
    if (e->mask[0] && !same_shape(&e->t[6], &e->t[1])) BAD("%s: gradInputOut and input shapes differ", call);
    if (e->mask[1]) TRY(check_param_shape(call, "gradWeightOut", &e->t[7], &e->t[1], k));
    if (e->mask[2]) TRY(check_param_shape(call, "gradBiasOut", &e->t[8], &e->t[1], k));
    TRY(check_no_alias(e, call, 6, 8, 0, 5));
    TRY(check_no_alias(e, call, 6, 8, 6, 8));
    e->i[0] = k;
    e->run = run_layernorm_bw;
    {
        int64_t N = 1;
        for (int d = e->t[1].ndim - k; d < e->t[1].ndim; d++) N *= e->t[1].dims[d];
        TRY(ex_finish(e, call, (uint64_t)(2 * N + 1) * 8, workspaceSize, executor));
    }
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(LayerNormBackward)

/* ---------------- embedding and index operators ---------------- */

static int index_error(const char *name, int64_t id, int64_t pos, int64_t n) {
    acltd_set_error("%s: index %lld at position %lld is outside [0, %lld)", name, (long long)id, (long long)pos,
                    (long long)n);
    return ACL_ERROR_RT_AICORE_EXCEPTION;
}

/* Slots: 0 weight [V, D], 1 indices, 2 out (indices' shape + [D]). */
static int run_embedding(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *w = &e->t[0], *ix = &e->t[1], *o = &e->t[2];
    int64_t V = w->dims[0], D = w->dims[1], n = v_numel(ix), idx[TD_MAXDIM];
    for (int64_t p = 0; p < n; p++) {
        unravel(p, ix->dims, ix->ndim, idx);
        int64_t id = v_geti(ix, v_off(ix, idx));
        if (id < 0 || id >= V) return index_error(e->name, id, p, V);
        for (int64_t j = 0; j < D; j++) {
            idx[ix->ndim] = j;
            int64_t wi[2] = {id, j};
            v_set(o, v_off(o, idx), v_get(w, v_off(w, wi)));
        }
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnEmbeddingGetWorkspaceSize(const aclTensor *weight, const aclTensor *indices,
                                                     const aclTensor *out, uint64_t *workspaceSize,
                                                     aclOpExecutor **executor) {
    const char *call = "aclnnEmbeddingGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnEmbedding");
    TRY(ex_tensor(e, call, "weight", weight, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "indices", indices, T_REQ, DT_INDEX));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    {
        const td_view *w = &e->t[0], *ix = &e->t[1], *o = &e->t[2];
        if (w->ndim != 2) BAD("%s: weight must be 2-D", call);
        if (ix->ndim >= TD_MAXDIM) BAD("%s: indices have too many dims", call);
        int ok = o->ndim == ix->ndim + 1 && o->dims[ix->ndim] == w->dims[1];
        for (int d = 0; ok && d < ix->ndim; d++) ok = o->dims[d] == ix->dims[d];
        if (!ok) BAD("%s: out must have the indices' shape followed by the embedding dim", call);
    }
    TRY(check_no_alias(e, call, 2, 2, 0, 1));
    e->run = run_embedding;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(Embedding)

/* copy_if_distinct copies src into dst (same shape) unless they are the
 * same view. */
static void copy_if_distinct(const td_view *dst, const td_view *src) {
    if (views_identical(dst, src)) return;
    int64_t n = v_numel(dst), idx[TD_MAXDIM];
    for (int64_t p = 0; p < n; p++) {
        unravel(p, dst->dims, dst->ndim, idx);
        v_set(dst, v_off(dst, idx), v_get(src, v_off(src, idx)));
    }
}

/* Slots: 0 self, 1 index (1-D), 2 source, 3 out; e->i[0] dim, e->f[0]
 * alpha. out = self, then out[index[i]] += alpha·source[i] along dim. */
static int run_index_add(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *s = &e->t[0], *ix = &e->t[1], *src = &e->t[2], *o = &e->t[3];
    int dim = (int)e->i[0];
    copy_if_distinct(o, s);
    int64_t n = v_numel(src), idx[TD_MAXDIM];
    for (int64_t p = 0; p < n; p++) {
        unravel(p, src->dims, src->ndim, idx);
        int64_t pos = idx[dim];
        int64_t id = v_geti(ix, ix->offset + pos * ix->strides[0]);
        if (id < 0 || id >= o->dims[dim]) return index_error(e->name, id, pos, o->dims[dim]);
        double v = v_get(src, v_off(src, idx));
        idx[dim] = id;
        int64_t off = v_off(o, idx);
        v_set(o, off, v_get(o, off) + e->f[0] * v);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnIndexAddGetWorkspaceSize(const aclTensor *self, const int64_t dim, const aclTensor *index,
                                                    const aclTensor *source, const aclScalar *alpha, aclTensor *out,
                                                    uint64_t *workspaceSize, aclOpExecutor **executor) {
    const char *call = "aclnnIndexAddGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnIndexAdd");
    TRY(ex_tensor(e, call, "self", self, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "index", index, T_REQ, DT_INDEX));
    TRY(ex_tensor(e, call, "source", source, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    TRY(ex_scalar(call, "alpha", alpha, &e->f[0]));
    {
        const td_view *s = &e->t[0], *ix = &e->t[1], *src = &e->t[2];
        int d;
        TRY(normalize_dim(call, dim, s->ndim, &d));
        e->i[0] = d;
        if (ix->ndim != 1) BAD("%s: index must be 1-D", call);
        int ok = src->ndim == s->ndim;
        for (int k = 0; ok && k < s->ndim; k++) ok = src->dims[k] == (k == d ? ix->dims[0] : s->dims[k]);
        if (!ok) BAD("%s: source must have self's shape with len(index) along dim %d", call, d);
        if (!same_shape(s, &e->t[3])) BAD("%s: out and self shapes differ", call);
        /* out may be self itself (in-place index_add_), nothing else. */
        if (!views_identical(&e->t[3], s)) TRY(check_no_alias(e, call, 3, 3, 0, 0));
        TRY(check_no_alias(e, call, 3, 3, 1, 2));
    }
    e->run = run_index_add;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(IndexAdd)

/* gather_check: index has self's rank and fits in src/self except along
 * dim. */
static int gather_shapes(const char *call, const td_view *self, const td_view *ix, const td_view *other, int dim) {
    if (ix->ndim != self->ndim || (other && other->ndim != self->ndim)) {
        acltd_set_error("%s: index must have self's rank", call);
        return ACLNN_ERR_PARAM_INVALID;
    }
    for (int d = 0; d < self->ndim; d++) {
        if ((d != dim && ix->dims[d] > self->dims[d]) || (other && ix->dims[d] > other->dims[d])) {
            acltd_set_error("%s: index is larger than its operands along dim %d", call, d);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    return 0;
}

/* Slots: 0 self, 1 index, 2 out (index's shape). */
static int run_gather(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *s = &e->t[0], *ix = &e->t[1], *o = &e->t[2];
    int dim = (int)e->i[0];
    int64_t n = v_numel(ix), idx[TD_MAXDIM];
    for (int64_t p = 0; p < n; p++) {
        unravel(p, ix->dims, ix->ndim, idx);
        int64_t id = v_geti(ix, v_off(ix, idx));
        if (id < 0 || id >= s->dims[dim]) return index_error(e->name, id, p, s->dims[dim]);
        int64_t oo = v_off(o, idx);
        idx[dim] = id;
        v_set(o, oo, v_get(s, v_off(s, idx)));
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnGatherGetWorkspaceSize(const aclTensor *self, const int64_t dim, const aclTensor *index,
                                                  aclTensor *out, uint64_t *workspaceSize, aclOpExecutor **executor) {
    const char *call = "aclnnGatherGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnGather");
    TRY(ex_tensor(e, call, "self", self, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "index", index, T_REQ, DT_INDEX));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    {
        int d;
        TRY(normalize_dim(call, dim, e->t[0].ndim, &d));
        e->i[0] = d;
        TRY(gather_shapes(call, &e->t[0], &e->t[1], NULL, d));
        if (!same_shape(&e->t[1], &e->t[2])) BAD("%s: out must have index's shape", call);
    }
    TRY(check_no_alias(e, call, 2, 2, 0, 1));
    e->run = run_gather;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(Gather)

/* Slots: 0 self, 1 index, 2 src, 3 out. out = self, then
 * out[index[i]] += src[i] along dim for every element i of index. */
static int run_scatter_add(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *s = &e->t[0], *ix = &e->t[1], *src = &e->t[2], *o = &e->t[3];
    int dim = (int)e->i[0];
    copy_if_distinct(o, s);
    int64_t n = v_numel(ix), idx[TD_MAXDIM];
    for (int64_t p = 0; p < n; p++) {
        unravel(p, ix->dims, ix->ndim, idx);
        int64_t id = v_geti(ix, v_off(ix, idx));
        if (id < 0 || id >= o->dims[dim]) return index_error(e->name, id, p, o->dims[dim]);
        double v = v_get(src, v_off(src, idx));
        idx[dim] = id;
        int64_t off = v_off(o, idx);
        v_set(o, off, v_get(o, off) + v);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnScatterAddGetWorkspaceSize(const aclTensor *self, int64_t dim, const aclTensor *index,
                                                      const aclTensor *src, aclTensor *out, uint64_t *workspaceSize,
                                                      aclOpExecutor **executor) {
    const char *call = "aclnnScatterAddGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnScatterAdd");
    TRY(ex_tensor(e, call, "self", self, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "index", index, T_REQ, DT_INDEX));
    TRY(ex_tensor(e, call, "src", src, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    {
        int d;
        TRY(normalize_dim(call, dim, e->t[0].ndim, &d));
        e->i[0] = d;
        TRY(gather_shapes(call, &e->t[0], &e->t[1], &e->t[2], d));
        if (!same_shape(&e->t[0], &e->t[3])) BAD("%s: out and self shapes differ", call);
        if (!views_identical(&e->t[3], &e->t[0])) TRY(check_no_alias(e, call, 3, 3, 0, 0));
        TRY(check_no_alias(e, call, 3, 3, 1, 2));
    }
    e->run = run_scatter_add;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(ScatterAdd)

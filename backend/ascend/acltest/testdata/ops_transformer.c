/*
 * ACL test double: the operators that the split layout places in
 * libopapi_transformer.so here: RMS norm and its gradient. (Which split
 * library holds which operator is the double's choice; the backend looks
 * every operator up in all of them.) Signatures follow CANN's
 * aclnnop/aclnn_rms_norm.h and aclnn_rms_norm_grad.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "opapi.h"

/* rms_shapes: gamma is x's trailing g dims, rstd has x's rank with 1 on
 * them; returns g in *g. */
static int rms_shapes(const char *call, const td_view *x, const td_view *gamma, const td_view *rstd, int *g) {
    int k = gamma->ndim;
    int ok = k >= 1 && k <= x->ndim;
    for (int d = 0; ok && d < k; d++) ok = gamma->dims[d] == x->dims[x->ndim - k + d];
    if (!ok) {
        acltd_set_error("%s: gamma must have the trailing dims of x", call);
        return ACLNN_ERR_PARAM_INVALID;
    }
    ok = rstd->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++) ok = rstd->dims[d] == (d < x->ndim - k ? x->dims[d] : 1);
    if (!ok) {
        char a[128];
        shape_str(rstd, a, sizeof a);
        acltd_set_error("%s: rstd has shape %s; want x's leading dims and 1 on gamma's", call, a);
        return ACLNN_ERR_PARAM_INVALID;
    }
    *g = k;
    return 0;
}

/* Slots: 0 x, 1 gamma, 2 yOut, 3 rstdOut; e->i[0] = g, e->f[0] = eps. */
static int run_rms(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *x = &e->t[0], *gm = &e->t[1], *y = &e->t[2], *rs = &e->t[3];
    int k = (int)e->i[0], nd = x->ndim;
    int64_t N = 1, idx[TD_MAXDIM];
    for (int d = nd - k; d < nd; d++) N *= x->dims[d];
    int64_t R = N ? v_numel(x) / N : 0;
    for (int64_t r = 0; r < R; r++) {
        double ss = 0;
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double v = v_get(x, v_off(x, idx));
            ss += v * v;
        }
        double rstd = 1 / sqrt(ss / N + e->f[0]);
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            v_set(y, v_off(y, idx), v_get(x, v_off(x, idx)) * rstd * v_get(gm, v_off_bc(gm, idx, nd)));
        }
        unravel(r * N, x->dims, nd, idx);
        v_set(rs, v_off_bc(rs, idx, nd), rstd);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnRmsNormGetWorkspaceSize(const aclTensor *x, const aclTensor *gamma, double epsilon,
                                                   const aclTensor *yOut, const aclTensor *rstdOut,
                                                   uint64_t *workspaceSize, aclOpExecutor **executor) {
    const char *call = "aclnnRmsNormGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnRmsNorm");
    int k;
    TRY(ex_tensor(e, call, "x", x, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "gamma", gamma, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "yOut", yOut, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "rstdOut", rstdOut, T_REQ, DT_FLOAT));
    TRY(rms_shapes(call, &e->t[0], &e->t[1], &e->t[3], &k));
    if (!same_shape(&e->t[0], &e->t[2])) BAD("%s: yOut and x shapes differ", call);
    TRY(check_no_alias(e, call, 2, 3, 0, 1));
    TRY(check_no_alias(e, call, 2, 3, 2, 3));
    e->i[0] = k;
    e->f[0] = epsilon;
    e->run = run_rms;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(RmsNorm)

/* Slots: 0 dy, 1 x, 2 rstd, 3 gamma, 4 dxOut, 5 dgammaOut. The workspace
 * accumulates dgamma. */
static int run_rms_grad(aclOpExecutor *e, char *ws) {
    const td_view *dy = &e->t[0], *x = &e->t[1], *rs = &e->t[2], *gm = &e->t[3], *dx = &e->t[4], *dg = &e->t[5];
    int k = (int)e->i[0], nd = x->ndim;
    int64_t N = 1, idx[TD_MAXDIM];
    for (int d = nd - k; d < nd; d++) N *= x->dims[d];
    int64_t R = N ? v_numel(x) / N : 0;
    double *acc = (double *)ws;
    for (int64_t j = 0; j < N; j++) acc[j] = 0;
    for (int64_t r = 0; r < R; r++) {
        unravel(r * N, x->dims, nd, idx);
        double rstd = v_get(rs, v_off_bc(rs, idx, nd)), s = 0;
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double g = v_get(dy, v_off(dy, idx)), xv = v_get(x, v_off(x, idx));
            s += g * v_get(gm, v_off_bc(gm, idx, nd)) * xv;
            acc[j] += g * xv * rstd;
        }
        for (int64_t j = 0; j < N; j++) {
            unravel(r * N + j, x->dims, nd, idx);
            double g = v_get(dy, v_off(dy, idx)), xv = v_get(x, v_off(x, idx));
            double gv = v_get(gm, v_off_bc(gm, idx, nd));
            v_set(dx, v_off(dx, idx), rstd * gv * g - xv * rstd * rstd * rstd * s / N);
        }
    }
    for (int64_t j = 0; j < N; j++) {
        unravel(j, dg->dims, dg->ndim, idx);
        v_set(dg, v_off(dg, idx), acc[j]);
    }
    return 0;
}

TD_EXPORT aclnnStatus aclnnRmsNormGradGetWorkspaceSize(const aclTensor *dy, const aclTensor *x,
                                                       const aclTensor *rstd, const aclTensor *gamma,
                                                       const aclTensor *dxOut, const aclTensor *dgammaOut,
                                                       uint64_t *workspaceSize, aclOpExecutor **executor) {
    const char *call = "aclnnRmsNormGradGetWorkspaceSize";
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new("aclnnRmsNormGrad");
    int k;
    TRY(ex_tensor(e, call, "dy", dy, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "x", x, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "rstd", rstd, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "gamma", gamma, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "dxOut", dxOut, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "dgammaOut", dgammaOut, T_REQ, DT_FLOAT));
    TRY(rms_shapes(call, &e->t[1], &e->t[3], &e->t[2], &k));
    if (!same_shape(&e->t[0], &e->t[1]) || !same_shape(&e->t[4], &e->t[1]))
        BAD("%s: dy, x and dxOut shapes differ", call);
    if (!same_shape(&e->t[5], &e->t[3])) BAD("%s: dgammaOut and gamma shapes differ", call);
    TRY(check_no_alias(e, call, 4, 5, 0, 3));
    TRY(check_no_alias(e, call, 4, 5, 4, 5));
    e->i[0] = k;
    e->run = run_rms_grad;
    TRY(ex_finish(e, call, (uint64_t)(v_numel(&e->t[3]) + 1) * 8, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}
LAUNCH(RmsNormGrad)

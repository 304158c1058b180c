/*
 * ACL test double: executor, launch and view helpers shared by the
 * operator libraries (see opapi.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opapi.h"

/* ---------------- views ---------------- */

int64_t v_numel(const td_view *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++) n *= v->dims[i];
    return n;
}

void unravel(int64_t lin, const int64_t *dims, int nd, int64_t *idx) {
    for (int i = nd - 1; i >= 0; i--) {
        int64_t d = dims[i] > 0 ? dims[i] : 1;
        idx[i] = lin % d;
        lin /= d;
    }
}

int64_t v_off(const td_view *v, const int64_t *idx) {
    int64_t off = v->offset;
    for (int i = 0; i < v->ndim; i++) off += idx[i] * v->strides[i];
    return off;
}

int64_t v_off_bc(const td_view *v, const int64_t *idx, int nd) {
    int64_t off = v->offset;
    int shift = nd - v->ndim;
    for (int i = 0; i < v->ndim; i++) {
        if (v->dims[i] == 1) continue;
        off += idx[i + shift] * v->strides[i];
    }
    return off;
}

double v_get(const td_view *v, int64_t off) {
    switch (v->dtype) {
    case ACL_FLOAT: return ((const float *)v->data)[off];
    case ACL_DOUBLE: return ((const double *)v->data)[off];
    case ACL_INT32: return ((const int32_t *)v->data)[off];
    case ACL_INT64: return (double)((const int64_t *)v->data)[off];
    }
    return NAN;
}

void v_set(const td_view *v, int64_t off, double x) {
    if (v->dtype == ACL_FLOAT)
        ((float *)v->data)[off] = (float)x;
    else if (v->dtype == ACL_DOUBLE)
        ((double *)v->data)[off] = x;
}

int64_t v_geti(const td_view *v, int64_t off) {
    switch (v->dtype) {
    case ACL_INT32: return ((const int32_t *)v->data)[off];
    case ACL_INT64: return ((const int64_t *)v->data)[off];
    }
    return -1;
}

int same_shape(const td_view *a, const td_view *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

int can_broadcast(const td_view *a, const td_view *out) {
    if (a->ndim > out->ndim) return 0;
    int shift = out->ndim - a->ndim;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != 1 && a->dims[i] != out->dims[i + shift]) return 0;
    return 1;
}

int broadcast_shape(const td_view *a, const td_view *b, int64_t *dims, int *nd) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - a->ndim), ib = i - (n - b->ndim);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) return 0;
        dims[i] = da == 1 ? db : da;
    }
    *nd = n;
    return 1;
}

void shape_str(const td_view *v, char *buf, size_t cap) {
    size_t n = 0;
    n += snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < v->ndim && n < cap; i++)
        n += snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)v->dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* v_range gives the byte range [lo, hi) a view touches (empty when it has
 * no elements). */
static void v_range(const td_view *v, const char **lo, const char **hi) {
    int64_t es = v->dtype == ACL_INT64 || v->dtype == ACL_DOUBLE ? 8
                 : (v->dtype == ACL_BOOL || v->dtype == ACL_UINT8 || v->dtype == ACL_INT8) ? 1
                                                                                            : 4;
    if (v_numel(v) == 0) {
        *lo = *hi = v->data;
        return;
    }
    int64_t mn = v->offset, mx = v->offset;
    for (int i = 0; i < v->ndim; i++) {
        int64_t span = (v->dims[i] - 1) * v->strides[i];
        if (span < 0)
            mn += span;
        else
            mx += span;
    }
    *lo = v->data + mn * es;
    *hi = v->data + (mx + 1) * es;
}

int views_identical(const td_view *a, const td_view *b) {
    if (a->data != b->data || a->offset != b->offset || !same_shape(a, b) || a->dtype != b->dtype) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] > 1 && a->strides[i] != b->strides[i]) return 0;
    return 1;
}

int views_overlap(const td_view *a, const td_view *b) {
    const char *alo, *ahi, *blo, *bhi;
    v_range(a, &alo, &ahi);
    v_range(b, &blo, &bhi);
    if (alo == ahi || blo == bhi) return 0;
    return alo < bhi && blo < ahi;
}

int check_ew_alias(aclOpExecutor *e, const char *call, int out, int first_in, int last_in) {
    for (int i = first_in; i <= last_in; i++) {
        if (!e->has[i] || !e->has[out]) continue;
        if (views_overlap(&e->t[out], &e->t[i]) && !views_identical(&e->t[out], &e->t[i])) {
            acltd_set_error("%s: output %s partially overlaps input %s", call, e->tname[out], e->tname[i]);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    return 0;
}

int check_no_alias(aclOpExecutor *e, const char *call, int first_out, int last_out, int first_in, int last_in) {
    for (int o = first_out; o <= last_out; o++) {
        if (!e->has[o]) continue;
        for (int i = first_in; i <= last_in; i++) {
            if (!e->has[i] || i == o) continue;
            if (views_overlap(&e->t[o], &e->t[i])) {
                acltd_set_error("%s: output %s overlaps %s, which this operator does not allow", call, e->tname[o],
                                e->tname[i]);
                return ACLNN_ERR_PARAM_INVALID;
            }
        }
    }
    return 0;
}

int normalize_dim(const char *call, int64_t dim, int nd, int *out) {
    int64_t d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd || nd == 0) {
        acltd_set_error("%s: dim %lld out of range for rank %d", call, (long long)dim, nd);
        return ACLNN_ERR_PARAM_INVALID;
    }
    *out = (int)d;
    return 0;
}

/* ---------------- executors ---------------- */

aclOpExecutor *ex_new(const char *name) {
    aclOpExecutor *e = calloc(1, sizeof *e);
    e->magic = TD_MAGIC_EXEC;
    snprintf(e->name, sizeof e->name, "%s", name);
    return e;
}

void ex_free(aclOpExecutor *e) {
    if (!e) return;
    e->magic = TD_MAGIC_DEAD;
    free(e->list);
    free(e);
}

int ex_tensor(aclOpExecutor *e, const char *call, const char *arg, const aclTensor *t, int optional, int kind) {
    int slot = e->nt++;
    e->tname[slot] = arg;
    if (!t) {
        if (optional) return 0;
        acltd_set_error("%s: %s is NULL", call, arg);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (t->magic != TD_MAGIC_TENSOR) {
        acltd_set_error("%s: %s (%p) is not a live aclTensor", call, arg, (const void *)t);
        return ACLNN_ERR_PARAM_INVALID;
    }
    const td_view *v = &t->v;
    if (kind == DT_FLOAT && v->dtype != ACL_FLOAT) {
        acltd_set_error("%s: %s has data type %d; the test double implements float32 (ACL_FLOAT) only", call, arg,
                        v->dtype);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (kind == DT_INDEX && v->dtype != ACL_INT32 && v->dtype != ACL_INT64) {
        acltd_set_error("%s: %s has data type %d; want ACL_INT32 or ACL_INT64", call, arg, v->dtype);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (kind == DT_MASK && v->dtype != ACL_BOOL) {
        acltd_set_error("%s: %s has data type %d; want ACL_BOOL", call, arg, v->dtype);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (v->format != ACL_FORMAT_ND) {
        acltd_set_error("%s: %s has format %d; want ACL_FORMAT_ND", call, arg, v->format);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (v_numel(v) > 0) {
        if (!v->data) {
            acltd_set_error("%s: %s has no data address", call, arg);
            return ACLNN_ERR_PARAM_NULLPTR;
        }
        int64_t mn = v->offset, mx = v->offset;
        for (int i = 0; i < v->ndim; i++) {
            int64_t span = (v->dims[i] - 1) * v->strides[i];
            if (span < 0)
                mn += span;
            else
                mx += span;
        }
        if (mn < 0 || mx >= v->storage_elems) {
            acltd_set_error("%s: %s view (offset %lld, elements %lld..%lld) lies outside its storage of %lld elements",
                            call, arg, (long long)v->offset, (long long)mn, (long long)mx,
                            (long long)v->storage_elems);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    e->t[slot] = *v;
    e->has[slot] = true;
    return 0;
}

int ex_scalar(const char *call, const char *arg, const aclScalar *s, double *v) {
    if (!s) {
        acltd_set_error("%s: %s is NULL", call, arg);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (s->magic != TD_MAGIC_SCALAR) {
        acltd_set_error("%s: %s (%p) is not a live aclScalar", call, arg, (const void *)s);
        return ACLNN_ERR_PARAM_INVALID;
    }
    *v = s->value;
    return 0;
}

int ex_intarray(const char *call, const char *arg, const aclIntArray *a, int64_t *v, int *n) {
    if (!a) {
        acltd_set_error("%s: %s is NULL", call, arg);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (a->magic != TD_MAGIC_INTARR) {
        acltd_set_error("%s: %s (%p) is not a live aclIntArray", call, arg, (const void *)a);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (a->n > TD_MAXDIM) {
        acltd_set_error("%s: %s has %llu elements, at most %d supported", call, arg, (unsigned long long)a->n,
                        TD_MAXDIM);
        return ACLNN_ERR_PARAM_INVALID;
    }
    for (uint64_t i = 0; i < a->n; i++) v[i] = a->v[i];
    *n = (int)a->n;
    return 0;
}

int ex_finish(aclOpExecutor *e, const char *call, uint64_t ws_need, uint64_t *workspaceSize,
              aclOpExecutor **executor) {
    if (!workspaceSize || !executor) {
        acltd_set_error("%s: workspaceSize or executor is NULL", call);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    e->ws_need = ws_need;
    *workspaceSize = ws_need;
    *executor = e;
    acltd_count(TD_EXECUTOR, 1);
    return 0;
}

/* ---------------- launch ---------------- */

typedef struct {
    aclOpExecutor *e;
    char *ws;
} launch_arg;

static const char *range_problem(int r) { return r == 1 ? "freed device memory" : "not device memory"; }

static int run_launch(void *arg) {
    launch_arg *a = arg;
    aclOpExecutor *e = a->e;
    for (int i = 0; i < e->nt; i++) {
        if (!e->has[i] || v_numel(&e->t[i]) == 0) continue;
        const char *lo, *hi;
        v_range(&e->t[i], &lo, &hi);
        int r = acltd_device_range(lo, hi - lo);
        if (r) {
            acltd_set_error("%s: %s (%p..%p) is %s when the kernel runs", e->name, e->tname[i], (const void *)lo,
                            (const void *)hi, range_problem(r));
            return ACL_ERROR_RT_AICORE_EXCEPTION;
        }
    }
    if (e->ws_need) {
        int r = acltd_device_range(a->ws, (int64_t)e->ws_need);
        if (r) {
            acltd_set_error("%s: workspace %p is %s when the kernel runs", e->name, (void *)a->ws, range_problem(r));
            return ACL_ERROR_RT_AICORE_EXCEPTION;
        }
    }
    int st = e->run(e, a->ws);
    /* Workspace contents do not survive an operator. */
    if (e->ws_need) memset(a->ws, 0xff, e->ws_need);
    return st;
}

static void release_launch(void *arg) {
    launch_arg *a = arg;
    ex_free(a->e);
    acltd_count(TD_EXECUTOR, -1);
    free(a);
}

/* consume frees the executor of a launch that failed: aclnnX takes the
 * executor whether or not it succeeds (an assumption: CANN documents
 * executors as single-use but not what a failed launch does with them). */
static aclnnStatus consume(aclOpExecutor *e, aclnnStatus st) {
    if (e && e->magic == TD_MAGIC_EXEC) {
        ex_free(e);
        acltd_count(TD_EXECUTOR, -1);
    }
    return st;
}

aclnnStatus od_launch(const char *name, void *workspace, uint64_t workspaceSize, aclOpExecutor *e,
                      aclrtStream stream) {
    int st = acltd_enter(name);
    if (st) return consume(e, st);
    if (!e) {
        acltd_set_error("%s: executor is NULL", name);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (e->magic != TD_MAGIC_EXEC) {
        acltd_set_error("%s: executor %p is not live (each executor runs once)", name, (void *)e);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (strcmp(e->name, name) != 0) {
        acltd_set_error("%s: executor %p was made by %sGetWorkspaceSize", name, (void *)e, e->name);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if ((st = acltd_need_context(name))) return consume(e, st);
    if ((st = acltd_stream_ok(name, stream))) return consume(e, st);
    if (e->ws_need) {
        if (!workspace || workspaceSize < e->ws_need) {
            acltd_set_error("%s: workspace %p of %llu bytes given, %llu bytes required", name, workspace,
                            (unsigned long long)workspaceSize, (unsigned long long)e->ws_need);
            return consume(e, ACLNN_ERR_PARAM_INVALID);
        }
        int r = acltd_device_range(workspace, (int64_t)e->ws_need);
        if (r) {
            acltd_set_error("%s: workspace %p is %s", name, workspace, range_problem(r));
            return consume(e, ACLNN_ERR_PARAM_INVALID);
        }
    }
    launch_arg *a = malloc(sizeof *a);
    a->e = e;
    a->ws = workspace;
    /* The executor now belongs to the queued task. */
    return acltd_enqueue(stream, e->name, run_launch, release_launch, a);
}

/* ---------------- elementwise ---------------- */

int run_ew(aclOpExecutor *e, char *ws) {
    (void)ws;
    const td_view *out = &e->t[0];
    int nd = out->ndim;
    int64_t n = v_numel(out), idx[TD_MAXDIM];
    int nin = e->nt - 1;
    double x[4];
    for (int64_t lin = 0; lin < n; lin++) {
        unravel(lin, out->dims, nd, idx);
        for (int k = 0; k < nin; k++) x[k] = v_get(&e->t[1 + k], v_off_bc(&e->t[1 + k], idx, nd));
        v_set(out, v_off(out, idx), e->fn(x, e->f));
    }
    return 0;
}

aclnnStatus ew_prepare(const char *call, const char *name, double (*fn)(const double *, const double *),
                       const aclScalar **sc, const char **scnames, int nsc, const double *fixed, int nfixed,
                       const aclTensor *out, int n, const aclTensor **in, const char **names, int in_broadcasts,
                       uint64_t *workspaceSize, aclOpExecutor **executor) {
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new(name);
    for (int k = 0; k < nsc; k++) TRY(ex_scalar(call, scnames[k], sc[k], &e->f[k]));
    for (int k = 0; k < nfixed; k++) e->f[nsc + k] = fixed[k];
    TRY(ex_tensor(e, call, "out", out, T_REQ, DT_FLOAT));
    for (int k = 0; k < n; k++) TRY(ex_tensor(e, call, names[k], in[k], T_REQ, DT_FLOAT));
    if (n > 0 && in_broadcasts == 2) {
        /* Each input broadcasts to the output (copy_ semantics). */
        for (int k = 0; k < n; k++) {
            if (!can_broadcast(&e->t[1 + k], &e->t[0])) {
                char a[128], b[128];
                shape_str(&e->t[1 + k], a, sizeof a);
                shape_str(&e->t[0], b, sizeof b);
                BAD("%s: %s %s does not broadcast to %s", call, names[k], a, b);
            }
        }
    } else if (n > 0) {
        /* The inputs' broadcast shape must be the output's. */
        int64_t dims[TD_MAXDIM];
        int nd = e->t[1].ndim;
        memcpy(dims, e->t[1].dims, sizeof dims);
        for (int k = 1; k < n; k++) {
            td_view acc = e->t[1];
            acc.ndim = nd;
            memcpy(acc.dims, dims, sizeof dims);
            if (!in_broadcasts) {
                if (!same_shape(&e->t[1], &e->t[1 + k])) {
                    char a[128], b[128];
                    shape_str(&e->t[1], a, sizeof a);
                    shape_str(&e->t[1 + k], b, sizeof b);
                    BAD("%s: %s %s and %s %s must have the same shape", call, names[0], a, names[k], b);
                }
                continue;
            }
            if (!broadcast_shape(&acc, &e->t[1 + k], dims, &nd)) {
                char a[128], b[128];
                shape_str(&e->t[1], a, sizeof a);
                shape_str(&e->t[1 + k], b, sizeof b);
                BAD("%s: %s %s and %s %s do not broadcast", call, names[0], a, names[k], b);
            }
        }
        td_view want = e->t[0];
        want.ndim = nd;
        memcpy(want.dims, dims, sizeof dims);
        if (!same_shape(&want, &e->t[0])) {
            char a[128], b[128];
            shape_str(&want, a, sizeof a);
            shape_str(&e->t[0], b, sizeof b);
            BAD("%s: inputs broadcast to %s but out is %s", call, a, b);
        }
    }
    TRY(check_ew_alias(e, call, 0, 1, n));
    e->fn = fn;
    e->run = run_ew;
    TRY(ex_finish(e, call, 0, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}

/* ---------------- registration ---------------- */

#ifndef OPAPI_LIBNAME
#define OPAPI_LIBNAME "libopapi.so"
#endif

/* Each operator library announces itself when loaded, so that tests can
 * check which layout a program picked and that it never loaded both. */
__attribute__((constructor)) static void register_lib(void) { acltd_register_lib(OPAPI_LIBNAME); }

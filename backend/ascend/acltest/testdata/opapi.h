/*
 * ACL test double: machinery shared by the operator libraries. Each aclnn
 * operator is two calls, as in CANN: aclnnXGetWorkspaceSize validates its
 * arguments, snapshots the tensor descriptions into an executor and says how
 * much workspace the operator needs; aclnnX checks the workspace and queues
 * the executor on the stream, where it runs when the stream is synchronised.
 */
#ifndef OPAPI_H
#define OPAPI_H

#include "acl_double.h"

#define EX_MAXT 12

struct aclOpExecutor {
    uint32_t magic;
    char name[64];    /* the second-phase call, e.g. "aclnnMm" */
    uint64_t ws_need; /* workspace bytes the operator requires */
    int (*run)(aclOpExecutor *e, char *ws);
    int nt;
    td_view t[EX_MAXT];
    bool has[EX_MAXT];
    const char *tname[EX_MAXT];
    double f[8];
    int64_t i[8];
    int64_t arr[TD_MAXDIM];
    int narr;
    bool mask[3];
    double (*fn)(const double *x, const double *p);
    /* Longer integer lists (the cumulative sequence lengths of the
     * variable-length attention operators), owned by the executor and
     * freed with it. */
    int64_t *list;
    int64_t nlist;
};

/* Argument kinds for ex_tensor. */
enum { T_REQ = 0, T_OPT = 1 };
enum { DT_FLOAT = 0, DT_INDEX = 1, DT_MASK = 2, DT_ANY = 3 /* the operator checks the dtype itself */ };

TD_HIDDEN aclOpExecutor *ex_new(const char *name);
TD_HIDDEN void ex_free(aclOpExecutor *e);
/* ex_tensor validates t and appends it to e's tensors (slot e->nt). An
 * optional NULL tensor takes a slot with has == false. */
TD_HIDDEN int ex_tensor(aclOpExecutor *e, const char *call, const char *arg, const aclTensor *t, int optional, int kind);
TD_HIDDEN int ex_scalar(const char *call, const char *arg, const aclScalar *s, double *v);
TD_HIDDEN int ex_intarray(const char *call, const char *arg, const aclIntArray *a, int64_t *v, int *n);
TD_HIDDEN int ex_finish(aclOpExecutor *e, const char *call, uint64_t ws_need, uint64_t *workspaceSize,
                        aclOpExecutor **executor);
TD_HIDDEN aclnnStatus od_launch(const char *name, void *workspace, uint64_t workspaceSize, aclOpExecutor *e,
                                aclrtStream stream);

/* Views. */
TD_HIDDEN int64_t v_numel(const td_view *v);
TD_HIDDEN void unravel(int64_t lin, const int64_t *dims, int nd, int64_t *idx);
/* v_off maps an index of v's own rank to an element offset. */
TD_HIDDEN int64_t v_off(const td_view *v, const int64_t *idx);
/* v_off_bc maps an index of rank nd (>= v's) to an element offset of v
 * broadcast to it (right-aligned, extent-1 axes repeat). */
TD_HIDDEN int64_t v_off_bc(const td_view *v, const int64_t *idx, int nd);
TD_HIDDEN double v_get(const td_view *v, int64_t off);
TD_HIDDEN void v_set(const td_view *v, int64_t off, double x);
TD_HIDDEN int64_t v_geti(const td_view *v, int64_t off);
TD_HIDDEN int same_shape(const td_view *a, const td_view *b);
/* can_broadcast reports whether a broadcasts to the shape of out. */
TD_HIDDEN int can_broadcast(const td_view *a, const td_view *out);
/* broadcast_shape writes the broadcast of a and b into dims/nd. */
TD_HIDDEN int broadcast_shape(const td_view *a, const td_view *b, int64_t *dims, int *nd);
TD_HIDDEN void shape_str(const td_view *v, char *buf, size_t cap);
/* Aliasing checks: elementwise outputs may be exactly an input, any other
 * overlap between an output and an input is rejected. */
TD_HIDDEN int views_identical(const td_view *a, const td_view *b);
TD_HIDDEN int views_overlap(const td_view *a, const td_view *b);
TD_HIDDEN int check_ew_alias(aclOpExecutor *e, const char *call, int out, int first_in, int last_in);
TD_HIDDEN int check_no_alias(aclOpExecutor *e, const char *call, int first_out, int last_out, int first_in,
                             int last_in);
TD_HIDDEN int normalize_dim(const char *call, int64_t dim, int nd, int *out);

/* Elementwise execution: slot 0 is the output, slots 1.. the inputs,
 * broadcast to the output's shape; e->fn computes one element. */
TD_HIDDEN int run_ew(aclOpExecutor *e, char *ws);
/* ew_prepare builds an elementwise executor with output out and n inputs;
 * e->f holds the nsc scalars' values, then the nfixed fixed parameters.
 * in_broadcasts: 0, the inputs have the output's shape; 1, their broadcast
 * shape is the output's; 2, each input broadcasts to the output. */
TD_HIDDEN aclnnStatus ew_prepare(const char *call, const char *name, double (*fn)(const double *, const double *),
                                 const aclScalar **sc, const char **scnames, int nsc, const double *fixed,
                                 int nfixed, const aclTensor *out, int n, const aclTensor **in, const char **names,
                                 int in_broadcasts, uint64_t *workspaceSize, aclOpExecutor **executor);

#define TRY(x)                                                                                                     \
    do {                                                                                                           \
        st = (x);                                                                                                  \
        if (st) goto fail;                                                                                         \
    } while (0)

#define BAD(...)                                                                                                   \
    do {                                                                                                           \
        acltd_set_error(__VA_ARGS__);                                                                              \
        st = ACLNN_ERR_PARAM_INVALID;                                                                              \
        goto fail;                                                                                                 \
    } while (0)

/* LAUNCH defines the second phase of operator X. */
#define LAUNCH(X)                                                                                                  \
    TD_EXPORT aclnnStatus aclnn##X(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,               \
                                   aclrtStream stream) {                                                           \
        return od_launch("aclnn" #X, workspace, workspaceSize, executor, stream);                                  \
    }

#endif

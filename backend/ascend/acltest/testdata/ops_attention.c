/*
 * ACL test double: CANN's fused attention operators, FlashAttentionScore,
 * FlashAttentionVarLenScore and their gradients FlashAttentionScoreGrad
 * and FlashAttentionUnpaddingScoreGrad (aclnnop/aclnn_flash_attention_score.h
 * and aclnn_flash_attention_score_grad.h).
 *
 * What they compute follows CANN's operator documentation (the aclnn API
 * reference of CANN 8.0 to 8.3 and the docs of the open ops-transformer
 * sources, "sparse mode" introduction included): per batch (or, for the
 * variable-length operators, per sequence), query head n1 and query i,
 *
 *     s_j = scaleValue * q_i . k_j      over the keys j the mask leaves
 *     attentionOut_i = sum_j softmax(s)_j v_j
 *     softmaxMax_i = max_j s_j,  softmaxSum_i = sum_j exp(s_j - softmaxMax_i)
 *
 * with key/value head n1 / (N1 / N2) (grouped-query attention), the two
 * statistics written 8 times ([B, N1, Sq, 8]; for TND declared [T1, N1, 8]
 * but laid out as the V1 kernels of ops-transformer write it: one
 * [N1, s_b, 8] block per sequence b in actualSeqQLen order, see
 * fa_stat_off). The gradients recompute P = exp(s - softmaxMax) /
 * softmaxSum from the statistics they are given and return dQ = scale dS
 * K, dK = scale dS^T Q (summed over each group), dV = P^T dY with dS = P
 * (dY V^T - rowsum(dY * attentionIn)); every element of dq, dk and dv is
 * written, 0 where nothing contributes.
 *
 * Which keys a query sees (attenMask 1 = masked out):
 *   - no attenMask: every key, whatever sparseMode, preTokens and
 *     nextTokens say ("fixed to full computation");
 *   - sparseMode 0: a full mask ([Sq, Skv], [1,1,Sq,Skv], [B,1,Sq,Skv] or
 *     [B,N1,Sq,Skv]) and the band i - preTokens <= j <= i + nextTokens
 *     counted from the top-left corner, with which the mask must agree;
 *   - 1: the full mask alone;
 *   - 2 (leftUpCausal): j <= i;
 *   - 3 (rightDownCausal): j <= i + Skv - Sq;
 *   - 4 (band): i + Skv - Sq - preTokens <= j <= i + Skv - Sq + nextTokens
 *     (counted from the bottom-right corner);
 *   modes 2, 3 and 4 take the compressed [2048, 2048] mask, 1 above the
 *   diagonal. In the variable-length operators each sequence has its own
 *   Sq and Skv (the differences of actualSeqQLen / actualSeqKvLen, which are
 *   cumulative; a sequence may have no queries).
 *
 * The argument checks are those the documentation states and the
 * operators' open host code makes (ranks per layout, headNum equal to the
 * query's N, N1 a multiple of N2 and at most 256, D at most 768 (512 for
 * the variable-length gradient) and key D equal to query D >= value D,
 * equal batches, the mask shapes and the compressed mask's [2048, 2048], a
 * BOOL or UINT8 mask (BOOL only for the gradients, whose operator
 * definition pairs FLOAT inputs with BOOL), the preTokens/nextTokens
 * combinations that leave a band, Sq <= Skv per sequence for
 * variable-length mode 3, "TND" for the variable-length operators, at
 * most 2048 sequences), dtypes, nulls, aliasing of outputs and inputs,
 * and the chip: CANN documents the operators for Atlas A2 and A3 parts
 * only.
 *
 * Where CANN leaves the result undefined the double fails the operator
 * when it runs: a compressed mask that is not the documented triangle, a
 * mode-0 mask that disagrees with its band, a query that sees no key, or
 * softmaxMax/softmaxSum whose 8 copies differ.
 *
 * Not implemented (refused with a message saying so, though CANN takes
 * them): FLOAT16 and BFLOAT16, pse (realShift), dropout (dropMask,
 * keepProb < 1), prefix (sparse modes 5 and 6), a full mask or modes 1, 7
 * and 8 in the variable-length operators, and a 4-D compressed mask.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opapi.h"

enum { L_BSH, L_SBH, L_BSND, L_BNSD, L_TND };
static const char *const layout_names[] = {"BSH", "SBH", "BSND", "BNSD", "TND"};

#define FA_MASK 2048         /* side of the compressed mask */
#define FA_MAX_SEQS 2048     /* actualSeqQLen entries (documented: 1 to 2K) */
#define FA_MAX_HEADS 256     /* N1 (documented: 1 to 256) */
#define FA_MAX_D 768         /* head size (documented: 1 to 768) */
#define FA_MAX_UNPAD_D 512   /* aclnnFlashAttentionUnpaddingScoreGrad's (documented: 1 to 512) */
#define FA_MAX_B (2LL << 20) /* B: 1 to 2M */
#define FA_MAX_S (1LL << 20) /* S and T: 1 to 1M */
#define FA_TOKEN_LIMIT (1LL << 40)

/* Tensor slots. The forward: 0 query, 1 key, 2 value, 3 attenMask,
 * 4 softmaxMax, 5 softmaxSum, 6 attentionOut. The gradient: 0..5 the same,
 * 6 attentionIn, 7 dy, 8 dq, 9 dk, 10 dv. */
enum { S_Q, S_K, S_V, S_MASK, S_MAX, S_SUM, S_OUT, S_DY, S_DQ, S_DK, S_DV };

/* e->f[0] scaleValue; e->i[0] preTokens, i[1] nextTokens, i[2] sparseMode,
 * i[3] layout, i[4] gradient (0/1); e->arr B, S1, S2, N1, N2, D, Dv (for
 * TND: the number of sequences, T1, T2); e->list the cumulative query
 * lengths then the key lengths (TND only), e->nlist their total count. */
typedef struct {
    int layout;
    int64_t B, S1, S2, N1, N2, D, Dv;
} fa_dims;

/* fa_layout parses inputLayout: the variable-length operators take exactly
 * "TND" (their host code compares with strcmp), the others BSH, SBH, BSND
 * or BNSD in any case. */
static int fa_layout(const char *call, const char *s, int varlen, int *out) {
    if (!s) {
        acltd_set_error("%s: inputLayout is NULL", call);
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (varlen) {
        if (strcmp(s, "TND") != 0) {
            acltd_set_error("%s: inputLayout \"%.16s\" is not TND", call, s);
            return ACLNN_ERR_PARAM_INVALID;
        }
        *out = L_TND;
        return 0;
    }
    char u[8] = {0};
    size_t n = strnlen(s, sizeof u);
    for (size_t i = 0; i < n && i < sizeof u - 1; i++) u[i] = (char)toupper((unsigned char)s[i]);
    for (int l = L_BSH; l <= L_BNSD; l++) {
        if (n < sizeof u && strcmp(u, layout_names[l]) == 0) {
            *out = l;
            return 0;
        }
    }
    acltd_set_error("%s: inputLayout \"%.16s\"; this operator takes BSH, SBH, BSND or BNSD", call, s);
    return ACLNN_ERR_PARAM_INVALID;
}

/* fa_dims_of reads B, S, N and D from query, key and value for layout L
 * and checks what CANN checks of them. */
static int fa_dims_of(const char *call, const td_view *q, const td_view *k, const td_view *v, int L, int64_t headNum,
                      fa_dims *d) {
    int rank = (L == L_BSND || L == L_BNSD) ? 4 : 3;
    if (q->ndim != rank || k->ndim != rank || v->ndim != rank) {
        acltd_set_error("%s: query, key and value have ranks %d, %d, %d; layout %s wants %d", call, q->ndim, k->ndim,
                        v->ndim, layout_names[L], rank);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (headNum <= 0) {
        acltd_set_error("%s: headNum must be > 0, got %lld", call, (long long)headNum);
        return ACLNN_ERR_PARAM_INVALID;
    }
    memset(d, 0, sizeof *d);
    d->layout = L;
    d->N1 = headNum;
    int64_t qN = headNum, kB = 0, vS = 0, vN = 0;
    switch (L) {
    case L_BSND:
        d->B = q->dims[0], d->S1 = q->dims[1], qN = q->dims[2], d->D = q->dims[3];
        kB = k->dims[0], d->S2 = k->dims[1], d->N2 = k->dims[2];
        vS = v->dims[1], vN = v->dims[2], d->Dv = v->dims[3];
        break;
    case L_BNSD:
        d->B = q->dims[0], qN = q->dims[1], d->S1 = q->dims[2], d->D = q->dims[3];
        kB = k->dims[0], d->N2 = k->dims[1], d->S2 = k->dims[2];
        vN = v->dims[1], vS = v->dims[2], d->Dv = v->dims[3];
        break;
    case L_BSH:
    case L_SBH: {
        int bi = L == L_BSH ? 0 : 1, si = 1 - bi;
        d->B = q->dims[bi], d->S1 = q->dims[si];
        kB = k->dims[bi], d->S2 = k->dims[si], vS = v->dims[si];
        if (q->dims[2] % headNum) {
            acltd_set_error("%s: query H %lld is not a multiple of headNum %lld", call, (long long)q->dims[2],
                            (long long)headNum);
            return ACLNN_ERR_PARAM_INVALID;
        }
        d->D = q->dims[2] / headNum;
        if (d->D == 0 || k->dims[2] % d->D) {
            acltd_set_error("%s: key H %lld is not a multiple of D %lld", call, (long long)k->dims[2], (long long)d->D);
            return ACLNN_ERR_PARAM_INVALID;
        }
        d->N2 = k->dims[2] / d->D;
        vN = d->N2;
        if (d->N2 == 0 || v->dims[2] % d->N2) {
            acltd_set_error("%s: value H %lld does not split into %lld heads", call, (long long)v->dims[2],
                            (long long)d->N2);
            return ACLNN_ERR_PARAM_INVALID;
        }
        d->Dv = v->dims[2] / d->N2;
        break;
    }
    default: /* TND: B comes from the sequence lengths */
        d->S1 = q->dims[0], qN = q->dims[1], d->D = q->dims[2];
        d->S2 = k->dims[0], d->N2 = k->dims[1];
        vS = v->dims[0], vN = v->dims[1], d->Dv = v->dims[2];
        d->B = 0;
        kB = 0;
        break;
    }
    int64_t kD = L == L_BSH || L == L_SBH ? d->D : k->dims[rank - 1];
    if (qN != headNum) {
        acltd_set_error("%s: headNum is %lld, but query has %lld heads", call, (long long)headNum, (long long)qN);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (kD != d->D) {
        acltd_set_error("%s: the D of query (%lld) and key (%lld) must be equal", call, (long long)d->D,
                        (long long)kD);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (d->D < 1 || d->D > FA_MAX_D || d->Dv < 1 || d->Dv > d->D) {
        acltd_set_error("%s: head sizes D %lld and value D %lld; want 1 <= value D <= D <= %d", call,
                        (long long)d->D, (long long)d->Dv, FA_MAX_D);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (d->N1 > FA_MAX_HEADS || d->N2 < 1 || d->N1 % d->N2) {
        acltd_set_error("%s: %lld query heads over %lld key/value heads; want N1 <= %d, a multiple of N2", call,
                        (long long)d->N1, (long long)d->N2, FA_MAX_HEADS);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (vN != d->N2 || vS != d->S2) {
        acltd_set_error("%s: key and value must have the same shape but for D", call);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (L != L_TND && kB != d->B) {
        acltd_set_error("%s: query batch %lld, key batch %lld; they must be equal", call, (long long)d->B,
                        (long long)kB);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (d->B > FA_MAX_B || d->S1 > FA_MAX_S || d->S2 > FA_MAX_S) {
        acltd_set_error("%s: B %lld, Sq (or T) %lld, Skv %lld beyond the documented 2M, 1M, 1M", call,
                        (long long)d->B, (long long)d->S1, (long long)d->S2);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

/* fa_want_shape checks that slot has q's layout shape with n heads of size
 * hd (for the outputs and dy, which follow query; dk and dv follow key and
 * value, so compare them with those directly). */
static int fa_same(const char *call, const aclOpExecutor *e, int a, int b) {
    if (!same_shape(&e->t[a], &e->t[b])) {
        char x[128], y[128];
        shape_str(&e->t[a], x, sizeof x);
        shape_str(&e->t[b], y, sizeof y);
        acltd_set_error("%s: %s has shape %s; want %s's %s", call, e->tname[a], x, e->tname[b], y);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

/* fa_stat_shape checks softmaxMax/softmaxSum: [B, N1, Sq, 8], or [T1, N1, 8]
 * for TND. */
static int fa_stat_shape(const char *call, const aclOpExecutor *e, int slot, const fa_dims *d) {
    const td_view *s = &e->t[slot];
    int ok = s->dtype == ACL_FLOAT;
    if (d->layout == L_TND)
        ok = ok && s->ndim == 3 && s->dims[0] == d->S1 && s->dims[1] == d->N1 && s->dims[2] == 8;
    else
        ok = ok && s->ndim == 4 && s->dims[0] == d->B && s->dims[1] == d->N1 && s->dims[2] == d->S1 &&
             s->dims[3] == 8;
    if (!ok) {
        char x[128];
        shape_str(s, x, sizeof x);
        if (d->layout == L_TND)
            acltd_set_error("%s: %s is %s (dtype %d); want FLOAT [T1, N1, 8] = [%lld, %lld, 8]", call, e->tname[slot],
                            x, s->dtype, (long long)d->S1, (long long)d->N1);
        else
            acltd_set_error("%s: %s is %s (dtype %d); want FLOAT [B, N1, Sq, 8] = [%lld, %lld, %lld, 8]", call,
                            e->tname[slot], x, s->dtype, (long long)d->B, (long long)d->N1, (long long)d->S1);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

/* fa_band_ok checks a band counted from the top-left corner, as CANN's
 * host code does (after moving mode 4's bottom-right counts there): it must
 * leave keys to look at. */
static int fa_band_ok(const char *call, int64_t pre, int64_t next, int64_t s1, int64_t s2) {
    if (pre >= 0 && next >= 0) return 0;
    if (pre < 0 && next < 0) {
        acltd_set_error("%s: preTokens and nextTokens (%lld, %lld from the top-left corner) leave no key", call,
                        (long long)pre, (long long)next);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (pre < 0 ? (next >= -pre && -pre < s2) : (-next <= pre && -next < s1)) return 0;
    acltd_set_error("%s: preTokens %lld and nextTokens %lld (from the top-left corner) leave no valid block with Sq "
                    "%lld, Skv %lld",
                    call, (long long)pre, (long long)next, (long long)s1, (long long)s2);
    return ACLNN_ERR_PARAM_INVALID;
}

/* fa_seqs copies the cumulative lengths of the variable-length operators
 * into e->list and sets the number of sequences. */
static int fa_seqs(const char *call, aclOpExecutor *e, const aclIntArray *ql, const aclIntArray *kl, fa_dims *d) {
    const aclIntArray *a[2] = {ql, kl};
    const char *nm[2] = {"actualSeqQLenOptional", "actualSeqKvLenOptional"};
    for (int w = 0; w < 2; w++) {
        if (!a[w]) {
            acltd_set_error("%s: %s is NULL; the test double needs the sequence lengths with layout TND", call,
                            nm[w]);
            return ACLNN_ERR_PARAM_NULLPTR;
        }
        if (a[w]->magic != TD_MAGIC_INTARR) {
            acltd_set_error("%s: %s (%p) is not a live aclIntArray", call, nm[w], (const void *)a[w]);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    if (ql->n != kl->n) {
        acltd_set_error("%s: %llu query lengths and %llu key lengths; they must be as many (VarLen scene, q is not "
                        "equal kv)",
                        call, (unsigned long long)ql->n, (unsigned long long)kl->n);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (ql->n < 1 || ql->n > FA_MAX_SEQS) {
        acltd_set_error("%s: %llu sequences; the documented range is 1 to %d", call, (unsigned long long)ql->n,
                        FA_MAX_SEQS);
        return ACLNN_ERR_PARAM_INVALID;
    }
    int64_t n = (int64_t)ql->n, tot[2] = {d->S1, d->S2};
    e->list = malloc(sizeof(int64_t) * 2 * n);
    e->nlist = 2 * n;
    for (int w = 0; w < 2; w++) {
        int64_t prev = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t x = a[w]->v[i];
            if (x < prev) {
                acltd_set_error("%s: %s[%lld] = %lld after %lld; the lengths are cumulative (prefix sums)", call,
                                nm[w], (long long)i, (long long)x, (long long)prev);
                return ACLNN_ERR_PARAM_INVALID;
            }
            e->list[w * n + i] = prev = x;
        }
        if (prev > tot[w]) {
            acltd_set_error("%s: %s sums to %lld, more than the %lld tokens of %s", call, nm[w], (long long)prev,
                            (long long)tot[w], w ? "key" : "query");
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    d->B = n;
    return 0;
}

/* One sequence: batch b (dense) or sequence b (TND), its queries start at
 * token q0 and number s1, its keys start at k0 and number s2. */
typedef struct {
    int64_t b, q0, s1, k0, s2;
} fa_seq;

static fa_seq fa_seq_of(const aclOpExecutor *e, int64_t b) {
    fa_seq s = {b, 0, e->arr[1], 0, e->arr[2]};
    if (e->i[3] == L_TND) {
        int64_t n = e->nlist / 2;
        const int64_t *q = e->list, *k = e->list + n;
        s.q0 = b ? q[b - 1] : 0, s.s1 = q[b] - s.q0;
        s.k0 = b ? k[b - 1] : 0, s.s2 = k[b] - s.k0;
    }
    return s;
}

/* fa_off is the element offset of element d of head n of token s (the
 * absolute token for TND) of batch b in tensor t of layout L, heads of size
 * hd. */
static int64_t fa_off(const td_view *t, int L, int64_t b, int64_t s, int64_t n, int64_t d, int64_t hd) {
    int64_t idx[4];
    switch (L) {
    case L_BSND: idx[0] = b, idx[1] = s, idx[2] = n, idx[3] = d; break;
    case L_BNSD: idx[0] = b, idx[1] = n, idx[2] = s, idx[3] = d; break;
    case L_BSH: idx[0] = b, idx[1] = s, idx[2] = n * hd + d; break;
    case L_SBH: idx[0] = s, idx[1] = b, idx[2] = n * hd + d; break;
    default: idx[0] = s, idx[1] = n, idx[2] = d; break;
    }
    return v_off(t, idx);
}

/* fa_stat_off is the offset of copy r of the statistic of query i (token
 * s for TND) of head n. Dense layouts: [B, N1, Sq, 8]. TND: the tensor is
 * declared [T1, N1, 8], but the V1 kernels (ops-transformer,
 * flash_attention_score_s1s2_bn2gs1.h, the softmaxMaxOffset written when
 * tndSoftmaxOut is 0; the gradient reads it back the same way) lay out one
 * [N1, s_b, 8] block per sequence b, the blocks one after another in
 * actualSeqQLen order: token s of sequence b, which starts at cumulative
 * query q0 and holds s1 queries, is row q0*N1 + n*s1 + (s - q0). Tokens
 * after the last sequence (b = the number of sequences) are taken for one
 * more such block. */
static int64_t fa_stat_off(const aclOpExecutor *e, const td_view *t, int64_t b, int64_t s, int64_t n, int r) {
    int64_t idx[4];
    if (e->i[3] == L_TND) {
        int64_t nseq = e->nlist / 2, N1 = e->arr[3], q0, s1;
        if (b < nseq) {
            fa_seq sq = fa_seq_of(e, b);
            q0 = sq.q0, s1 = sq.s1;
        } else {
            q0 = nseq ? e->list[nseq - 1] : 0, s1 = e->arr[1] - q0;
        }
        unravel((q0 * N1 + n * s1 + (s - q0)) * 8 + r, t->dims, 3, idx);
        return v_off(t, idx);
    }
    idx[0] = b, idx[1] = n, idx[2] = s, idx[3] = r;
    return v_off(t, idx);
}

static int fa_mask_at(const td_view *m, int64_t b, int64_t n, int64_t i, int64_t j) {
    int64_t idx[4];
    if (m->ndim == 2) {
        idx[0] = i, idx[1] = j;
    } else {
        idx[0] = m->dims[0] == 1 ? 0 : b, idx[1] = m->dims[1] == 1 ? 0 : n, idx[2] = i, idx[3] = j;
    }
    return ((const unsigned char *)m->data)[v_off(m, idx)] != 0;
}

/* fa_sees reports whether query i of head n1 of sequence sq sees key j. */
static int fa_sees(const aclOpExecutor *e, const fa_seq *sq, int64_t n1, int64_t i, int64_t j) {
    if (!e->has[S_MASK]) return 1;
    int64_t pre = e->i[0], next = e->i[1], o = sq->s2 - sq->s1;
    switch (e->i[2]) {
    case 0:
        if (j - i > next || i - j > pre) return 0;
        return !fa_mask_at(&e->t[S_MASK], sq->b, n1, i, j);
    case 1: return !fa_mask_at(&e->t[S_MASK], sq->b, n1, i, j);
    case 2: return j <= i;
    case 3: return j <= i + o;
    default: return j >= i + o - pre && j <= i + o + next;
    }
}

/* fa_check_mask runs with the operator (the mask's contents are device
 * data): modes 2, 3 and 4 need the compressed triangle, mode 0 a mask that
 * masks everything outside its band. */
static int fa_check_mask(const aclOpExecutor *e) {
    if (!e->has[S_MASK]) return 0;
    const td_view *m = &e->t[S_MASK];
    int64_t mode = e->i[2];
    if (mode >= 2) {
        for (int64_t r = 0; r < FA_MASK; r++)
            for (int64_t c = 0; c < FA_MASK; c++)
                if (fa_mask_at(m, 0, 0, r, c) != (c > r)) {
                    acltd_set_error("%s: sparseMode %lld needs the compressed mask (1 above the diagonal of "
                                    "[2048, 2048]); element [%lld, %lld] is %d",
                                    e->name, (long long)mode, (long long)r, (long long)c, fa_mask_at(m, 0, 0, r, c));
                    return ACL_ERROR_RT_AICORE_EXCEPTION;
                }
        return 0;
    }
    if (mode != 0) return 0;
    int64_t pre = e->i[0], next = e->i[1], S1 = e->arr[1], S2 = e->arr[2];
    int64_t B = m->ndim == 4 ? m->dims[0] : 1, N = m->ndim == 4 ? m->dims[1] : 1;
    for (int64_t b = 0; b < B; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < S1; i++)
                for (int64_t j = 0; j < S2; j++)
                    if ((j - i > next || i - j > pre) && !fa_mask_at(m, b, n, i, j)) {
                        acltd_set_error("%s: attenMask leaves query %lld key %lld visible outside the band of "
                                        "preTokens %lld, nextTokens %lld, which CANN requires it to agree with",
                                        e->name, (long long)i, (long long)j, (long long)pre, (long long)next);
                        return ACL_ERROR_RT_AICORE_EXCEPTION;
                    }
    return 0;
}

static int fa_nseqs(const aclOpExecutor *e) { return (int)e->arr[0]; }

static int run_fa_forward(aclOpExecutor *e, char *ws) {
    int st = fa_check_mask(e);
    if (st) return st;
    int L = (int)e->i[3];
    int64_t N1 = e->arr[3], N2 = e->arr[4], D = e->arr[5], Dv = e->arr[6], G = N1 / N2;
    const td_view *q = &e->t[S_Q], *k = &e->t[S_K], *v = &e->t[S_V], *mx = &e->t[S_MAX], *sm = &e->t[S_SUM],
                  *out = &e->t[S_OUT];
    double scale = e->f[0], *row = (double *)ws;
    int64_t covered = 0;
    for (int64_t b = 0; b < fa_nseqs(e); b++) {
        fa_seq sq = fa_seq_of(e, b);
        covered = sq.q0 + sq.s1;
        for (int64_t n = 0; n < N1; n++) {
            int64_t g = n / G;
            for (int64_t i = 0; i < sq.s1; i++) {
                int64_t qs = sq.q0 + i;
                double m = -INFINITY;
                int any = 0;
                for (int64_t j = 0; j < sq.s2; j++) {
                    row[j] = -INFINITY;
                    if (!fa_sees(e, &sq, n, i, j)) continue;
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += v_get(q, fa_off(q, L, b, qs, n, d, D)) * v_get(k, fa_off(k, L, b, sq.k0 + j, g, d, D));
                    row[j] = s * scale;
                    if (row[j] > m) m = row[j];
                    any = 1;
                }
                if (!any) {
                    acltd_set_error("%s: query %lld of head %lld in sequence %lld sees no key (CANN leaves such rows "
                                    "to innerPrecise; the double refuses them)",
                                    e->name, (long long)i, (long long)n, (long long)b);
                    return ACL_ERROR_RT_AICORE_EXCEPTION;
                }
                double sum = 0;
                for (int64_t j = 0; j < sq.s2; j++)
                    if (row[j] > -INFINITY) sum += exp(row[j] - m);
                for (int64_t d = 0; d < Dv; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < sq.s2; j++)
                        if (row[j] > -INFINITY)
                            acc += exp(row[j] - m) * v_get(v, fa_off(v, L, b, sq.k0 + j, g, d, Dv));
                    v_set(out, fa_off(out, L, b, qs, n, d, Dv), acc / sum);
                }
                for (int r = 0; r < 8; r++) {
                    v_set(mx, fa_stat_off(e, mx, b, qs, n, r), m);
                    v_set(sm, fa_stat_off(e, sm, b, qs, n, r), sum);
                }
            }
        }
    }
    if (L == L_TND) {
        /* Tokens after the last sequence: nothing to attend with. */
        for (int64_t t = covered; t < e->arr[1]; t++)
            for (int64_t n = 0; n < N1; n++) {
                for (int64_t d = 0; d < Dv; d++) v_set(out, fa_off(out, L, 0, t, n, d, Dv), 0);
                for (int r = 0; r < 8; r++) {
                    v_set(mx, fa_stat_off(e, mx, fa_nseqs(e), t, n, r), 0);
                    v_set(sm, fa_stat_off(e, sm, fa_nseqs(e), t, n, r), 0);
                }
            }
    }
    return 0;
}

/* fa_stat reads the statistic of one query and checks that its 8 copies
 * agree. */
static int fa_stat(const aclOpExecutor *e, int slot, int64_t b, int64_t s, int64_t n, double *out) {
    const td_view *t = &e->t[slot];
    double x = v_get(t, fa_stat_off(e, t, b, s, n, 0));
    for (int r = 1; r < 8; r++) {
        double y = v_get(t, fa_stat_off(e, t, b, s, n, r));
        if (!(y == x) && !(isnan(x) && isnan(y))) {
            acltd_set_error("%s: the 8 copies of %s for token %lld of head %lld differ (%g, then %g)", e->name,
                            e->tname[slot], (long long)s, (long long)n, x, y);
            return ACL_ERROR_RT_AICORE_EXCEPTION;
        }
    }
    *out = x;
    return 0;
}

static int run_fa_grad(aclOpExecutor *e, char *ws) {
    int st = fa_check_mask(e);
    if (st) return st;
    int L = (int)e->i[3];
    int64_t N1 = e->arr[3], N2 = e->arr[4], D = e->arr[5], Dv = e->arr[6], G = N1 / N2;
    const td_view *q = &e->t[S_Q], *k = &e->t[S_K], *v = &e->t[S_V], *o = &e->t[S_OUT], *dy = &e->t[S_DY],
                  *dq = &e->t[S_DQ], *dk = &e->t[S_DK], *dv = &e->t[S_DV];
    int64_t rows = L == L_TND ? e->arr[2] : e->arr[0] * e->arr[2]; /* key rows: T2 or B·S2 */
    double scale = e->f[0];
    double *adk = (double *)ws, *adv = adk + rows * N2 * D, *aq = adv + rows * N2 * Dv, *p = aq + D;
    memset(adk, 0, sizeof(double) * (size_t)(rows * N2 * (D + Dv)));
    int64_t covered = 0;
    for (int64_t b = 0; b < fa_nseqs(e); b++) {
        fa_seq sq = fa_seq_of(e, b);
        covered = sq.q0 + sq.s1;
        int64_t kr0 = L == L_TND ? sq.k0 : b * e->arr[2];
        for (int64_t n = 0; n < N1; n++) {
            int64_t g = n / G;
            for (int64_t i = 0; i < sq.s1; i++) {
                int64_t qs = sq.q0 + i;
                double m, sum;
                if ((st = fa_stat(e, S_MAX, b, qs, n, &m)) || (st = fa_stat(e, S_SUM, b, qs, n, &sum))) return st;
                double delta = 0;
                for (int64_t d = 0; d < Dv; d++)
                    delta += v_get(dy, fa_off(dy, L, b, qs, n, d, Dv)) * v_get(o, fa_off(o, L, b, qs, n, d, Dv));
                int any = 0;
                for (int64_t j = 0; j < sq.s2; j++) {
                    p[j] = 0;
                    if (!fa_sees(e, &sq, n, i, j)) continue;
                    any = 1;
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += v_get(q, fa_off(q, L, b, qs, n, d, D)) * v_get(k, fa_off(k, L, b, sq.k0 + j, g, d, D));
                    p[j] = exp(s * scale - m) / sum;
                }
                if (!any) {
                    acltd_set_error("%s: query %lld of head %lld in sequence %lld sees no key", e->name, (long long)i,
                                    (long long)n, (long long)b);
                    return ACL_ERROR_RT_AICORE_EXCEPTION;
                }
                for (int64_t d = 0; d < D; d++) aq[d] = 0;
                for (int64_t j = 0; j < sq.s2; j++) {
                    if (p[j] == 0) continue;
                    double dp = 0;
                    for (int64_t d = 0; d < Dv; d++)
                        dp += v_get(dy, fa_off(dy, L, b, qs, n, d, Dv)) * v_get(v, fa_off(v, L, b, sq.k0 + j, g, d, Dv));
                    double ds = p[j] * (dp - delta) * scale;
                    double *rk = adk + ((kr0 + j) * N2 + g) * D, *rv = adv + ((kr0 + j) * N2 + g) * Dv;
                    for (int64_t d = 0; d < D; d++) {
                        aq[d] += ds * v_get(k, fa_off(k, L, b, sq.k0 + j, g, d, D));
                        rk[d] += ds * v_get(q, fa_off(q, L, b, qs, n, d, D));
                    }
                    for (int64_t d = 0; d < Dv; d++) rv[d] += p[j] * v_get(dy, fa_off(dy, L, b, qs, n, d, Dv));
                }
                for (int64_t d = 0; d < D; d++) v_set(dq, fa_off(dq, L, b, qs, n, d, D), aq[d]);
            }
        }
    }
    if (L == L_TND)
        for (int64_t t = covered; t < e->arr[1]; t++)
            for (int64_t n = 0; n < N1; n++)
                for (int64_t d = 0; d < D; d++) v_set(dq, fa_off(dq, L, 0, t, n, d, D), 0);
    for (int64_t r = 0; r < rows; r++) {
        int64_t b = L == L_TND ? 0 : r / e->arr[2], s = L == L_TND ? r : r % e->arr[2];
        for (int64_t g = 0; g < N2; g++) {
            for (int64_t d = 0; d < D; d++) v_set(dk, fa_off(dk, L, b, s, g, d, D), adk[(r * N2 + g) * D + d]);
            for (int64_t d = 0; d < Dv; d++) v_set(dv, fa_off(dv, L, b, s, g, d, Dv), adv[(r * N2 + g) * Dv + d]);
        }
    }
    return 0;
}

/* fa_optional_absent refuses the inputs the double does not implement. */
static int fa_unimplemented(const char *call, const void *pse, const void *drop, const void *pad, const void *prefix,
                            double keepProb) {
    if (!(keepProb > 0 && keepProb <= 1)) {
        acltd_set_error("%s: keepProb %g is outside (0, 1]", call, keepProb);
        return ACLNN_ERR_PARAM_INVALID;
    }
    const char *what = pse ? "pse (realShift/pseShift)" : drop || keepProb != 1 ? "dropout (dropMask, keepProb < 1)"
                       : pad                                                    ? "paddingMask (reserved)"
                       : prefix                                                 ? "prefix"
                                                                                : NULL;
    if (what) {
        acltd_set_error("%s: %s is not implemented by the test double", call, what);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

/* fa_chip: CANN documents the operators for Atlas A2 and A3 parts only;
 * the training series (first 910s), the inference series (310P) and the
 * Atlas 200I/500 A2 (310B) lack them. */
static int fa_chip(const char *call) {
    const char *soc = acltd_soc_name();
    if (acltd_soc_float16_cube() || strncmp(soc, "Ascend310", 9) == 0) {
        acltd_set_error("%s: not supported on %s (CANN documents this operator for Atlas A2 and A3 parts)", call, soc);
        return ACLNN_ERR_PARAM_INVALID;
    }
    return 0;
}

/* fa_sparse checks sparseMode, preTokens, nextTokens and the mask for
 * dims d (sequence lengths in e->list for TND). */
static int fa_sparse(const char *call, aclOpExecutor *e, const fa_dims *d, int64_t pre, int64_t next, int64_t mode) {
    int varlen = d->layout == L_TND;
    if (pre > FA_TOKEN_LIMIT || pre < -FA_TOKEN_LIMIT || next > FA_TOKEN_LIMIT || next < -FA_TOKEN_LIMIT) {
        acltd_set_error("%s: preTokens %lld or nextTokens %lld beyond the +-2^40 the test double handles", call,
                        (long long)pre, (long long)next);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (mode < 0 || mode > (varlen ? 8 : 6) || (varlen && mode == 5)) {
        acltd_set_error("%s: sparseMode %lld is not supported%s", call, (long long)mode,
                        varlen ? " by the variable-length operators (0-4, 6-8)" : " (0-6)");
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (mode == 5 || mode == 6 || mode == 7 || mode == 8 || (varlen && mode == 1)) {
        acltd_set_error("%s: sparseMode %lld is not implemented by the test double", call, (long long)mode);
        return ACLNN_ERR_PARAM_INVALID;
    }
    if (!e->has[S_MASK]) return 0; /* full computation: the mode and tokens do not apply */
    const td_view *m = &e->t[S_MASK];
    if (m->dtype != ACL_BOOL && m->dtype != ACL_UINT8) {
        acltd_set_error("%s: attenMaskOptional has data type %d; want ACL_BOOL or ACL_UINT8", call, m->dtype);
        return ACLNN_ERR_PARAM_INVALID;
    }
    /* The gradient's operator definition (flash_attention_score_grad_def.cpp)
     * pairs FLOAT query with a BOOL atten_mask only; the forward takes
     * UINT8 too. */
    if (e->i[4] && m->dtype != ACL_BOOL) {
        acltd_set_error("%s: attenMaskOptional has data type %d; with FLOAT inputs the gradient takes ACL_BOOL only",
                        call, m->dtype);
        return ACLNN_ERR_PARAM_INVALID;
    }
    char x[128];
    shape_str(m, x, sizeof x);
    if (mode >= 2) {
        if (m->ndim != 2 || m->dims[0] != FA_MASK || m->dims[1] != FA_MASK) {
            acltd_set_error("%s: attenMaskOptional is %s; sparseMode %lld takes the compressed mask [2048, 2048]%s",
                            call, x, (long long)mode,
                            m->ndim == 4 ? " (a 4-D compressed mask is not implemented by the test double)" : "");
            return ACLNN_ERR_PARAM_INVALID;
        }
    } else if (varlen) {
        acltd_set_error("%s: a full attenMask (sparseMode %lld) with layout TND is not implemented by the test double",
                        call, (long long)mode);
        return ACLNN_ERR_PARAM_INVALID;
    } else {
        int ok = (m->ndim == 2 && m->dims[0] == d->S1 && m->dims[1] == d->S2) ||
                 (m->ndim == 4 && (m->dims[0] == 1 || m->dims[0] == d->B) &&
                  (m->dims[1] == 1 || (m->dims[1] == d->N1 && m->dims[0] == d->B)) && m->dims[2] == d->S1 &&
                  m->dims[3] == d->S2);
        if (!ok) {
            acltd_set_error("%s: attenMaskOptional is %s; want [Sq, Skv], [1, 1, Sq, Skv], [B, 1, Sq, Skv] or [B, N1, "
                            "Sq, Skv] with B %lld, N1 %lld, Sq %lld, Skv %lld",
                            call, x, (long long)d->B, (long long)d->N1, (long long)d->S1, (long long)d->S2);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    if (!varlen) {
        if (mode == 0 && !(pre >= d->S1 && next >= d->S2) && !(pre >= d->S1 && next == 0))
            return fa_band_ok(call, pre, next, d->S1, d->S2);
        if (mode == 4) return fa_band_ok(call, pre + d->S1 - d->S2, next + d->S2 - d->S1, d->S1, d->S2);
        return 0;
    }
    int64_t n = e->nlist / 2;
    if (mode == 4) {
        if (pre < 0) {
            acltd_set_error("%s: preTokens %lld must not be negative in band mode with layout TND", call,
                            (long long)pre);
            return ACLNN_ERR_PARAM_INVALID;
        }
        if (next < 0 && pre + next < 0) {
            acltd_set_error("%s: preTokens %lld and nextTokens %lld leave no band", call, (long long)pre,
                            (long long)next);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    for (int64_t b = 0; b < n; b++) {
        fa_seq sq = fa_seq_of(e, b);
        if (mode == 3 && sq.s1 > sq.s2) {
            acltd_set_error("%s: sequence %lld has %lld queries and %lld keys; sparseMode 3 needs Sq <= Skv", call,
                            (long long)b, (long long)sq.s1, (long long)sq.s2);
            return ACLNN_ERR_PARAM_INVALID;
        }
        if (mode == 4 && sq.s1 && sq.s2 && sq.s1 - next > sq.s2) {
            acltd_set_error("%s: sequence %lld (Sq %lld, Skv %lld) has rows without keys with nextTokens %lld", call,
                            (long long)b, (long long)sq.s1, (long long)sq.s2, (long long)next);
            return ACLNN_ERR_PARAM_INVALID;
        }
    }
    return 0;
}

/* fa_prepare is phase one of all four operators. For the forward, tensors
 * out[0..2] are softmaxMax, softmaxSum, attentionOut; for the gradients
 * in[0..3] are softmaxMax, softmaxSum, attentionIn, dy and out[0..2] dq, dk,
 * dv. */
static aclnnStatus fa_prepare(const char *call, const char *name, int grad, const aclTensor *query,
                              const aclTensor *key, const aclTensor *value, const aclTensor *pse,
                              const aclTensor *dropMask, const aclTensor *paddingMask, const aclTensor *attenMask,
                              const aclIntArray *prefix, const aclIntArray *seqQ, const aclIntArray *seqKv,
                              int varlen, double scaleValue, double keepProb, int64_t preTokens, int64_t nextTokens,
                              int64_t headNum, const char *inputLayout, int64_t sparseMode, const aclTensor **in,
                              const aclTensor **out, uint64_t *workspaceSize, aclOpExecutor **executor) {
    int st = acltd_enter(call);
    if (st) return st;
    aclOpExecutor *e = ex_new(name);
    fa_dims d;
    int L;
    TRY(fa_chip(call));
    TRY(ex_tensor(e, call, "query", query, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, grad ? "keyIn" : "key", key, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "value", value, T_REQ, DT_FLOAT));
    TRY(ex_tensor(e, call, "attenMaskOptional", attenMask, T_OPT, DT_ANY));
    TRY(ex_tensor(e, call, grad ? "softmaxMaxOptional" : "softmaxMaxOut", grad ? in[0] : out[0], T_REQ, DT_ANY));
    TRY(ex_tensor(e, call, grad ? "softmaxSumOptional" : "softmaxSumOut", grad ? in[1] : out[1], T_REQ, DT_ANY));
    TRY(ex_tensor(e, call, grad ? "attentionInOptional" : "attentionOutOut", grad ? in[2] : out[2], T_REQ, DT_FLOAT));
    if (grad) {
        TRY(ex_tensor(e, call, "dy", in[3], T_REQ, DT_FLOAT));
        TRY(ex_tensor(e, call, "dqOut", out[0], T_REQ, DT_FLOAT));
        TRY(ex_tensor(e, call, "dkOut", out[1], T_REQ, DT_FLOAT));
        TRY(ex_tensor(e, call, "dvOut", out[2], T_REQ, DT_FLOAT));
    }
    TRY(fa_unimplemented(call, pse, dropMask, paddingMask, prefix, keepProb));
    TRY(fa_layout(call, inputLayout, varlen, &L));
    TRY(fa_dims_of(call, &e->t[S_Q], &e->t[S_K], &e->t[S_V], L, headNum, &d));
    if (varlen && grad && d.D > FA_MAX_UNPAD_D) {
        acltd_set_error("%s: head size D %lld; this operator takes 1 <= D <= %d", call, (long long)d.D,
                        FA_MAX_UNPAD_D);
        st = ACLNN_ERR_PARAM_INVALID;
        goto fail;
    }
    if (varlen) TRY(fa_seqs(call, e, seqQ, seqKv, &d));
    TRY(fa_stat_shape(call, e, S_MAX, &d));
    TRY(fa_stat_shape(call, e, S_SUM, &d));
    /* attentionOut/attentionIn has query's shape with value's D, as dy
     * has; with equal head sizes simply query's shape. */
    if (d.Dv == d.D) {
        TRY(fa_same(call, e, S_OUT, S_Q));
        if (grad) TRY(fa_same(call, e, S_DY, S_Q));
    } else {
        acltd_set_error("%s: value D %lld differs from D %lld: not implemented by the test double", call,
                        (long long)d.Dv, (long long)d.D);
        st = ACLNN_ERR_PARAM_INVALID;
        goto fail;
    }
    if (grad) {
        TRY(fa_same(call, e, S_DQ, S_Q));
        TRY(fa_same(call, e, S_DK, S_K));
        TRY(fa_same(call, e, S_DV, S_V));
    }
    e->f[0] = scaleValue;
    e->i[0] = preTokens, e->i[1] = nextTokens, e->i[2] = sparseMode, e->i[3] = L, e->i[4] = grad;
    e->arr[0] = d.B, e->arr[1] = d.S1, e->arr[2] = d.S2, e->arr[3] = d.N1, e->arr[4] = d.N2, e->arr[5] = d.D,
    e->arr[6] = d.Dv;
    TRY(fa_sparse(call, e, &d, preTokens, nextTokens, sparseMode));
    if (grad) {
        TRY(check_no_alias(e, call, S_DQ, S_DV, 0, S_DV));
    } else {
        TRY(check_no_alias(e, call, S_MAX, S_OUT, 0, S_OUT));
    }
    int64_t s2max = d.S2;
    if (varlen) {
        s2max = 0;
        for (int64_t b = 0; b < d.B; b++) {
            fa_seq sq = fa_seq_of(e, b);
            if (sq.s2 > s2max) s2max = sq.s2;
        }
    }
    uint64_t ws = (uint64_t)(s2max + 1) * 8;
    if (grad) {
        int64_t rows = varlen ? d.S2 : d.B * d.S2;
        ws += (uint64_t)(rows * d.N2 * (d.D + d.Dv) + d.D) * 8;
    }
    e->run = grad ? run_fa_grad : run_fa_forward;
    TRY(ex_finish(e, call, ws, workspaceSize, executor));
    return 0;
fail:
    ex_free(e);
    return st;
}

TD_EXPORT aclnnStatus aclnnFlashAttentionScoreGetWorkspaceSize(
    const aclTensor *query, const aclTensor *key, const aclTensor *value, const aclTensor *realShiftOptional,
    const aclTensor *dropMaskOptional, const aclTensor *paddingMaskOptional, const aclTensor *attenMaskOptional,
    const aclIntArray *prefixOptional, double scaleValue, double keepProb, int64_t preTokens, int64_t nextTokens,
    int64_t headNum, char *inputLayout, int64_t innerPrecise, int64_t sparseMode, const aclTensor *softmaxMaxOut,
    const aclTensor *softmaxSumOut, const aclTensor *softmaxOutOut, const aclTensor *attentionOutOut,
    uint64_t *workspaceSize, aclOpExecutor **executor) {
    (void)innerPrecise, (void)softmaxOutOut; /* reserved */
    const aclTensor *out[3] = {softmaxMaxOut, softmaxSumOut, attentionOutOut};
    return fa_prepare("aclnnFlashAttentionScoreGetWorkspaceSize", "aclnnFlashAttentionScore", 0, query, key, value,
                      realShiftOptional, dropMaskOptional, paddingMaskOptional, attenMaskOptional, prefixOptional,
                      NULL, NULL, 0, scaleValue, keepProb, preTokens, nextTokens, headNum, inputLayout, sparseMode,
                      NULL, out, workspaceSize, executor);
}
LAUNCH(FlashAttentionScore)

TD_EXPORT aclnnStatus aclnnFlashAttentionVarLenScoreGetWorkspaceSize(
    const aclTensor *query, const aclTensor *key, const aclTensor *value, const aclTensor *realShiftOptional,
    const aclTensor *dropMaskOptional, const aclTensor *paddingMaskOptional, const aclTensor *attenMaskOptional,
    const aclIntArray *prefixOptional, const aclIntArray *actualSeqQLenOptional,
    const aclIntArray *actualSeqKvLenOptional, double scaleValue, double keepProb, int64_t preTokens,
    int64_t nextTokens, int64_t headNum, char *inputLayout, int64_t innerPrecise, int64_t sparseMode,
    const aclTensor *softmaxMaxOut, const aclTensor *softmaxSumOut, const aclTensor *softmaxOutOut,
    const aclTensor *attentionOutOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    (void)innerPrecise, (void)softmaxOutOut;
    const aclTensor *out[3] = {softmaxMaxOut, softmaxSumOut, attentionOutOut};
    return fa_prepare("aclnnFlashAttentionVarLenScoreGetWorkspaceSize", "aclnnFlashAttentionVarLenScore", 0, query,
                      key, value, realShiftOptional, dropMaskOptional, paddingMaskOptional, attenMaskOptional,
                      prefixOptional, actualSeqQLenOptional, actualSeqKvLenOptional, 1, scaleValue, keepProb,
                      preTokens, nextTokens, headNum, inputLayout, sparseMode, NULL, out, workspaceSize, executor);
}
LAUNCH(FlashAttentionVarLenScore)

TD_EXPORT aclnnStatus aclnnFlashAttentionScoreGradGetWorkspaceSize(
    const aclTensor *query, const aclTensor *keyIn, const aclTensor *value, const aclTensor *dy,
    const aclTensor *pseShiftOptional, const aclTensor *dropMaskOptional, const aclTensor *paddingMaskOptional,
    const aclTensor *attenMaskOptional, const aclTensor *softmaxMaxOptional, const aclTensor *softmaxSumOptional,
    const aclTensor *softmaxInOptional, const aclTensor *attentionInOptional, const aclIntArray *prefixOptional,
    double scaleValue, double keepProb, int64_t preTokens, int64_t nextTokens, int64_t headNum, char *inputLayout,
    int64_t innerPrecise, int64_t sparseMode, const aclTensor *dqOut, const aclTensor *dkOut, const aclTensor *dvOut,
    const aclTensor *dpseOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    (void)innerPrecise, (void)softmaxInOptional, (void)dpseOut; /* reserved */
    const aclTensor *in[4] = {softmaxMaxOptional, softmaxSumOptional, attentionInOptional, dy};
    const aclTensor *out[3] = {dqOut, dkOut, dvOut};
    return fa_prepare("aclnnFlashAttentionScoreGradGetWorkspaceSize", "aclnnFlashAttentionScoreGrad", 1, query, keyIn,
                      value, pseShiftOptional, dropMaskOptional, paddingMaskOptional, attenMaskOptional,
                      prefixOptional, NULL, NULL, 0, scaleValue, keepProb, preTokens, nextTokens, headNum, inputLayout,
                      sparseMode, in, out, workspaceSize, executor);
}
LAUNCH(FlashAttentionScoreGrad)

TD_EXPORT aclnnStatus aclnnFlashAttentionUnpaddingScoreGradGetWorkspaceSize(
    const aclTensor *query, const aclTensor *keyIn, const aclTensor *value, const aclTensor *dy,
    const aclTensor *pseShiftOptional, const aclTensor *dropMaskOptional, const aclTensor *paddingMaskOptional,
    const aclTensor *attenMaskOptional, const aclTensor *softmaxMaxOptional, const aclTensor *softmaxSumOptional,
    const aclTensor *softmaxInOptional, const aclTensor *attentionInOptional, const aclIntArray *prefixOptional,
    const aclIntArray *actualSeqQLenOptional, const aclIntArray *actualSeqKvLenOptional, double scaleValue,
    double keepProb, int64_t preTokens, int64_t nextTokens, int64_t headNum, char *inputLayout, int64_t innerPrecise,
    int64_t sparseMode, const aclTensor *dqOut, const aclTensor *dkOut, const aclTensor *dvOut,
    const aclTensor *dpseOut, uint64_t *workspaceSize, aclOpExecutor **executor) {
    (void)innerPrecise, (void)softmaxInOptional, (void)dpseOut;
    const aclTensor *in[4] = {softmaxMaxOptional, softmaxSumOptional, attentionInOptional, dy};
    const aclTensor *out[3] = {dqOut, dkOut, dvOut};
    return fa_prepare("aclnnFlashAttentionUnpaddingScoreGradGetWorkspaceSize", "aclnnFlashAttentionUnpaddingScoreGrad",
                      1, query, keyIn, value, pseShiftOptional, dropMaskOptional, paddingMaskOptional,
                      attenMaskOptional, prefixOptional, actualSeqQLenOptional, actualSeqKvLenOptional, 1, scaleValue,
                      keepProb, preTokens, nextTokens, headNum, inputLayout, sparseMode, in, out, workspaceSize,
                      executor);
}
LAUNCH(FlashAttentionUnpaddingScoreGrad)

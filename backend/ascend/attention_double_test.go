package ascend

import (
	"errors"
	"math/rand"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
)

// rawFlash makes one call of a fused attention operator with the
// arguments args builds (from views of the call's own temporaries or of
// tensors uploaded beforehand), inside an op of b, and returns what Sync
// reports.
func rawFlash(b *Backend, name string, args func(c *call) faCall) error {
	b.do(backend.OpAttention, nil, func(c *call) { c.flash(name, args(c)) })
	return b.Sync()
}

// TestFlashAttentionDoubleRejects checks that the double refuses the calls
// CANN's documentation (or its operators' host code) says the real
// operators refuse, in phase one, and fails, when it runs, the calls whose
// result CANN leaves undefined. Each case is one bad argument in an
// otherwise valid call, which the first case makes.
func TestFlashAttentionDoubleRejects(t *testing.T) {
	b, _ := openDouble(t, Options{})
	const B, T, H, KV, D = 1, 4, 2, 1, 8
	r := rand.New(rand.NewSource(2))
	qT := upload(t, b, randn(r, B*T*H*D, -1, 1), B, T, H, D)
	kT := upload(t, b, randn(r, B*T*KV*D, -1, 1), B, T, KV, D)
	vT := upload(t, b, randn(r, B*T*KV*D, -1, 1), B, T, KV, D)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	causal := faPlan{mode: sparseRightDown, pre: maxTokens, next: 0, mask: true}
	// dense is a valid call of FlashAttentionScore (or, with grad, of its
	// gradient) on q, k, v; change edits it.
	dense := func(grad bool, change func(c *call, a *faCall)) func(c *call) faCall {
		return func(c *call) faCall {
			a := faCall{q: c.tensor(c.tensorOf(qT)), k: c.tensor(c.tensorOf(kT)), v: c.tensor(c.tensorOf(vT)),
				scale: 0.35, heads: H, plan: causal, layout: cBSND, mask: c.faMask(causal),
				max: c.tensor(c.temp(B, H, T, 8)), sum: c.tensor(c.temp(B, H, T, 8)), out: c.tensor(c.temp(B, T, H, D))}
			if grad {
				m, s := c.temp(B, H, T, 8), c.temp(B, H, T, 8)
				c.launch("InplaceFillScalar", c.tensor(m), c.scalar(0))
				c.launch("InplaceFillScalar", c.tensor(s), c.scalar(1))
				a.max, a.sum = c.tensor(m), c.tensor(s)
				a.dy = c.tensor(c.temp(B, T, H, D))
				c.launch("InplaceFillScalar", a.dy, c.scalar(1))
				c.launch("InplaceFillScalar", a.out, c.scalar(0.5))
				a.dq, a.dk, a.dv = c.tensor(c.temp(B, T, H, D)), c.tensor(c.temp(B, T, KV, D)), c.tensor(c.temp(B, T, KV, D))
			}
			if change != nil {
				change(c, &a)
			}
			return a
		}
	}
	// varlen is a valid call of the variable-length operators: the 4
	// tokens as sequences of 1 and 3.
	varlen := func(grad bool, change func(c *call, a *faCall)) func(c *call) faCall {
		return dense(grad, func(c *call, a *faCall) {
			a.layout = cTND
			a.q = c.tensor(rows(c.tensorOf(qT), 0, T))
			a.k, a.v = c.tensor(rows(c.tensorOf(kT), 0, T)), c.tensor(rows(c.tensorOf(vT), 0, T))
			if grad {
				a.dq = c.tensor(c.temp(T, H, D))
				a.dk, a.dv = c.tensor(c.temp(T, KV, D)), c.tensor(c.temp(T, KV, D))
				a.dy = c.tensor(c.temp(T, H, D))
				c.launch("InplaceFillScalar", a.dy, c.scalar(1))
				m, s := c.temp(T, H, 8), c.temp(T, H, 8)
				c.launch("InplaceFillScalar", c.tensor(m), c.scalar(0))
				c.launch("InplaceFillScalar", c.tensor(s), c.scalar(1))
				a.max, a.sum = c.tensor(m), c.tensor(s)
				a.out = c.tensor(c.temp(T, H, D))
				c.launch("InplaceFillScalar", a.out, c.scalar(0.5))
			} else {
				a.max, a.sum, a.out = c.tensor(c.temp(T, H, 8)), c.tensor(c.temp(T, H, 8)), c.tensor(c.temp(T, H, D))
			}
			a.seqQ, a.seqKv = c.intArray(1, 4), c.intArray(1, 4)
			if change != nil {
				change(c, a)
			}
		})
	}
	fullMask := func(c *call, a *faCall, rows, cols int, masked func(i, j int) bool) {
		m := make([]bool, rows*cols)
		for i := range rows {
			for j := range cols {
				m[i*cols+j] = masked(i, j)
			}
		}
		a.mask = c.tensor(c.uploadMask(m, rows, cols))
	}
	cases := []struct {
		name string
		op   string
		args func(c *call) faCall
		want string // in the error; "" for a valid call
	}{
		{"valid", "FlashAttentionScore", dense(false, nil), ""},
		{"valid gradient", "FlashAttentionScoreGrad", dense(true, nil), ""},
		{"valid variable-length", "FlashAttentionVarLenScore", varlen(false, nil), ""},
		{"valid variable-length gradient", "FlashAttentionUnpaddingScoreGrad", varlen(true, nil), ""},
		{"valid lower-case layout, band", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.layout = []byte("bsnd\x00")
			a.plan = faPlan{mode: sparseBand, pre: 1, next: 0, mask: true}
		}), ""},
		{"valid full mask in mode 0", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.plan = faPlan{mode: sparseDefault, pre: maxTokens, next: maxTokens}
			fullMask(c, a, T, T, func(i, j int) bool { return j > i })
		}), ""},

		// Phase one.
		{"headNum not the query's heads", "FlashAttentionScore", dense(false, func(c *call, a *faCall) { a.heads = 3 }),
			"headNum is 3, but query has 2 heads"},
		{"query heads not a multiple", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.q = c.tensor(c.temp(B, T, 3, D))
			a.out = c.tensor(c.temp(B, T, 3, D))
			a.max, a.sum = c.tensor(c.temp(B, 3, T, 8)), c.tensor(c.temp(B, 3, T, 8))
			a.k, a.v = c.tensor(c.temp(B, T, 2, D)), c.tensor(c.temp(B, T, 2, D))
			a.heads = 3
		}), "a multiple of N2"},
		{"head size above 768", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.q, a.out = c.tensor(c.temp(1, 1, 1, 800)), c.tensor(c.temp(1, 1, 1, 800))
			a.k, a.v = c.tensor(c.temp(1, 1, 1, 800)), c.tensor(c.temp(1, 1, 1, 800))
			a.max, a.sum = c.tensor(c.temp(1, 1, 1, 8)), c.tensor(c.temp(1, 1, 1, 8))
			a.heads = 1
		}), "<= 768"},
		{"TND to the dense operator", "FlashAttentionScore", dense(false, func(c *call, a *faCall) { a.layout = cTND }),
			"takes BSH, SBH, BSND or BNSD"},
		{"a full mask in mode 3", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			fullMask(c, a, T, T, func(i, j int) bool { return j > i })
		}), "takes the compressed mask [2048, 2048]"},
		{"a float mask", "FlashAttentionScore", dense(false, func(c *call, a *faCall) { a.mask = c.tensor(c.temp(T, T)) }),
			"want ACL_BOOL or ACL_UINT8"},
		{"a band of nothing", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.plan = faPlan{mode: sparseBand, pre: -3, next: -3, mask: true}
		}), "leave no key"},
		{"sparse mode 9", "FlashAttentionScore", dense(false, func(c *call, a *faCall) { a.plan.mode = 9 }),
			"sparseMode 9 is not supported"},
		{"prefix mode", "FlashAttentionScore", dense(false, func(c *call, a *faCall) { a.plan.mode = 6 }),
			"not implemented by the test double"},
		{"softmaxMax without its 8 copies", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.max = c.tensor(c.temp(B, H, T))
		}), "want FLOAT [B, N1, Sq, 8]"},
		{"attentionOut over the query", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.out = c.tensor(c.tensorOf(qT))
		}), "overlaps"},
		{"no attentionIn for the gradient", "FlashAttentionScoreGrad", dense(true, func(c *call, a *faCall) { a.out = 0 }),
			"attentionInOptional is NULL"},
		{"dk of the wrong shape", "FlashAttentionScoreGrad", dense(true, func(c *call, a *faCall) {
			a.dk = c.tensor(c.temp(B, T, H, D))
		}), "dkOut has shape"},
		{"BSND to the variable-length operator", "FlashAttentionVarLenScore", varlen(false, func(c *call, a *faCall) {
			a.layout = cBSND
		}), "is not TND"},
		{"lengths not cumulative", "FlashAttentionVarLenScore", varlen(false, func(c *call, a *faCall) {
			a.seqQ = c.intArray(3, 2)
			a.seqKv = c.intArray(3, 4)
		}), "cumulative"},
		{"query and key lengths not as many", "FlashAttentionVarLenScore", varlen(false, func(c *call, a *faCall) {
			a.seqQ = c.intArray(4)
		}), "they must be as many"},
		{"lengths past the tokens", "FlashAttentionVarLenScore", varlen(false, func(c *call, a *faCall) {
			a.seqQ, a.seqKv = c.intArray(1, 5), c.intArray(1, 5)
		}), "more than the 4 tokens"},
		{"more queries than keys in mode 3", "FlashAttentionVarLenScore", varlen(false, func(c *call, a *faCall) {
			a.seqKv = c.intArray(1, 3)
		}), "needs Sq <= Skv"},
		{"no sequence lengths", "FlashAttentionUnpaddingScoreGrad", varlen(true, func(c *call, a *faCall) { a.seqKv = 0 }),
			"actualSeqKvLenOptional is NULL"},
		{"statistics [N, T, 8]-shaped", "FlashAttentionVarLenScore", varlen(false, func(c *call, a *faCall) {
			a.max = c.tensor(c.temp(H, T, 8))
		}), "want FLOAT [T1, N1, 8]"},

		// When the operator runs.
		{"a compressed mask of zeros", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.mask = c.tensor(c.uploadMask(make([]bool, compressedMask*compressedMask), compressedMask, compressedMask))
		}), "needs the compressed mask"},
		{"a mode-0 mask wider than its band", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.plan = faPlan{mode: sparseDefault, pre: T, next: 0}
			fullMask(c, a, T, T, func(i, j int) bool { return false })
		}), "outside the band"},
		{"a query that sees no key", "FlashAttentionScore", dense(false, func(c *call, a *faCall) {
			a.plan = faPlan{mode: 1, pre: maxTokens, next: maxTokens}
			fullMask(c, a, T, T, func(i, j int) bool { return i == 2 })
		}), "sees no key"},
		{"softmaxMax copies that differ", "FlashAttentionScoreGrad", dense(true, func(c *call, a *faCall) {
			m := make([]float32, B*H*T*8)
			m[5] = 1
			a.max = c.tensor(c.uploadF32(m, B, H, T, 8))
		}), "the 8 copies of softmaxMaxOptional"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := rawFlash(b, tc.op, tc.args)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a valid call failed: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			var ae *ACLError
			if !errors.As(err, &ae) {
				t.Errorf("error %v is not an *ACLError", err)
			}
			t.Log(err)
		})
	}
}

// TestAttentionFailureInjection makes one call of a fused attention op
// fail at a time: phase one, phase two, the operator on the device, the
// sequence lengths' aclIntArray, and the allocation of the operator's
// workspace (which strands the executor phase one made: CANN has no way to
// free it). The failure must surface from Sync as an *ACLError naming the
// call and carrying the double's message; afterwards the backend computes
// attention correctly again, and (openDouble's cleanup) no device memory,
// host memory or ACL object is left behind.
func TestAttentionFailureInjection(t *testing.T) {
	const B, T, H, KV, D = 2, 6, 2, 1, 4
	causal := backend.AttentionParams{Scale: 0.5, Causal: true}
	packed := backend.AttentionParams{Scale: 0.5, Causal: true, Segments: []int32{0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0}}
	type run func(b *Backend, a *attnSetup) error
	forward := func(p backend.AttentionParams, lse bool) run {
		return func(b *Backend, a *attnSetup) error {
			l := a.lse
			if !lse {
				l = backend.Tensor{}
			}
			b.Attention(a.out, l, a.q, a.k, a.v, p)
			return b.Sync()
		}
	}
	grad := func(p backend.AttentionParams) run {
		return func(b *Backend, a *attnSetup) error {
			b.Attention(a.out, a.lse, a.q, a.k, a.v, p)
			if err := b.Sync(); err != nil {
				return err
			}
			dq, _ := b.Alloc(backend.Float32, B, T, H, D)
			dk, _ := b.Alloc(backend.Float32, B, T, KV, D)
			dv, _ := b.Alloc(backend.Float32, B, T, KV, D)
			defer b.Free(dq)
			defer b.Free(dk)
			defer b.Free(dv)
			b.AttentionGrad(dq, dk, dv, a.q, a.k, a.v, a.out, a.lse, a.q, p)
			return b.Sync()
		}
	}
	for _, tc := range []struct {
		name     string
		inj      injection
		run      run
		want     []string
		stranded int64
	}{
		{"phase one", injection{call: "aclnnFlashAttentionScoreGetWorkspaceSize", status: 161002, msg: "injected: refused"},
			forward(causal, true), []string{"attention [2, 6, 2, 4]", "ACLNN_ERR_PARAM_INVALID"}, 0},
		{"phase two", injection{call: "aclnnFlashAttentionVarLenScore", status: 361001, msg: "injected: launch failed"},
			forward(packed, true), []string{"ACLNN_ERR_RUNTIME_ERROR"}, 0},
		{"on the device", injection{call: "exec:aclnnFlashAttentionScoreGrad", status: 507015, msg: "injected: AI core exception"},
			grad(causal), []string{"aclrtSynchronizeStream", "ACL_ERROR_RT_AICORE_EXCEPTION"}, 0},
		{"gradient phase one", injection{call: "aclnnFlashAttentionUnpaddingScoreGradGetWorkspaceSize", status: 161002, msg: "injected: refused"},
			grad(packed), []string{"attention_grad"}, 0},
		{"sequence lengths", injection{call: "aclCreateIntArray", status: 1, msg: "injected: no int array"},
			forward(packed, false), []string{"returned NULL", "attention"}, 0},
		{"workspace", injection{call: "aclrtMalloc", status: 207001, msg: "injected: no room for a workspace"},
			forward(causal, false), []string{"workspace of", "aclnnFlashAttentionScore", "attention"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skip := 0
			if tc.inj.call == "aclrtMalloc" {
				// Count the allocations of the op on a fresh backend: the
				// workspace is the last one.
				b, d := openDouble(t, Options{})
				a := newAttn(t, b, rand.New(rand.NewSource(1)), B, T, T, H, KV, D)
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				n := d.Calls("aclrtMalloc")
				if err := tc.run(b, a); err != nil {
					t.Fatal(err)
				}
				skip = d.Calls("aclrtMalloc") - n - 1
			}
			b, d := openDouble(t, Options{})
			r := rand.New(rand.NewSource(1))
			a := newAttn(t, b, r, B, T, T, H, KV, D)
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := d.Inject(tc.inj.call, skip, 1, tc.inj.status, tc.inj.msg); err != nil {
				t.Fatal(err)
			}
			exec := d.Live("executors")
			err := tc.run(b, a)
			if err == nil {
				t.Fatalf("no error; calls: %v", d.Log())
			}
			t.Log(err)
			for _, w := range append([]string{strings.TrimPrefix(tc.inj.call, "exec:"), tc.inj.msg}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			var ae *ACLError
			if !errors.As(err, &ae) {
				t.Errorf("error %q is not an *ACLError", err)
			}
			if got := d.Live("executors") - exec; got != tc.stranded {
				t.Errorf("%d executors stranded, want %d", got, tc.stranded)
			}
			if d.Live("pending_tasks") != 0 {
				t.Errorf("%d tasks still queued", d.Live("pending_tasks"))
			}
			// The backend works again.
			for _, p := range []backend.AttentionParams{causal, packed} {
				b.Attention(a.out, a.lse, a.q, a.k, a.v, p)
				want, wantLSE := refAttention(a.qv, a.kv, a.vv, B, T, T, H, KV, D, p)
				checkClose(t, "out after the failure", download(t, b, a.out), want, 1e-10)
				checkClose(t, "lse after the failure", download(t, b, a.lse), wantLSE, 1e-12)
			}
		})
	}
}

package graph_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
	"github.com/sora-go/sora/graph/gradcheck"
)

// attnShape is an attention problem: q [B, Tq, H, D], k and v [B, Tk, KV, D].
type attnShape struct{ B, Tq, Tk, H, KV, D int }

func (s attnShape) q() []int  { return []int{s.B, s.Tq, s.H, s.D} }
func (s attnShape) kv() []int { return []int{s.B, s.Tk, s.KV, s.D} }

// visible reports whether query i sees key j under p's mask (the rules of
// backend.SoftmaxParams, written out here independently of the backends).
func visible(p backend.AttentionParams, i, j int) bool {
	if !p.Causal {
		return true
	}
	last := i + p.QueryOffset
	return j <= last && (p.Window == 0 || j > last-p.Window)
}

// refAttention is attention in float64 from the definition: per batch b,
// head h and query i, s_j = cap(Scale·q·k_j) over the visible keys,
// out = Σ_j softmax(s)_j·v_j, with key/value head h/(H/KV). It also returns
// the log-sum-exp of each row, [B, H, Tq], and the probabilities
// [B, H, Tq, Tk] (0 where masked).
func refAttention(s attnShape, p backend.AttentionParams, q, k, v []float64) (out, lse, prob []float64) {
	out = make([]float64, s.B*s.Tq*s.H*s.D)
	lse = make([]float64, s.B*s.H*s.Tq)
	prob = make([]float64, s.B*s.H*s.Tq*s.Tk)
	group := s.H / s.KV
	sc := make([]float64, s.Tk)
	for b := range s.B {
		for h := range s.H {
			g := h / group
			for i := range s.Tq {
				qi := q[((b*s.Tq+i)*s.H+h)*s.D:][:s.D]
				m := math.Inf(-1)
				for j := range s.Tk {
					if !visible(p, i, j) {
						continue
					}
					kj := k[((b*s.Tk+j)*s.KV+g)*s.D:][:s.D]
					var dot float64
					for d := range s.D {
						dot += qi[d] * kj[d]
					}
					sc[j] = float64(p.Scale) * dot
					if c := float64(p.Softcap); c > 0 {
						sc[j] = c * math.Tanh(sc[j]/c)
					}
					m = math.Max(m, sc[j])
				}
				var z float64
				for j := range s.Tk {
					if visible(p, i, j) {
						z += math.Exp(sc[j] - m)
					}
				}
				row := (b*s.H+h)*s.Tq + i
				lse[row] = m + math.Log(z)
				o := out[((b*s.Tq+i)*s.H+h)*s.D:][:s.D]
				for j := range s.Tk {
					if !visible(p, i, j) {
						continue
					}
					pj := math.Exp(sc[j] - lse[row])
					prob[row*s.Tk+j] = pj
					vj := v[((b*s.Tk+j)*s.KV+g)*s.D:][:s.D]
					for d := range s.D {
						o[d] += pj * vj[d]
					}
				}
			}
		}
	}
	return out, lse, prob
}

// refAttentionGrad is the backward of refAttention, derived by hand:
// dv_j += P_j·dout; dP_j = dout·v_j; dS_j = P_j·(dP_j − dout·out); through
// the cap dU_j = dS_j·(1 − (s_j/c)²); dq += Scale·dU_j·k_j and
// dk_j += Scale·dU_j·q.
func refAttentionGrad(s attnShape, p backend.AttentionParams, q, k, v, dout []float64) (dq, dk, dv []float64) {
	out, _, prob := refAttention(s, p, q, k, v)
	dq, dk, dv = make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
	group := s.H / s.KV
	for b := range s.B {
		for h := range s.H {
			g := h / group
			for i := range s.Tq {
				at := ((b*s.Tq+i)*s.H + h) * s.D
				qi, oi, doi := q[at:][:s.D], out[at:][:s.D], dout[at:][:s.D]
				var dOdotO float64
				for d := range s.D {
					dOdotO += doi[d] * oi[d]
				}
				row := (b*s.H+h)*s.Tq + i
				for j := range s.Tk {
					if !visible(p, i, j) {
						continue
					}
					kv := ((b*s.Tk+j)*s.KV + g) * s.D
					kj, vj := k[kv:][:s.D], v[kv:][:s.D]
					pj := prob[row*s.Tk+j]
					var dp, dot float64
					for d := range s.D {
						dv[kv+d] += pj * doi[d]
						dp += doi[d] * vj[d]
						dot += qi[d] * kj[d]
					}
					du := pj * (dp - dOdotO)
					if c := float64(p.Softcap); c > 0 {
						t := math.Tanh(float64(p.Scale) * dot / c)
						du *= 1 - t*t
					}
					for d := range s.D {
						dq[at+d] += float64(p.Scale) * du * kj[d]
						dk[kv+d] += float64(p.Scale) * du * qi[d]
					}
				}
			}
		}
	}
	return dq, dk, dv
}

// refFused is a backend with the fused attention ops computed on the host
// by refAttention and refAttentionGrad over the CPU backend's tensors: it
// tests the graph's fused path (its buffers, gradients, checkpointing)
// without relying on any backend's kernel, and counts the calls so that a
// test knows which path ran.
type refFused struct {
	backend.Backend
	calls, gradCalls int
	err              error
}

func (r *refFused) Supports(op backend.Op) bool {
	return op == backend.OpAttention || op == backend.OpAttentionGrad || r.Backend.Supports(op)
}

func (r *refFused) Sync() error {
	if err := r.Backend.Sync(); err != nil {
		return err
	}
	err := r.err
	r.err = nil
	return err
}

func (r *refFused) host(t backend.Tensor) []float64 {
	h := make([]float32, t.Len())
	if err := r.Backend.Download(h, t); err != nil && r.err == nil {
		r.err = err
	}
	out := make([]float64, len(h))
	for i, x := range h {
		out[i] = float64(x)
	}
	return out
}

func (r *refFused) upload(t backend.Tensor, x []float64) {
	h := make([]float32, len(x))
	for i, v := range x {
		h[i] = float32(v)
	}
	r.Backend.Upload(t, h)
}

func (r *refFused) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	r.calls++
	d, err := backend.CheckAttention(out, lse, q, k, v, p)
	if err != nil {
		r.err = err
		return
	}
	s := attnShape{d.Batch, d.Queries, d.Keys, d.Heads, d.KVHeads, d.HeadDim}
	o, l, _ := refAttention(s, p, r.host(q), r.host(k), r.host(v))
	r.upload(out, o)
	if !lse.IsZero() {
		r.upload(lse, l)
	}
}

func (r *refFused) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	r.gradCalls++
	d, err := backend.CheckAttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p)
	if err != nil {
		r.err = err
		return
	}
	s := attnShape{d.Batch, d.Queries, d.Keys, d.Heads, d.KVHeads, d.HeadDim}
	gq, gk, gv := refAttentionGrad(s, p, r.host(q), r.host(k), r.host(v), r.host(dout))
	r.upload(dq, gq)
	r.upload(dk, gk)
	r.upload(dv, gv)
}

// attnPath is one way of computing Tape.Attention in the tests.
type attnPath struct {
	name  string
	b     backend.Backend
	fused bool      // the tape is to take the fused path
	ref   *refFused // counts the fused calls, where b is one
}

// attnPaths returns the paths to test: composed on the CPU backend, fused
// through refFused, and fused with the CPU backend's own kernel where it
// has one.
func attnPaths(t *testing.T) []attnPath {
	cpu := openCPU(t)
	ref := &refFused{Backend: cpu}
	paths := []attnPath{{name: "composed", b: ref, fused: false, ref: ref}, {name: "fused(host reference)", b: ref, fused: true, ref: ref}}
	if cpu.Supports(backend.OpAttention) && cpu.Supports(backend.OpAttentionGrad) {
		paths = append(paths, attnPath{name: "fused(cpu)", b: cpu, fused: true})
	} else {
		t.Logf("the cpu backend lacks the fused attention ops: its kernel is not tested here")
	}
	return paths
}

// attnCases are the shapes and parameters the gradient checks cover.
var attnCases = []struct {
	name string
	s    attnShape
	p    backend.AttentionParams
}{
	{"causal", attnShape{2, 5, 5, 2, 2, 3}, backend.AttentionParams{Scale: 0.7, Causal: true}},
	{"not causal", attnShape{1, 4, 6, 2, 2, 3}, backend.AttentionParams{Scale: 0.5}},
	{"gqa", attnShape{2, 5, 5, 4, 2, 3}, backend.AttentionParams{Scale: 0.6, Causal: true}},
	{"gqa, wide heads", attnShape{1, 9, 9, 4, 2, 16}, backend.AttentionParams{Scale: 0.25, Causal: true, Window: 3}},
	{"gqa 3 per kv head", attnShape{1, 4, 4, 6, 2, 2}, backend.AttentionParams{Scale: 0.8, Causal: true}},
	{"window", attnShape{1, 7, 7, 2, 1, 3}, backend.AttentionParams{Scale: 0.6, Causal: true, Window: 3}},
	{"softcap", attnShape{1, 5, 5, 4, 2, 3}, backend.AttentionParams{Scale: 1.3, Softcap: 0.9, Causal: true}},
	{"fewer queries, offset", attnShape{2, 3, 7, 2, 1, 3}, backend.AttentionParams{Scale: 0.6, Causal: true, QueryOffset: 4}},
	{"one query", attnShape{1, 1, 6, 4, 2, 3}, backend.AttentionParams{Scale: 0.6, Causal: true, QueryOffset: 5}},
	{"offset, window, cap, gqa", attnShape{1, 3, 8, 4, 2, 3}, backend.AttentionParams{Scale: 0.9, Softcap: 1.1, Causal: true, QueryOffset: 5, Window: 4}},
}

// TestAttentionGradcheck checks Tape.Attention's forward against
// refAttention in float64 and its gradients against central differences
// of that reference (gradcheck), on the composed path and on the fused
// one, and that each took the path it was meant to.
func TestAttentionGradcheck(t *testing.T) {
	for _, path := range attnPaths(t) {
		for _, tc := range attnCases {
			t.Run(path.name+"/"+tc.name, func(t *testing.T) {
				c := gradcheck.Case{
					Name:   "attention/" + tc.name,
					Op:     backend.OpAttention,
					Inputs: []gradcheck.Input{{Name: "q", Shape: tc.s.q()}, {Name: "k", Shape: tc.s.kv()}, {Name: "v", Shape: tc.s.kv()}},
					Forward: func(g *graph.Tape, in []*graph.Value) *graph.Value {
						g.SetFusedAttention(path.fused)
						if g.FusedAttention() != path.fused {
							t.Fatalf("FusedAttention() = %v, want %v", g.FusedAttention(), path.fused)
						}
						return g.Attention(in[0], in[1], in[2], tc.p)
					},
					Reference: func(x [][]float64) []float64 {
						out, _, _ := refAttention(tc.s, tc.p, x[0], x[1], x[2])
						return out
					},
				}
				var calls, gradCalls int
				if path.ref != nil {
					calls, gradCalls = path.ref.calls, path.ref.gradCalls
				}
				r, err := gradcheck.Check(path.b, c, gradcheck.Options{Seed: 3})
				if err != nil {
					t.Fatal(err)
				}
				if !r.Passed() {
					t.Error(r)
				}
				if path.ref != nil {
					calls, gradCalls = path.ref.calls-calls, path.ref.gradCalls-gradCalls
					// Check runs two steps (the second accumulating into
					// the first's gradients), each one forward and backward.
					if path.fused != (calls == 2 && gradCalls == 2) || !path.fused && calls+gradCalls != 0 {
						t.Errorf("fused path %v, but the fused kernels ran %d and %d times", path.fused, calls, gradCalls)
					}
				}
			})
		}
	}
}

// TestAttentionGradRefMatchesDifferences checks the test's own backward
// reference, which refFused serves as the fused backward, against central
// differences of refAttention in float64, so that the fused path's checks
// above rest on a derivative that is itself checked.
func TestAttentionGradRefMatchesDifferences(t *testing.T) {
	for _, tc := range attnCases {
		s, p := tc.s, tc.p
		n, m := s.B*s.Tq*s.H*s.D, s.B*s.Tk*s.KV*s.D
		seq := func(len int, a float64) []float64 {
			x := make([]float64, len)
			for i := range x {
				x[i] = math.Sin(a * float64(i+1))
			}
			return x
		}
		q, k, v, w := seq(n, 1.3), seq(m, 0.7), seq(m, 2.1), seq(n, 0.37)
		f := func() float64 {
			out, _, _ := refAttention(s, p, q, k, v)
			var z float64
			for i := range out {
				z += w[i] * out[i]
			}
			return z
		}
		dq, dk, dv := refAttentionGrad(s, p, q, k, v, w)
		for _, in := range []struct {
			name string
			x, d []float64
		}{{"q", q, dq}, {"k", k, dk}, {"v", v, dv}} {
			for i := range in.x {
				x0, h := in.x[i], 1e-6
				in.x[i] = x0 + h
				fp := f()
				in.x[i] = x0 - h
				fm := f()
				in.x[i] = x0
				if fd := (fp - fm) / (2 * h); math.Abs(fd-in.d[i]) > 1e-7*(1+math.Abs(fd)) {
					t.Errorf("%s: d%s[%d] = %.10g, central difference %.10g", tc.name, in.name, i, in.d[i], fd)
					break
				}
			}
		}
	}
}

// attnStep runs one forward and backward of Σ w ⊙ Attention(q, k, v) on a
// fresh tape, optionally inside a checkpointed segment, and returns the
// three gradients and the tape's peak of live bytes.
func attnStep(t *testing.T, b backend.Backend, fused, checkpoint bool, s attnShape, p backend.AttentionParams) ([][]float32, int64) {
	t.Helper()
	seq := func(n int, a float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(math.Sin(a * float64(i+1)))
		}
		return x
	}
	var params []*graph.Value
	for i, sh := range [][]int{s.q(), s.kv(), s.kv()} {
		n := backend.Shape(sh).NumElements()
		v, err := graph.UploadParam(b, fmt.Sprint("x", i), seq(n, 0.3+float64(i)), graph.Trainable, sh...)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Free()
		params = append(params, v)
	}
	g := graph.New(b)
	defer g.Close()
	g.SetFusedAttention(fused)
	attend := func(g *graph.Tape, in []*graph.Value) []*graph.Value {
		return []*graph.Value{g.Attention(in[0], in[1], in[2], p)}
	}
	var out *graph.Value
	if checkpoint {
		out = g.Checkpoint(attend, params...)[0]
	} else {
		out = attend(g, params)[0]
	}
	loss := g.Sum(g.Mul(out, g.Input(seq(out.Len(), 0.11), out.Shape()...)))
	if err := g.Backward(loss); err != nil {
		t.Fatal(err)
	}
	var grads [][]float32
	for _, v := range params {
		d, err := v.DownloadGrad()
		if err != nil {
			t.Fatal(err)
		}
		grads = append(grads, d)
	}
	return grads, g.Stats().PeakLiveBytes
}

// TestAttentionCheckpoint checks Attention inside a checkpointed segment:
// the same gradients, to the bit, as without checkpointing on both paths,
// the fused forward running a second time in the recomputation, and the
// fused path's log-sum-exp buffer released with the segment's other
// intermediates (an error if it were kept past the segment).
func TestAttentionCheckpoint(t *testing.T) {
	s := attnShape{2, 6, 6, 4, 2, 3}
	p := backend.AttentionParams{Scale: 0.6, Softcap: 1.5, Causal: true, Window: 4}
	for _, path := range attnPaths(t) {
		t.Run(path.name, func(t *testing.T) {
			plain, _ := attnStep(t, path.b, path.fused, false, s, p)
			var calls int
			if path.ref != nil {
				calls = path.ref.calls
			}
			ckpt, _ := attnStep(t, path.b, path.fused, true, s, p)
			for i := range plain {
				for j := range plain[i] {
					if plain[i][j] != ckpt[i][j] {
						t.Fatalf("input %d: gradient element %d is %v checkpointed, %v plain", i, j, ckpt[i][j], plain[i][j])
					}
				}
			}
			if path.ref != nil && path.fused {
				if n := path.ref.calls - calls; n != 2 {
					t.Errorf("the fused forward ran %d times with checkpointing, want 2 (forward and recomputation)", n)
				}
			}
		})
	}
}

// TestAttentionMemoryIsLinear checks what the fused path is for: at 256
// positions the composed path's tape holds the [heads, T, T] scores (1
// MiB each here) and the fused path's does not, and doubling T doubles the
// fused path's peak (O(T)) where it about quadruples the composed one's.
func TestAttentionMemoryIsLinear(t *testing.T) {
	p := backend.AttentionParams{Scale: 0.25, Causal: true}
	for _, path := range attnPaths(t) {
		if !path.fused {
			continue
		}
		t.Run(path.name, func(t *testing.T) {
			peaks := map[string]map[int]int64{"fused": {}, "composed": {}}
			for _, T := range []int{128, 256} {
				s := attnShape{1, T, T, 4, 2, 16}
				_, peaks["fused"][T] = attnStep(t, path.b, true, false, s, p)
				_, peaks["composed"][T] = attnStep(t, path.b, false, false, s, p)
			}
			scores := int64(4*256*256) * 4 // one [H, T, T] float32 tensor at T = 256
			t.Logf("peak live bytes: fused %v, composed %v; scores at T=256 %d", peaks["fused"], peaks["composed"], scores)
			if f := peaks["fused"][256]; f >= scores/2 {
				t.Errorf("fused path at T=256 peaks at %d bytes, not far below one score tensor (%d)", f, scores)
			}
			if c := peaks["composed"][256]; c < 2*scores {
				t.Errorf("composed path at T=256 peaks at %d bytes, below two score tensors (%d): is it storing its scores?", c, 2*scores)
			}
			if r := float64(peaks["fused"][256]) / float64(peaks["fused"][128]); r > 2.05 {
				t.Errorf("fused peak grows %.2f× from T=128 to 256; linear memory doubles", r)
			}
			if r := float64(peaks["composed"][256]) / float64(peaks["composed"][128]); r < 3 {
				t.Errorf("composed peak grows %.2f× from T=128 to 256; quadratic memory about quadruples", r)
			}
		})
	}
}

// TestAttentionErrors checks that bad shapes and parameters are tape
// errors naming Attention and the problem, on both paths, with a result
// of q's shape.
func TestAttentionErrors(t *testing.T) {
	ok := attnShape{1, 4, 4, 4, 2, 3}
	causal := backend.AttentionParams{Scale: 0.5, Causal: true}
	paths := attnPaths(t)[:2]
	for _, tc := range []struct {
		name    string
		q, k, v []int
		p       backend.AttentionParams
		want    string
	}{
		{"rank 3", []int{1, 4, 12}, []int{1, 4, 6}, []int{1, 4, 6}, causal, "rank 4"},
		{"head size", ok.q(), []int{1, 4, 2, 4}, []int{1, 4, 2, 4}, causal, "head size"},
		{"heads", ok.q(), []int{1, 4, 3, 3}, []int{1, 4, 3, 3}, causal, "not a multiple"},
		{"v shape", ok.q(), ok.kv(), []int{1, 5, 2, 3}, causal, "v must have k's shape"},
		{"batch", []int{2, 4, 4, 3}, ok.kv(), ok.kv(), causal, "batch"},
		{"no scale", ok.q(), ok.kv(), ok.kv(), backend.AttentionParams{Causal: true}, "scale"},
		{"negative cap", ok.q(), ok.kv(), ok.kv(), backend.AttentionParams{Scale: 1, Softcap: -1}, "softcap"},
		{"window without causal", ok.q(), ok.kv(), ok.kv(), backend.AttentionParams{Scale: 1, Window: 2}, "without Causal"},
		{"window sees nothing", []int{1, 2, 4, 3}, ok.kv(), ok.kv(), backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: 5, Window: 2}, "none of the 4 keys"},
	} {
		for _, path := range paths {
			t.Run(path.name+"/"+tc.name, func(t *testing.T) {
				g := graph.New(path.b)
				defer g.Close()
				g.SetFusedAttention(path.fused)
				in := func(shape []int) *graph.Value { return g.Full(0.5, shape...) }
				out := g.Attention(in(tc.q), in(tc.k), in(tc.v), tc.p)
				err := g.Err()
				if err == nil || !strings.Contains(err.Error(), "graph: Attention") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v; want one naming Attention and %q", err, tc.want)
				}
				if !out.Shape().Equal(backend.Shape(tc.q)) || !out.Tensor().IsZero() {
					t.Errorf("result %v with data %v; want a placeholder of q's shape", out.Shape(), !out.Tensor().IsZero())
				}
			})
		}
	}
}

// TestAttentionSwitch checks the ways to choose the path: the backend's
// Supports, SetFusedAttention and the environment variable, which a bad
// value of turns into an error naming it; and that CheckFusedAttention
// names each cause.
func TestAttentionSwitch(t *testing.T) {
	t.Setenv(graph.AttentionEnv, "") // the test sets the mode itself
	cpu := openCPU(t)
	ref := &refFused{Backend: cpu}
	g := graph.New(ref)
	defer g.Close()
	if !g.FusedAttention() {
		t.Error("a backend with the ops: FusedAttention() false")
	}
	if prev := g.SetFusedAttention(false); !prev || g.FusedAttention() {
		t.Errorf("SetFusedAttention(false) returned %v, then FusedAttention() %v", prev, g.FusedAttention())
	}
	if prev := g.SetFusedAttention(true); prev || !g.FusedAttention() {
		t.Errorf("SetFusedAttention(true) returned %v, then FusedAttention() %v", prev, g.FusedAttention())
	}
	lacking := struct{ backend.Backend }{cpu} // Supports as the cpu backend says
	want := cpu.Supports(backend.OpAttention) && cpu.Supports(backend.OpAttentionGrad)
	if got := graph.New(lacking).FusedAttention(); got != want {
		t.Errorf("cpu backend: FusedAttention() %v, its Supports says %v", got, want)
	}
	for _, env := range []struct {
		value string
		fused bool
	}{{"", true}, {"fused", true}, {"unfused", false}} {
		t.Setenv(graph.AttentionEnv, env.value)
		if got := graph.New(ref).FusedAttention(); got != env.fused {
			t.Errorf("%s=%q: FusedAttention() %v, want %v", graph.AttentionEnv, env.value, got, env.fused)
		}
	}
	// CheckFusedAttention is nil exactly where FusedAttention is true,
	// and names the cause elsewhere.
	for _, c := range []struct {
		name string
		b    backend.Backend
		env  string
		off  bool
		want string // "" for nil
	}{
		{"fused", ref, "", false, ""},
		{"backend without the ops", noFused{cpu}, "", false, "the cpu backend has none"},
		{"unfused by the environment", ref, "unfused", false, "SORA_ATTENTION=unfused turns it off"},
		{"bad environment value", ref, "fast", false, `SORA_ATTENTION="fast"`},
		{"SetFusedAttention(false)", ref, "", true, "SetFusedAttention(false)"},
	} {
		t.Setenv(graph.AttentionEnv, c.env)
		g := graph.New(c.b)
		if c.off {
			g.SetFusedAttention(false)
		}
		err := g.CheckFusedAttention()
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) || (err == nil) != g.FusedAttention() {
			t.Errorf("%s: CheckFusedAttention() %v, FusedAttention() %v; want an error naming %q (none for \"\"), and FusedAttention() true exactly without one", c.name, err, g.FusedAttention(), c.want)
		}
		g.Close()
	}

	t.Setenv(graph.AttentionEnv, "fast")
	g2 := graph.New(ref)
	defer g2.Close()
	x := g2.Full(1, 1, 2, 2, 3)
	g2.Attention(x, x, x, backend.AttentionParams{Scale: 1, Causal: true})
	if err := g2.Err(); err == nil || !strings.Contains(err.Error(), "SORA_ATTENTION=\"fast\"") {
		t.Errorf("bad environment value: error %v; want one naming SORA_ATTENTION and the value", err)
	}
	g2.Reset()
	g2.SetFusedAttention(true) // overrides the environment
	g2.Attention(x, x, x, backend.AttentionParams{Scale: 1, Causal: true})
	if err := g2.Err(); err == nil || !strings.Contains(err.Error(), "Reset") {
		t.Errorf("a value of before Reset: error %v", err)
	}
	g2.Reset()
	x = g2.Full(1, 1, 2, 2, 3)
	g2.Attention(x, x, x, backend.AttentionParams{Scale: 1, Causal: true})
	if err := g2.Err(); err != nil {
		t.Errorf("after SetFusedAttention(true): %v", err)
	}
}

func TestCheckAttentionEnv(t *testing.T) {
	for _, c := range []struct {
		value string
		ok    bool
	}{{"", true}, {"fused", true}, {"unfused", true}, {"fast", false}, {"Unfused", false}} {
		t.Setenv(graph.AttentionEnv, c.value)
		err := graph.CheckAttentionEnv()
		if (err == nil) != c.ok {
			t.Errorf("%s=%q: error %v, want ok %v", graph.AttentionEnv, c.value, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), graph.AttentionEnv+"=\""+c.value+"\"") {
			t.Errorf("%s=%q: error %q does not name the variable and its value", graph.AttentionEnv, c.value, err)
		}
	}
}

package cuda

// Tests of the fused attention kernels against a float64 reference written
// here from the op's definition, on the emulated device (and, through
// TestGPUAttention in attention_gpu_test.go, on a GPU).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/conformance"
)

// attnCase is one shape and parameter set.
type attnCase struct {
	batch, queries, keys, heads, kvHeads, dim int
	p                                         backend.AttentionParams
}

func (c attnCase) String() string {
	s := fmt.Sprintf("B%d_Tq%d_Tk%d_H%d_KV%d_D%d", c.batch, c.queries, c.keys, c.heads, c.kvHeads, c.dim)
	if c.p.Causal {
		s += fmt.Sprintf("_causal_off%d", c.p.QueryOffset)
	}
	if c.p.Window > 0 {
		s += fmt.Sprintf("_win%d", c.p.Window)
	}
	if c.p.Softcap > 0 {
		s += fmt.Sprintf("_cap%g", c.p.Softcap)
	}
	if c.p.Segments != nil {
		s += "_docs"
		if !c.p.Causal && c.p.QueryOffset > 0 {
			s += fmt.Sprintf("_off%d", c.p.QueryOffset)
		}
	}
	return s
}

func (c attnCase) qShape() []int { return []int{c.batch, c.queries, c.heads, c.dim} }
func (c attnCase) kShape() []int { return []int{c.batch, c.keys, c.kvHeads, c.dim} }

// sees is the mask of sequence b, written from AttentionParams'
// documentation: the causal mask and window, and with segments only the
// keys whose document number is that of the query's position.
func (c attnCase) sees(b, i, j int) bool {
	pos := i + c.p.QueryOffset
	if c.p.Segments != nil && c.p.Segments[b*c.keys+j] != c.p.Segments[b*c.keys+pos] {
		return false
	}
	if !c.p.Causal {
		return true
	}
	return j <= pos && (c.p.Window == 0 || pos-j < c.p.Window)
}

// attnRef holds the float64 reference results of a case.
type attnRef struct {
	out, lse, dq, dk, dv []float64
}

// attentionRef computes Attention and AttentionGrad in float64 from the
// definitions: scores, their softmax over the visible keys, its log-sum-exp,
// and the gradients through the cap.
func attentionRef(c attnCase, q, k, v, dout []float32) attnRef {
	D, H, KV := c.dim, c.heads, c.kvHeads
	group := H / KV
	qi := func(b, i, h int) int { return ((b*c.queries+i)*H + h) * D }
	ki := func(b, j, g int) int { return ((b*c.keys+j)*KV + g) * D }
	r := attnRef{
		out: make([]float64, len(q)), lse: make([]float64, c.batch*H*c.queries),
		dq: make([]float64, len(q)), dk: make([]float64, len(k)), dv: make([]float64, len(k)),
	}
	scale, capv := float64(c.p.Scale), float64(c.p.Softcap)
	s := make([]float64, c.keys)
	grad := make([]float64, c.keys) // d score / d (q·k)
	for b := 0; b < c.batch; b++ {
		for h := 0; h < H; h++ {
			g := h / group
			for i := 0; i < c.queries; i++ {
				m := math.Inf(-1)
				for j := 0; j < c.keys; j++ {
					if !c.sees(b, i, j) {
						continue
					}
					var dot float64
					for d := 0; d < D; d++ {
						dot += float64(q[qi(b, i, h)+d]) * float64(k[ki(b, j, g)+d])
					}
					x := scale * dot
					grad[j] = scale
					if capv > 0 {
						t := math.Tanh(x / capv)
						x = capv * t
						grad[j] = scale * (1 - t*t)
					}
					s[j] = x
					m = math.Max(m, x)
				}
				var sum float64
				for j := 0; j < c.keys; j++ {
					if c.sees(b, i, j) {
						sum += math.Exp(s[j] - m)
					}
				}
				lse := m + math.Log(sum)
				r.lse[(b*H+h)*c.queries+i] = lse
				o := r.out[qi(b, i, h) : qi(b, i, h)+D]
				for j := 0; j < c.keys; j++ {
					if !c.sees(b, i, j) {
						continue
					}
					p := math.Exp(s[j] - lse)
					for d := 0; d < D; d++ {
						o[d] += p * float64(v[ki(b, j, g)+d])
					}
				}
				// Backward: δ = dout·out, dS = P(dP − δ)·s′.
				var delta float64
				for d := 0; d < D; d++ {
					delta += float64(dout[qi(b, i, h)+d]) * o[d]
				}
				for j := 0; j < c.keys; j++ {
					if !c.sees(b, i, j) {
						continue
					}
					p := math.Exp(s[j] - lse)
					var dp float64
					for d := 0; d < D; d++ {
						dp += float64(dout[qi(b, i, h)+d]) * float64(v[ki(b, j, g)+d])
					}
					ds := p * (dp - delta) * grad[j]
					for d := 0; d < D; d++ {
						r.dq[qi(b, i, h)+d] += ds * float64(k[ki(b, j, g)+d])
						r.dk[ki(b, j, g)+d] += ds * float64(q[qi(b, i, h)+d])
						r.dv[ki(b, j, g)+d] += p * float64(dout[qi(b, i, h)+d])
					}
				}
			}
		}
	}
	return r
}

// attnGuard is how many elements of sentinel surround each output.
const attnGuard = 37

// guarded is an output tensor inside a larger buffer, between guard
// regions holding a sentinel value, with its own elements poisoned (NaN),
// so that writes outside it and elements never written both show.
type guarded struct {
	buf, t backend.Tensor
}

const attnSentinel = float32(-12345.5)

func newGuarded(t testing.TB, b *Backend, shape ...int) guarded {
	t.Helper()
	n := backend.Shape(shape).NumElements()
	buf := mustAlloc(t, b, n+2*attnGuard)
	fill := make([]float32, n+2*attnGuard)
	for i := range fill {
		fill[i] = attnSentinel
		if i >= attnGuard && i < attnGuard+n {
			fill[i] = float32(math.NaN())
		}
	}
	b.Upload(buf, fill)
	return guarded{buf: buf, t: buf.MustSlice(attnGuard, attnGuard+n).MustReshape(shape...)}
}

// download returns the output's elements and checks the guards.
func (g guarded) download(t testing.TB, b *Backend, what string) []float32 {
	t.Helper()
	all := make([]float32, g.buf.Len())
	if err := b.Download(all, g.buf); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	n := g.t.Len()
	for i, x := range all {
		if (i < attnGuard || i >= attnGuard+n) && x != attnSentinel {
			t.Errorf("%s: guard element %d overwritten with %g", what, i-attnGuard, x)
			break
		}
	}
	return all[attnGuard : attnGuard+n]
}

// upload returns a tensor of shape holding data.
func upload(t testing.TB, b *Backend, data []float32, shape ...int) backend.Tensor {
	t.Helper()
	x := mustAlloc(t, b, shape...)
	b.Upload(x, data)
	return x
}

// checkAttentionCase runs Attention (with and without lse) and
// AttentionGrad on c and compares every output with the float64
// reference, within the conformance suite's limits.
func checkAttentionCase(t *testing.T, b *Backend, c attnCase, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, uint64(c.dim)))
	nq, nk := backend.Shape(c.qShape()).NumElements(), backend.Shape(c.kShape()).NumElements()
	qh, kh, vh, douth := uniform(rng, nq, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nk, -1, 1), uniform(rng, nq, -1, 1)
	ref := attentionRef(c, qh, kh, vh, douth)

	q, k, v := upload(t, b, qh, c.qShape()...), upload(t, b, kh, c.kShape()...), upload(t, b, vh, c.kShape()...)
	dout := upload(t, b, douth, c.qShape()...)
	out, lse := newGuarded(t, b, c.qShape()...), newGuarded(t, b, c.batch, c.heads, c.queries)
	out2 := newGuarded(t, b, c.qShape()...)
	b.Attention(out.t, lse.t, q, k, v, c.p)
	b.Attention(out2.t, backend.Tensor{}, q, k, v, c.p)
	dq, dk, dv := newGuarded(t, b, c.qShape()...), newGuarded(t, b, c.kShape()...), newGuarded(t, b, c.kShape()...)
	b.AttentionGrad(dq.t, dk.t, dv.t, q, k, v, out.t, lse.t, dout, c.p)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	fwd, grad := 1e-9, 1e-9 // the conformance limits of attention and attention_grad
	gotOut := out.download(t, b, "out")
	for _, o := range []struct {
		name  string
		got   []float32
		want  []float64
		limit float64
	}{
		{"out", gotOut, ref.out, fwd},
		{"lse", lse.download(t, b, "lse"), ref.lse, fwd},
		{"dq", dq.download(t, b, "dq"), ref.dq, grad},
		{"dk", dk.download(t, b, "dk"), ref.dk, grad},
		{"dv", dv.download(t, b, "dv"), ref.dv, grad},
	} {
		e := conformance.NMSE(o.got, o.want)
		if !(e <= o.limit) {
			t.Errorf("%s: NMSE %.3g against float64, limit %g", o.name, e, o.limit)
		} else {
			t.Logf("%s: NMSE %.3g", o.name, e)
		}
	}
	// Without lse the kernel does the same arithmetic: the same bits.
	for i, x := range out2.download(t, b, "out without lse") {
		if math.Float32bits(x) != math.Float32bits(gotOut[i]) {
			t.Errorf("out without lse differs at %d: %g, with lse %g", i, x, gotOut[i])
			break
		}
	}
}

// attnCases are small shapes that cross the kernels' tile edges (32
// queries, 64 keys in attn_fwd and attn_dq, 32 keys and 64 queries in
// attn_dkdv, slices of 32 head elements, 16 rows) and cover every
// parameter and the three kernel variants (D ≤ 64, ≤ 128, ≤ 256) and a
// head done in two passes (D > 256). The window of 34 over 130 positions
// and the offset of 33 with 97 keys put the first or last query that sees
// a key tile at the first row of a query tile, where an off-by-one in the
// ranges of tiles the mask leaves (attnKeys, attnQueries) loses a query
// and shows; the window also makes attn_fwd skip a whole key tile.
func attnCases() []attnCase {
	sc := func(d int) float32 { return float32(1 / math.Sqrt(float64(d))) }
	return []attnCase{
		{batch: 2, queries: 5, keys: 7, heads: 2, kvHeads: 2, dim: 8, p: backend.AttentionParams{Scale: sc(8)}},
		{batch: 1, queries: 70, keys: 70, heads: 2, kvHeads: 1, dim: 64, p: backend.AttentionParams{Scale: sc(64), Causal: true}},
		{batch: 1, queries: 3, keys: 40, heads: 4, kvHeads: 2, dim: 80, p: backend.AttentionParams{Scale: sc(80), Causal: true, QueryOffset: 37}},
		{batch: 2, queries: 1, keys: 67, heads: 2, kvHeads: 1, dim: 256, p: backend.AttentionParams{Scale: sc(256), Causal: true, QueryOffset: 66}},
		{batch: 1, queries: 40, keys: 40, heads: 2, kvHeads: 2, dim: 33, p: backend.AttentionParams{Scale: sc(33), Causal: true, Window: 5}},
		{batch: 1, queries: 130, keys: 130, heads: 1, kvHeads: 1, dim: 8, p: backend.AttentionParams{Scale: 1, Causal: true, Window: 34}},
		{batch: 1, queries: 9, keys: 100, heads: 3, kvHeads: 1, dim: 16, p: backend.AttentionParams{Scale: sc(16), Causal: true, QueryOffset: 91, Window: 20}},
		{batch: 1, queries: 35, keys: 35, heads: 2, kvHeads: 1, dim: 64, p: backend.AttentionParams{Scale: 2, Softcap: 5}},
		{batch: 1, queries: 64, keys: 97, heads: 2, kvHeads: 2, dim: 24, p: backend.AttentionParams{Scale: 3, Softcap: 2, Causal: true, QueryOffset: 33}},
		{batch: 1, queries: 66, keys: 66, heads: 1, kvHeads: 1, dim: 16, p: backend.AttentionParams{Scale: 6, Causal: true}},
		{batch: 1, queries: 10, keys: 12, heads: 2, kvHeads: 1, dim: 300, p: backend.AttentionParams{Scale: sc(300), Causal: true, QueryOffset: 2}},
		{batch: 1, queries: 17, keys: 19, heads: 1, kvHeads: 1, dim: 1, p: backend.AttentionParams{Scale: 1}},
	}
}

func TestAttentionEmulated(t *testing.T) {
	b := openFake(t, Options{})
	for i, c := range attnCases() {
		t.Run(c.String(), func(t *testing.T) { checkAttentionCase(t, b, c, uint64(i+1)) })
	}
}

// TestAttentionGradNoQueries: with no queries, AttentionGrad still writes
// dk and dv, as zeros.
func TestAttentionGradNoQueries(t *testing.T) {
	b := openFake(t, Options{})
	c := attnCase{batch: 2, queries: 0, keys: 5, heads: 2, kvHeads: 1, dim: 8, p: backend.AttentionParams{Scale: 1, Causal: true}}
	q, dq, out, dout := mustAlloc(t, b, c.qShape()...), mustAlloc(t, b, c.qShape()...), mustAlloc(t, b, c.qShape()...), mustAlloc(t, b, c.qShape()...)
	k, v := mustAlloc(t, b, c.kShape()...), mustAlloc(t, b, c.kShape()...)
	b.Fill(k, 1)
	b.Fill(v, 1)
	lse := mustAlloc(t, b, c.batch, c.heads, 0)
	dk, dv := newGuarded(t, b, c.kShape()...), newGuarded(t, b, c.kShape()...)
	b.AttentionGrad(dq, dk.t, dv.t, q, k, v, out, lse, dout, c.p)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		name string
		t    guarded
	}{{"dk", dk}, {"dv", dv}} {
		for i, x := range g.t.download(t, b, g.name) {
			if x != 0 {
				t.Errorf("%s[%d] = %g, want 0", g.name, i, x)
				break
			}
		}
	}
}

// TestAttentionLimits: a query offset whose positions overflow the
// kernels' ints is refused before any launch, and invalid calls record
// the shared validation's errors.
func TestAttentionLimits(t *testing.T) {
	b := openFake(t, Options{})
	stats := fakeCounters(t, b.api.drv, "sora_fake_stats")
	c := attnCase{batch: 1, queries: 4, keys: 3, heads: 1, kvHeads: 1, dim: 8}
	q, out := mustAlloc(t, b, c.qShape()...), mustAlloc(t, b, c.qShape()...)
	k, v := mustAlloc(t, b, c.kShape()...), mustAlloc(t, b, c.kShape()...)
	launches := stats[2]
	b.Attention(out, backend.Tensor{}, q, k, v, backend.AttentionParams{Scale: 1, Causal: true, QueryOffset: math.MaxInt32 - 100})
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "exceeds the kernels' 32-bit limit") {
		t.Errorf("query offset near 2^31: %v, want the limit's error", err)
	}
	if stats[2] != launches {
		t.Errorf("%d kernels launched for a refused call", stats[2]-launches)
	}
	b.Attention(out, backend.Tensor{}, q, k, v, backend.AttentionParams{})
	if err := b.Sync(); err == nil || !strings.Contains(err.Error(), "scale") {
		t.Errorf("zero scale: %v, want CheckAttention's error", err)
	}
	if !b.Supports(backend.OpAttention) || !b.Supports(backend.OpAttentionGrad) {
		t.Error("Supports does not report the fused attention ops")
	}
}

// TestAttentionVariant: heads go to the smallest kernel variant that holds
// them, and wider ones to the widest.
func TestAttentionVariant(t *testing.T) {
	for _, tc := range []struct{ d, want int }{{1, 0}, {64, 0}, {65, 1}, {128, 1}, {129, 2}, {256, 2}, {257, 2}, {1000, 2}} {
		if got := attnVariant(tc.d); got != tc.want {
			t.Errorf("attnVariant(%d) = %d, want %d", tc.d, got, tc.want)
		}
	}
	for i, k := range kAttnFwd {
		if want := fmt.Sprintf("attn_fwd_%d", attnChunks[i]); k.name != want || kAttnDQ[i].name != fmt.Sprintf("attn_dq_%d", attnChunks[i]) ||
			kAttnDKV[i].name != fmt.Sprintf("attn_dkdv_%d", attnChunks[i]) {
			t.Errorf("variant %d: kernels %s, %s, %s for chunk %d", i, k.name, kAttnDQ[i].name, kAttnDKV[i].name, attnChunks[i])
		}
	}
	if got := tileGrid(1 << 40); !got.validGrid() {
		t.Errorf("tileGrid(2^40) = %v, not a valid grid", got)
	}
}

// TestAttnParamsLayout: attnParams has struct AttnParams' layout (twelve
// 4-byte fields in declaration order), which kernels.cu reads by value.
func TestAttnParamsLayout(t *testing.T) {
	var a attnParams
	if got := unsafe.Sizeof(a); got != 48 || argAttn.size() != 48 {
		t.Errorf("size %d (argument size %d), want 48", got, argAttn.size())
	}
	for _, f := range []struct {
		name     string
		got, off uintptr
	}{
		{"keys", unsafe.Offsetof(a.keys), 8}, {"headDim", unsafe.Offsetof(a.headDim), 20},
		{"group", unsafe.Offsetof(a.group), 24}, {"window", unsafe.Offsetof(a.window), 36},
		{"scale", unsafe.Offsetof(a.scale), 40}, {"softcap", unsafe.Offsetof(a.softcap), 44},
	} {
		if f.got != f.off {
			t.Errorf("%s at offset %d, want %d", f.name, f.got, f.off)
		}
	}
}

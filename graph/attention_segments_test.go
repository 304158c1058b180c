package graph_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// segmentsSeen is a backend that claims the fused attention ops and
// records the segments each call of them is given, writing nothing: it
// checks what the tape hands the kernels, not what they compute.
type segmentsSeen struct {
	backend.Backend
	fwd, grad [][]int32
}

func (s *segmentsSeen) Supports(op backend.Op) bool {
	return op == backend.OpAttention || op == backend.OpAttentionGrad || s.Backend.Supports(op)
}

func (s *segmentsSeen) Attention(out, lse, q, k, v backend.Tensor, p backend.AttentionParams) {
	s.fwd = append(s.fwd, slices.Clone(p.Segments))
}

func (s *segmentsSeen) AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout backend.Tensor, p backend.AttentionParams) {
	s.grad = append(s.grad, slices.Clone(p.Segments))
}

// TestAttentionSegments checks that the fused path hands segments to the
// forward and backward kernels (the backward the forward's, whatever the
// caller wrote to its slice in between), and that every composed path (a backend
// without the ops, SetFusedAttention(false), SORA_ATTENTION=unfused)
// refuses them with an error naming segments and the cause, instead of
// attending across the documents.
func TestAttentionSegments(t *testing.T) {
	t.Setenv(graph.AttentionEnv, "") // the test sets the mode itself
	cpu := openCPU(t)
	segs := []int32{0, 0, 1, 1, 1, 2, 0, 1, 1, 1, 1, 1} // B=2, T=6
	p := backend.AttentionParams{Scale: 0.5, Causal: true, Segments: segs}
	shape := []int{2, 6, 2, 4}

	t.Run("fused", func(t *testing.T) {
		seen := &segmentsSeen{Backend: cpu}
		g := graph.New(seen)
		defer g.Close()
		w, err := graph.UploadParam(seen, "q", make([]float32, 2*6*2*4), graph.Trainable, shape...)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Free()
		mine := slices.Clone(segs)
		q := p
		q.Segments = mine
		out := g.Attention(w, w, w, q)
		// The caller's slice is its own again once Attention returns:
		// the backward must see the segments of the forward.
		for i := range mine {
			mine[i] = 9
		}
		if err := g.Backward(g.Sum(out)); err != nil {
			t.Fatal(err)
		}
		if len(seen.fwd) != 1 || len(seen.grad) != 1 || !slices.Equal(seen.fwd[0], segs) || !slices.Equal(seen.grad[0], segs) {
			t.Errorf("kernels saw segments %v forward, %v backward; want %v once each", seen.fwd, seen.grad, segs)
		}
	})

	bad := append([]int32{}, segs...)
	bad[3] = 0 // decreasing: the shared check names it on every path
	for _, c := range []struct {
		name string
		b    backend.Backend
		env  string
		off  bool
		want string
	}{
		{"backend without the ops", noFused{cpu}, "", false, "backend has none"},
		{"SetFusedAttention(false)", &segmentsSeen{Backend: cpu}, "", true, "SetFusedAttention(false)"},
		{"SORA_ATTENTION=unfused", &segmentsSeen{Backend: cpu}, "unfused", false, "SORA_ATTENTION=unfused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(graph.AttentionEnv, c.env)
			g := graph.New(c.b)
			defer g.Close()
			if c.off {
				g.SetFusedAttention(false)
			}
			x := g.Full(1, shape...)
			g.Attention(x, x, x, p)
			err := g.Err()
			if err == nil || !strings.Contains(err.Error(), "segments") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want one naming segments and %q", err, c.want)
			}
			g.Reset()
			x = g.Full(1, shape...)
			g.Attention(x, x, x, backend.AttentionParams{Scale: 0.5, Causal: true})
			if err := g.Err(); err != nil {
				t.Errorf("without segments: %v", err)
			}
			g.Reset()
			x = g.Full(1, shape...)
			q := p
			q.Segments = bad
			g.Attention(x, x, x, q)
			if err := g.Err(); err == nil || !strings.Contains(err.Error(), "decrease") {
				t.Errorf("decreasing segments: error %v; want the shared check's", err)
			}
		})
	}
}

// noFused hides the fused attention ops of the backend it wraps.
type noFused struct{ backend.Backend }

func (n noFused) Supports(op backend.Op) bool {
	return op != backend.OpAttention && op != backend.OpAttentionGrad && n.Backend.Supports(op)
}

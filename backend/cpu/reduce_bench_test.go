package cpu

import (
	"fmt"
	"testing"

	"github.com/sora-go/sora/backend"
)

// BenchmarkSplitReductions times the ops whose sums over rows or blocks
// are cut into pieces for the threads (the norms' parameter gradients,
// SumColumns, attention's key and value gradients), at one thread and at
// two, on training shapes: stories260K's (64 wide, 256 or 512 positions,
// 4 key/value heads) and wider ones. Run it on two builds alternately to
// compare them; it asserts nothing:
//
//	go test -run XXX -bench SplitReductions ./backend/cpu
func BenchmarkSplitReductions(b *testing.B) {
	type tc struct {
		name string
		prep func(be *Backend) func()
	}
	input := func(be *Backend, shape ...int) backend.Tensor {
		return upload(b, be, uniform(newRNG(7), backend.Shape(shape).NumElements(), -1, 1), shape...)
	}
	var cases []tc
	for _, sh := range [][2]int{{256, 64}, {512, 64}, {2048, 768}, {4096, 1024}} {
		rows, cols := sh[0], sh[1]
		cases = append(cases, tc{fmt.Sprintf("rmsnorm_grad_dw/%dx%d", rows, cols), func(be *Backend) func() {
			x, w, dy, dx, dw := input(be, rows, cols), input(be, cols), input(be, rows, cols), input(be, rows, cols), input(be, cols)
			return func() { be.RMSNormGrad(dx, dw, x, w, dy, 1e-5) }
		}})
		cases = append(cases, tc{fmt.Sprintf("layernorm_grad_dgdb/%dx%d", rows, cols), func(be *Backend) func() {
			x, g, dy, dx, dg, db := input(be, rows, cols), input(be, cols), input(be, rows, cols), input(be, rows, cols), input(be, cols), input(be, cols)
			return func() { be.LayerNormGrad(dx, dg, db, x, g, dy, 1e-5) }
		}})
		cases = append(cases, tc{fmt.Sprintf("sum_columns/%dx%d", rows, cols), func(be *Backend) func() {
			x, out := input(be, rows, cols), input(be, cols)
			return func() { be.SumColumns(out, x) }
		}})
	}
	for _, s := range []attnShape{
		{1, 256, 256, 8, 4, 8}, {1, 512, 512, 8, 4, 8}, // stories260K
		{1, 512, 512, 8, 1, 64}, {1, 512, 512, 8, 2, 64}, {1, 512, 512, 8, 8, 64}, {4, 256, 256, 8, 2, 64},
	} {
		cases = append(cases, tc{fmt.Sprintf("attention_grad/B%d/T%d/H%d/KV%d/D%d", s.B, s.Tq, s.H, s.KV, s.D), func(be *Backend) func() {
			p := backend.AttentionParams{Scale: 0.125, Causal: true}
			q, k, v, dout := input(be, s.B, s.Tq, s.H, s.D), input(be, s.B, s.Tk, s.KV, s.D), input(be, s.B, s.Tk, s.KV, s.D), input(be, s.B, s.Tq, s.H, s.D)
			out, lse, dq := input(be, s.B, s.Tq, s.H, s.D), input(be, s.B, s.H, s.Tq), input(be, s.B, s.Tq, s.H, s.D)
			dk, dv := input(be, s.B, s.Tk, s.KV, s.D), input(be, s.B, s.Tk, s.KV, s.D)
			be.Attention(out, lse, q, k, v, p)
			return func() { be.AttentionGrad(dq, dk, dv, q, k, v, out, lse, dout, p) }
		}})
	}
	for _, c := range cases {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/threads%d", c.name, threads), func(b *testing.B) {
				be := New(Options{Threads: threads})
				defer be.Close()
				run := c.prep(be)
				run()
				for b.Loop() {
					run()
				}
				if err := be.Sync(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

package peft

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/graph"
)

// Benchmark shapes: a [512, 512] layer on a batch of 2048 rows, r = 8,
// alpha = 16, r_p = 4 (the reference's GLUE setting).
const benchN, benchOut, benchIn = 2048, 512, 512

var benchMethods = []struct {
	name string
	cfg  Config
}{
	{"lora", Config{Method: LoRA, R: 8, Alpha: 16}},
	{"dora-peft", Config{Method: DoRAPEFT, R: 8, Alpha: 16}},
	{"dora", Config{Method: DoRA, R: 8, Alpha: 16}},
	{"prediag", Config{Method: PreDiag, R: 8, Alpha: 16}},
	{"sora", Config{Method: SORA, R: 8, Alpha: 16, RotationRank: 4}},
	{"sora-exact", Config{Method: SORA, R: 8, Alpha: 16, RotationRank: 4, ExactRotation: true}},
	{"preortho", Config{Method: PreOrtho, R: 8, Alpha: 16, RotationRank: 4}},
	{"postortho", Config{Method: PostOrtho, R: 8, Alpha: 16, RotationRank: 4}},
	{"oft", Config{Method: OFT, OFTBlockSize: 32}},
	{"full", Config{Method: Full}},
}

// benchStep holds one method's layer and input.
type benchStep struct {
	l *Layer
	x *graph.Value
	g *graph.Tape
}

func newBenchStep(b *testing.B, be backend.Backend, cfg Config) *benchStep {
	rng := rand.New(rand.NewPCG(1, 2))
	l := testLayer(b, be, cfg, benchOut, benchIn, 1)
	perturb(b, l, 2) // trained-like parameters: no exact zeros
	// The input is trainable so that the step computes dx, as every
	// adapted layer but the first does inside a model.
	x := upload(b, be, "x", randn(rng, benchN*benchIn, 1), graph.Trainable, benchN, benchIn)
	s := &benchStep{l: l, x: x, g: graph.New(be)}
	b.Cleanup(s.g.Close)
	return s
}

// run does one forward and backward pass and returns the tape's memory at
// the end of the step (all it allocated in the step: live values plus
// buffers released to its pool).
func (s *benchStep) run(b *testing.B) int64 {
	g := s.g
	loss := g.Sum(s.l.Forward(g, s.x))
	if err := g.Backward(loss); err != nil {
		b.Fatal(err)
	}
	st := g.Stats()
	g.Reset()
	for _, p := range s.l.Trainable() {
		p.ZeroGrad()
	}
	s.x.ZeroGrad()
	return st.LiveBytes + st.PooledBytes
}

// BenchmarkStep times a forward+backward step of every method. Each timed
// step is interleaved with an untimed LoRA step on the same shapes, so the
// ratio x_lora (this method's time over LoRA's) compares steps run under
// the same machine load; dora_peft/this is DoRA-PEFT's x_lora over this
// method's (> 1: faster than DoRA as Hugging Face PEFT computes it), and
// tape_MB the bytes the tape held at the end of a step (peak activation and
// gradient memory of the step).
//
//	go test ./peft -run '^$' -bench Step -benchtime 20x
func BenchmarkStep(b *testing.B) {
	be := openCPU(b)
	lora := newBenchStep(b, be, benchMethods[0].cfg)
	var doraPEFT float64 // DoRA-PEFT's x_lora, once measured
	for _, m := range benchMethods {
		b.Run(m.name, func(b *testing.B) {
			s := newBenchStep(b, be, m.cfg)
			tape := s.run(b)
			lora.run(b)
			x := timeAgainst(b, s, lora)
			if m.cfg.Method == DoRAPEFT {
				doraPEFT = x
			}
			b.ReportMetric(x, "x_lora")
			if doraPEFT > 0 {
				b.ReportMetric(doraPEFT/x, "dora_peft/this")
			}
			b.ReportMetric(float64(tape)/(1<<20), "tape_MB")
		})
	}
}

// BenchmarkDoRA compares the two DoRA computations on the step benchmark's
// shape and on a wide layer with few rows, where DoRA-PEFT's [out, in]
// temporaries (B·A and W0 + s·B·A) dominate the step's memory. Each timed
// step of one way is interleaved with an untimed step of the other, and
// x_other is this way's time over the other's; tape_MB is the step's tape
// memory.
func BenchmarkDoRA(b *testing.B) {
	be := openCPU(b)
	shapes := []struct{ n, out, in int }{{benchN, benchOut, benchIn}, {128, 2048, 2048}}
	for _, sh := range shapes {
		mk := func(b *testing.B, m Method) *benchStep {
			rng := rand.New(rand.NewPCG(1, 2))
			l := testLayer(b, be, Config{Method: m, R: 8, Alpha: 16}, sh.out, sh.in, 1)
			perturb(b, l, 2)
			x := upload(b, be, "x", randn(rng, sh.n*sh.in, 1), graph.Trainable, sh.n, sh.in)
			s := &benchStep{l: l, x: x, g: graph.New(be)}
			b.Cleanup(s.g.Close)
			return s
		}
		for _, way := range []struct {
			name       string
			this, peer Method
		}{{"dora", DoRA, DoRAPEFT}, {"dora-peft", DoRAPEFT, DoRA}} {
			b.Run(fmt.Sprintf("%s/%dx%d/N%d", way.name, sh.out, sh.in, sh.n), func(b *testing.B) {
				s, other := mk(b, way.this), mk(b, way.peer)
				tape := s.run(b)
				other.run(b)
				b.ReportMetric(timeAgainst(b, s, other), "x_other")
				b.ReportMetric(float64(tape)/(1<<20), "tape_MB")
			})
		}
	}
}

// timeAgainst is the timed loop of a benchmark comparing s with base in the
// same run: each timed step of s follows an untimed step of base, so both
// see the same machine state. It returns s's time over base's.
func timeAgainst(b *testing.B, s, base *benchStep) float64 {
	var baseTime time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		t0 := time.Now()
		base.run(b)
		baseTime += time.Since(t0)
		b.StartTimer()
		s.run(b)
	}
	b.StopTimer()
	return float64(b.Elapsed()) / float64(baseTime)
}

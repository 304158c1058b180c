package peft

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sora-go/sora/graph"
)

// TestInitialisation checks each trainable tensor's initial values against
// the table of DESIGN.md and the SORA reference: A kaiming-uniform with
// fan_in (bound 1/√in), B = 0, d = 1, C kaiming-uniform with fan_out
// (bound 1/√out), D = C bit for bit, and DoRA's m the row norms of W0.
// TestInitIsFrozenLayer cannot see these: any B = 0, D = C and m = n give
// the frozen layer, whatever the scale of A and C or the norm m is taken
// in. With out ≠ in and r_p ≪ out a bound taken from the wrong fan fails:
// the uniform samples must stay inside the bound and reach within 10% of
// it, with a mean square of bound²/3 within 15% (about three standard
// errors for these sizes).
func TestInitialisation(t *testing.T) {
	b := openCPU(t)
	const out, in, r, rp = 96, 40, 8, 4
	for _, m := range Methods {
		spec := m.Spec()
		if !spec.LowRank {
			continue
		}
		t.Run(string(m), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(17, 1))
			w0 := randn(rng, out*in, 0.5)
			base := &graph.Dense{
				W: upload(t, b, "w0", w0, graph.Frozen, out, in),
				B: upload(t, b, "b0", randn(rng, out, 0.5), graph.Frozen, out),
			}
			l, err := NewLayer("model.layers.3.mlp.up_proj", base, Config{Method: m, R: r, Alpha: 16, RotationRank: rp, Seed: 9})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Free()
			get := func(v *graph.Value) []float32 {
				t.Helper()
				h, err := v.Download()
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			uniform := func(name string, v []float32, fan int) {
				t.Helper()
				bound := 1 / math.Sqrt(float64(fan))
				maxAbs, sq := 0.0, 0.0
				for _, x := range v {
					maxAbs = math.Max(maxAbs, math.Abs(float64(x)))
					sq += float64(x) * float64(x)
				}
				ms := sq / float64(len(v))
				if maxAbs > bound || maxAbs < 0.9*bound {
					t.Errorf("%s: max |x| = %.4g, want just under the bound 1/√%d = %.4g", name, maxAbs, fan, bound)
				}
				if want := bound * bound / 3; math.Abs(ms-want) > 0.15*want {
					t.Errorf("%s: mean square %.4g, want bound²/3 = %.4g (uniform on ±1/√%d)", name, ms, want, fan)
				}
			}
			uniform("lora_A", get(l.a), in)
			for i, x := range get(l.bm) {
				if x != 0 {
					t.Fatalf("lora_B[%d] = %v, want 0", i, x)
				}
			}
			if (l.diag != nil) != (spec.Pre == Diagonal) {
				t.Fatalf("diagonal present %v for %s", l.diag != nil, m)
			}
			if l.diag != nil {
				for i, x := range get(l.diag) {
					if x != 1 {
						t.Fatalf("lora_Diag[%d] = %v, want 1", i, x)
					}
				}
			}
			if (l.mag != nil) != (spec.Post == NormDiagonal) {
				t.Fatalf("magnitude present %v for %s", l.mag != nil, m)
			}
			if l.mag != nil {
				for i, x := range get(l.mag) {
					var n2 float64
					for _, w := range w0[i*in : (i+1)*in] {
						n2 += float64(w) * float64(w)
					}
					if n := math.Sqrt(n2); math.Abs(float64(x)-n) > 1e-6*n {
						t.Fatalf("lora_magnitude_vector[%d] = %v, want the row norm ‖W0ᵢ‖ = %v", i, x, n)
					}
				}
			}
			hasRot := spec.Pre == Rotation || spec.Post == Rotation
			if (l.c != nil) != hasRot || (l.d != nil) != hasRot {
				t.Fatalf("rotation factors present %v/%v for %s", l.c != nil, l.d != nil, m)
			}
			if hasRot {
				c, d := get(l.c), get(l.d)
				uniform("lora_C", c, out)
				for i := range c {
					if math.Float32bits(c[i]) != math.Float32bits(d[i]) {
						t.Fatalf("lora_D[%d] = %v, lora_C[%d] = %v: want D = C", i, d[i], i, c[i])
					}
				}
			}
		})
	}
}

package peft

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/sora-go/sora/graph"
)

// The PyTorch test vectors (float64, computed from the formulas by an
// independent implementation): ../shared/data/reference/peft-cases.

type caseStats struct {
	Entropy           float64 `json:"entropy"`
	NNonzero          int     `json:"n_nonzero"`
	EntropyNormalized float64 `json:"entropy_normalized"`
	StableRank        float64 `json:"stable_rank"`
	Frobenius         float64 `json:"frobenius"`
	Spectral          float64 `json:"spectral"`
}

type casesJSON struct {
	Shape        []int                `json:"shape"`
	R            int                  `json:"r"`
	LoraAlpha    float64              `json:"lora_alpha"`
	Scaling      float64              `json:"scaling"`
	RotationRank int                  `json:"rotation_rank"`
	SP           float64              `json:"s_p"`
	BiasRules    map[string]string    `json:"bias_rules"`
	Stats        map[string]caseStats `json:"stats"`
}

func loadCases(t *testing.T) (casesJSON, map[string][]float64) {
	dir := sharedData(t, "reference/peft-cases")
	var c casesJSON
	readJSON(t, dir+"/cases.json", &c)
	return c, readF64(t, dir+"/cases.safetensors")
}

func TestPyTorchVectors(t *testing.T) {
	meta, ts := loadCases(t)
	b := openCPU(t)
	out, in := meta.Shape[0], meta.Shape[1]
	if meta.Scaling != meta.LoraAlpha/float64(meta.R) {
		t.Fatalf("cases.json: scaling %g ≠ lora_alpha/r = %g", meta.Scaling, meta.LoraAlpha/float64(meta.R))
	}
	x := ts["x"]
	n := len(x) / in
	cases := []struct {
		method Method
		key    string // name of the vectors
		exact  bool
	}{
		{LoRA, "lora", false},
		{LoRAPlus, "lora", false},
		{DoRA, "dora", false},
		{DoRAPEFT, "dora", false},
		{PreDiag, "prediag", false},
		{SORA, "sora", false},
		{SORA, "sora.exp", true},
		{PreOrtho, "preortho", false},
		{PreOrtho, "preortho.exp", true},
		{PostOrtho, "postortho", false},
		{PostOrtho, "postortho.exp", true},
	}
	for _, c := range cases {
		name := string(c.method)
		if c.exact {
			name += "/exact"
		}
		t.Run(name, func(t *testing.T) {
			base := &graph.Dense{
				W: upload(t, b, "w0", to32(ts["W0"]), graph.Frozen, out, in),
				B: upload(t, b, "b", to32(ts["b"]), graph.Frozen, out),
			}
			l, err := NewLayer("layer", base, Config{Method: c.method, R: meta.R, Alpha: meta.LoraAlpha,
				RotationRank: meta.RotationRank, ExactRotation: c.exact, TargetModules: []string{"layer"}})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Free()
			set(t, l.a, to32(ts["A"]))
			set(t, l.bm, to32(ts["B"]))
			for _, p := range []struct {
				v   *graph.Value
				key string
			}{{l.diag, "d"}, {l.mag, "m"}, {l.c, "C"}, {l.d, "D"}} {
				if p.v != nil {
					set(t, p.v, to32(ts[p.key]))
				}
			}
			wantW, wantB, wantY := ts[c.key+".W"], ts[c.key+".b"], ts[c.key+".y"]
			if wantW == nil || wantB == nil || wantY == nil {
				t.Fatalf("cases.safetensors lacks %s.W/.b/.y", c.key)
			}

			// Device: merge path and forward.
			w, bias, err := l.EffectiveWeight()
			if err != nil {
				t.Fatal(err)
			}
			if e := relMax(w, wantW); e > 2e-6 {
				t.Errorf("device W': relative error %.3g", e)
			}
			if e := relMax(bias, wantB); e > 2e-6 {
				t.Errorf("device b': relative error %.3g (bias rule %q)", e, meta.BiasRules[trimExp(c.key)])
			}
			y := forward(t, l, b, to32(x), n, in)
			if e := relMax(y, wantY); e > 2e-6 {
				t.Errorf("forward y: relative error %.3g", e)
			}

			// Host float64 path.
			u, err := l.Update64()
			if err != nil {
				t.Fatal(err)
			}
			if e := relMax(to32(u.Weight()), wantW); e > 1e-6 {
				t.Errorf("host W': relative error %.3g", e)
			}
			if e := relMax(to32(u.Bias), wantB); e > 1e-6 {
				t.Errorf("host b': relative error %.3g", e)
			}

			// Spectral statistics of ΔW.
			want, ok := meta.Stats[c.key]
			if !ok {
				t.Fatalf("cases.json has no stats for %s", c.key)
			}
			sp, err := l.Spectrum()
			if err != nil {
				t.Fatal(err)
			}
			if sp.NonZero != want.NNonzero {
				t.Errorf("n_nonzero %d, want %d (singular values %v)", sp.NonZero, want.NNonzero, sp.Singular)
			}
			for _, q := range []struct {
				name      string
				got, want float64
			}{
				{"entropy", sp.Entropy, want.Entropy},
				{"entropy_normalized", sp.NormalizedEntropy, want.EntropyNormalized},
				{"stable_rank", sp.StableRank, want.StableRank},
				{"frobenius", sp.Frobenius, want.Frobenius},
				{"spectral", sp.Spectral, want.Spectral},
			} {
				// Parameters are rounded to float32 (relative 6e-8).
				if math.Abs(q.got-q.want) > 1e-5*math.Abs(q.want) {
					t.Errorf("%s %.10g, want %.10g", q.name, q.got, q.want)
				}
			}
		})
	}
}

func trimExp(k string) string {
	if len(k) > 4 && k[len(k)-4:] == ".exp" {
		return k[:len(k)-4]
	}
	return k
}

// TestPyTorchRotation checks s_p, S, I + S and exp(S) against the vectors.
func TestPyTorchRotation(t *testing.T) {
	meta, ts := loadCases(t)
	out, rp := meta.Shape[0], meta.RotationRank
	c, d := mat.NewDense(out, rp, ts["C"]), mat.NewDense(out, rp, ts["D"])
	for _, exact := range []bool{false, true} {
		r := newRot64(c, d, exact)
		if math.Abs(r.sp-meta.SP) > 1e-15 {
			t.Errorf("s_p %.17g, want %.17g", r.sp, meta.SP)
		}
		key := "R_taylor"
		if exact {
			key = "R_exp"
		}
		got := r.dense().RawMatrix().Data
		if e := maxAbsDiff(got, ts[key]); e > 1e-14 {
			t.Errorf("%s: max error %.3g", key, e)
		}
		if !exact {
			s := r.dense()
			for i := range out {
				s.Set(i, i, s.At(i, i)-1)
			}
			if e := maxAbsDiff(s.RawMatrix().Data, ts["S"]); e > 1e-15 {
				t.Errorf("S: max error %.3g", e)
			}
		}
	}
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

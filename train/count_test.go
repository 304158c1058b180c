package train

import (
	"fmt"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/peft"
)

// countShapes are the [out, in] shapes of a block's linear layers for
// tinyConfig, written out by hand: q, k, v, o, gate, up, down with dim 16,
// hidden 24 and key/value width 2 heads × 4 = 8.
var countShapes = [][2]int64{{16, 16}, {8, 16}, {8, 16}, {16, 16}, {24, 16}, {24, 16}, {16, 24}}

// tinyBase is tinyConfig's parameter count by hand: the tied embedding
// [23, 16], the final norm [16] and per block two norms [16] and the seven
// projections.
func tinyBase() int64 {
	n := int64(23*16 + 16)
	for _, s := range countShapes {
		n += 2 * s[0] * s[1]
	}
	return n + 2*2*16
}

// adapterSize is the number of adapter elements the method adds to one
// layer [out, in] with r = 4 and r_p = 2 (OFT: 4 blocks of in/4).
func adapterSize(method peft.Method, out, in int64) int64 {
	lora := 4 * (in + out)
	switch method {
	case peft.LoRA:
		return lora
	case peft.DoRA, peft.PreDiag:
		return lora + out // m or d
	case peft.SORA:
		return lora + out + 2*out*2 // d, C, D
	case peft.OFT:
		bs := in / 4
		return 4 * bs * (bs - 1) / 2
	}
	panic(method)
}

// TestCountParams checks peft's Report on the LLaMA model against counts
// made by hand from the shapes: every base weight once, the adapters on
// top, a classifier's head trainable.
func TestCountParams(t *testing.T) {
	base := tinyBase()
	if base != tinyConfig().NumParams() {
		t.Fatalf("hand count %d, config says %d", base, tinyConfig().NumParams())
	}
	for _, method := range []peft.Method{peft.LoRA, peft.DoRA, peft.PreDiag, peft.SORA, peft.OFT, peft.Full} {
		for _, classes := range []int{0, 3} {
			t.Run(fmt.Sprintf("%s/classes=%d", method, classes), func(t *testing.T) {
				b := openCPU(t)
				m, pm := tinyModel(t, b, method, 1)
				defer pm.Unload()
				var adapters, trainable int64
				for _, s := range countShapes {
					if method == peft.Full {
						trainable += 2 * s[0] * s[1]
					} else {
						adapters += 2 * adapterSize(method, s[0], s[1])
					}
				}
				trainable += adapters
				want := peft.Report{Method: method, Layers: 2 * 7, Trainable: trainable, Total: base + adapters, Base: base}
				if classes > 0 {
					// The head comes after Inject, as in sora finetune, and trains.
					if err := m.AddScoreHead(classes, 1); err != nil {
						t.Fatal(err)
					}
					head := int64(classes * 16)
					want.Trainable += head
					want.Total += head
					want.Base += head
				}
				got := pm.Report()
				if got != want {
					t.Errorf("report %+v, want %+v", got, want)
				}
				if tr, tot := CountParams(m, pm); tr != want.Trainable || tot != want.Total {
					t.Errorf("CountParams: %d of %d, want %d of %d", tr, tot, want.Trainable, want.Total)
				}
			})
		}
	}
	// The numbers of a LoRA model, by hand: 2 blocks × r = 4 × Σ(in + out)
	// = 2 × 4 × 232 = 1,856 of 4,288 + 1,856.
	b := openCPU(t)
	_, pm := tinyModel(t, b, peft.LoRA, 1)
	defer pm.Unload()
	if got, want := pm.Report().String(), "lora on 14 layers: trainable params: 1,856 || all params: 6,144 || trainable%: 30.2083 || of the base model's 4,288: 43.2836%"; got != want {
		t.Errorf("report %q, want %q", got, want)
	}
	if tr, tot := CountParams(tinyPlain(t, b), nil); tr != 0 || tot != base {
		t.Errorf("CountParams without an adapter: %d of %d, want 0 of %d", tr, tot, base)
	}
}

func tinyPlain(t *testing.T, b backend.Backend) *llama.Model {
	w, err := InitWeights(tinyConfig(), 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.New(b, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// TestFreeAdaptedModel: a LLaMA model with an adapter (merged or not, with
// a classification head or not) gives the backend back every byte when the
// adapter is unloaded and the model freed, in either order, without a
// double free.
func TestFreeAdaptedModel(t *testing.T) {
	for _, method := range []peft.Method{peft.LoRA, peft.DoRA, peft.SORA, peft.OFT, peft.Full} {
		for _, order := range []string{"unload-then-free", "free-then-unload", "merged", "classifier"} {
			t.Run(string(method)+"/"+order, func(t *testing.T) {
				b := openCPU(t)
				start := b.BytesInUse()
				w, err := InitWeights(tinyConfig(), 3)
				if err != nil {
					t.Fatal(err)
				}
				m, err := llama.New(b, w)
				if err != nil {
					t.Fatal(err)
				}
				if order == "classifier" {
					if err := m.AddScoreHead(2, 1); err != nil {
						t.Fatal(err)
					}
				}
				pm, err := peft.Inject(m, peft.Config{Method: method, R: 4, Alpha: 8, RotationRank: 2, TargetModules: []string{peft.AllLinear}})
				if err != nil {
					t.Fatal(err)
				}
				if b.BytesInUse() <= start+4*tinyConfig().NumParams() && method != peft.Full {
					t.Fatalf("the adapter allocated nothing?")
				}
				switch order {
				case "free-then-unload":
					m.Free()
					pm.Unload()
				case "merged":
					if err := pm.Merge(); err != nil {
						t.Fatal(err)
					}
					fallthrough
				default:
					pm.Unload()
					m.Free()
				}
				if err := b.Sync(); err != nil {
					t.Errorf("freeing: %v", err)
				}
				if got := b.BytesInUse(); got != start {
					t.Errorf("%d bytes still in use after freeing, %d before loading", got, start)
				}
			})
		}
	}
}

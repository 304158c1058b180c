package ascend

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/sora-go/sora/backend"
	"github.com/sora-go/sora/backend/ascend/acltest"
)

// useChip makes the double report soc until the end of the test, which
// must not run in parallel with others.
func useChip(t *testing.T, soc string) {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	if double == nil {
		t.Skip("no ACL test double attached (child process)")
	}
	double.SetSocName(soc)
	t.Cleanup(func() { double.SetSocName(acltest.DefaultSocName) })
}

// TestMatMulModeByChip opens the backend on the double posing as
// different chips. Where CANN documents no float32 cube mode (the Atlas
// training and inference series, on which the double's aclnnMm refuses
// cubeMathType 0 for float32 as CANN says the real one does), the default
// mode must be the fast one, say so in Device and give FLOAT16-rounded
// products; asking for float32 there must fail Open with a message that
// names the chip and the way out. Elsewhere the default stays float32.
func TestMatMulModeByChip(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	m, n, k := 8, 6, 48
	A, B := randn(r, m*k, -1, 1), randn(r, k*n, -1, 1)
	want := matmulRef(A, B, m, n, k)
	for _, tc := range []struct {
		soc  string
		fp16 bool // no float32 cube mode
	}{
		{"Ascend910B3", false},
		{"Ascend910B4-1", false},
		{"Ascend910_9391", false}, // Atlas A3
		{"Ascend950", false},      // unknown: taken for a chip with float32
		{"", false},               // aclrtGetSocName gives no name
		{"Ascend910A", true},
		{"Ascend910ProA", true},
		{"Ascend910ProB", true},
		{"Ascend910PremiumA", true},
		{"Ascend910B", true}, // the training-series 910B, not an A2 part
		{"Ascend310P3", true},
	} {
		t.Run("chip="+tc.soc, func(t *testing.T) {
			useChip(t, tc.soc)
			contexts := double.Live("contexts")
			b32, err := Open(Options{MatMul: MatMulKeepFloat32})
			if tc.fp16 {
				if err == nil || !strings.Contains(err.Error(), tc.soc) || !strings.Contains(err.Error(), "SORA_ASCEND_MATMUL=fast") {
					t.Fatalf("Open with MatMulKeepFloat32 on %s: %v; want an error naming the chip and SORA_ASCEND_MATMUL=fast", tc.soc, err)
				}
				if got := double.Live("contexts"); got != contexts {
					t.Errorf("the refused Open left %d contexts, want %d", got, contexts)
				}
			} else if err != nil {
				t.Fatalf("Open with MatMulKeepFloat32 on %q: %v", tc.soc, err)
			} else if err := b32.Close(); err != nil {
				t.Fatal(err)
			}

			b, _ := openDouble(t, Options{})
			dev := b.Device()
			wantMode, wantDesc := MatMulKeepFloat32, "matmul float32 (cubeMathType 0)"
			if tc.fp16 {
				wantMode, wantDesc = MatMulFast, "matmul fast (cubeMathType 1: FLOAT16 inputs), the default on "+tc.soc+", which has no float32 cube mode"
			}
			if b.MatMulMode() != wantMode {
				t.Errorf("MatMulMode() = %v, want %v", b.MatMulMode(), wantMode)
			}
			if !strings.Contains(dev, wantDesc) {
				t.Errorf("Device() = %q, want it to contain %q", dev, wantDesc)
			}
			if tc.soc == "" && !strings.Contains(dev, "aclrtGetSocName gave no name") {
				t.Errorf("Device() = %q, want it to say the chip has no name", dev)
			}
			at, bt := upload(t, b, A, m, k), upload(t, b, B, k, n)
			ct, _ := b.Alloc(backend.Float32, m, n)
			b.MatMul(ct, at, bt, backend.MatMulParams{Alpha: 1})
			e := nmse(download(t, b, ct), want)
			if tc.fp16 {
				if e > FastMatMulNMSE || e < 1e-12 {
					t.Errorf("NMSE %.3g, want in [1e-12, %g]: FLOAT16 products, within the fast bound", e, FastMatMulNMSE)
				}
			} else if e > tight {
				t.Errorf("NMSE %.3g > %.3g", e, tight)
			}
		})
	}
}

// TestDoubleRefusesFloat32CubeOnOldChips shows what the backend's old
// default (cubeMathType 0 whatever the chip) did on an Atlas training
// series part: every matrix product failed.
func TestDoubleRefusesFloat32CubeOnOldChips(t *testing.T) {
	useChip(t, "Ascend910ProA")
	b, _ := openDouble(t, Options{MatMul: MatMulFast})
	x := upload(t, b, []float32{1, 2, 3, 4}, 2, 2)
	y, _ := b.Alloc(backend.Float32, 2, 2)
	b.opts.MatMul = MatMulKeepFloat32 // what Open refuses on this chip
	b.MatMul(y, x, x, backend.MatMulParams{Alpha: 1})
	b.opts.MatMul = MatMulFast
	err := b.Sync()
	if err == nil || !strings.Contains(err.Error(), "KEEP_DTYPE") || !strings.Contains(err.Error(), "Ascend910ProA") {
		t.Fatalf("MatMul with cubeMathType 0 on Ascend910ProA: %v; want aclnnMm's refusal", err)
	}
	b.MatMul(y, x, x, backend.MatMulParams{Alpha: 1})
	if got := download(t, b, y); got[0] != 7 || got[1] != 10 || got[2] != 15 || got[3] != 22 {
		t.Errorf("fast mode on Ascend910ProA: %v, want [7 10 15 22] (exact in FLOAT16)", got)
	}
}

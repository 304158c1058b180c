package gemm

import (
	"fmt"
	"go/constant"
	"go/token"
	"go/types"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fmlaeDefine matches the FMLAE macro of kernel_arm64.s, whose WORD
// expression spells out the encoding of FMLA (by element).
var fmlaeDefine = regexp.MustCompile(`(?m)^#define FMLAE\(d, n, m, i\) WORD \$(.*)$`)

// fmlaeUse matches one use of the macro.
var fmlaeUse = regexp.MustCompile(`FMLAE\((\d+), (\d+), (\d+), (\d+)\)`)

// fmlaeEncoding evaluates the macro's expression (C operators that are
// also Go's) for the given operands.
func fmlaeEncoding(t *testing.T, expr string, d, n, m, i int) uint64 {
	t.Helper()
	args := map[string]int{"d": d, "n": n, "m": m, "i": i}
	e := regexp.MustCompile(`\b[dnmi]\b`).ReplaceAllStringFunc(expr, func(s string) string { return strconv.Itoa(args[s]) })
	tv, err := types.Eval(token.NewFileSet(), nil, token.NoPos, e)
	if err != nil {
		t.Fatalf("evaluating FMLAE's expression %s: %v", e, err)
	}
	v, ok := constant.Uint64Val(tv.Value)
	if !ok {
		t.Fatalf("FMLAE's expression %s is not an unsigned constant: %v", e, tv.Value)
	}
	return v
}

// TestNEONEncoding checks the NEON kernel's hand-encoded instruction on
// any architecture: the FMLAE macro of kernel_arm64.s must give the words
// that GNU as (aarch64-linux-gnu-as 2.40) assembles from the instructions
// below, and KSTEP must use it for the 8×12 tile as its comment says:
// row r, columns 4q..4q+3 accumulate in V(3r+q) from B's V(26+q) times
// lane r%4 of V24 (rows 0-3) or V25 (rows 4-7). The kernel tests check
// what the instructions compute, where they can run (arm64, or qemu).
func TestNEONEncoding(t *testing.T) {
	src, err := os.ReadFile("kernel_arm64.s")
	if err != nil {
		t.Fatal(err)
	}
	def := fmlaeDefine.FindSubmatch(src)
	if def == nil {
		t.Fatal("kernel_arm64.s has no line #define FMLAE(d, n, m, i) WORD $...")
	}
	expr := string(def[1])
	tests := []struct {
		d, n, m, i int
		asm        string
		want       uint64
	}{
		{0, 26, 24, 0, "fmla v0.4s, v26.4s, v24.s[0]", 0x4f981340},
		{0, 26, 24, 3, "fmla v0.4s, v26.4s, v24.s[3]", 0x4fb81b40},
		{23, 28, 25, 3, "fmla v23.4s, v28.4s, v25.s[3]", 0x4fb91b97},
		{17, 28, 25, 1, "fmla v17.4s, v28.4s, v25.s[1]", 0x4fb91391},
		{12, 26, 25, 0, "fmla v12.4s, v26.4s, v25.s[0]", 0x4f99134c},
		{31, 0, 31, 2, "fmla v31.4s, v0.4s, v31.s[2]", 0x4f9f181f},
		{0, 1, 2, 0, "fmla v0.4s, v1.4s, v2.s[0]", 0x4f821020},
		{5, 15, 16, 1, "fmla v5.4s, v15.4s, v16.s[1]", 0x4fb011e5},
	}
	for _, tt := range tests {
		if got := fmlaeEncoding(t, expr, tt.d, tt.n, tt.m, tt.i); got != tt.want {
			t.Errorf("FMLAE(%d, %d, %d, %d) = %#08x, want %#08x (%s)", tt.d, tt.n, tt.m, tt.i, got, tt.want, tt.asm)
		}
	}

	// The uses inside KSTEP, which ends at the first line not continued.
	start := strings.Index(string(src), "#define KSTEP")
	if start < 0 {
		t.Fatal("kernel_arm64.s has no KSTEP macro")
	}
	lines := strings.Split(string(src[start:]), "\n")
	end := 0
	for end < len(lines)-1 && strings.HasSuffix(lines[end], `\`) {
		end++
	}
	body := strings.Join(lines[:end+1], "\n")
	got := map[string]bool{}
	for _, u := range fmlaeUse.FindAllStringSubmatch(body, -1) {
		got[u[0]] = true
	}
	want := map[string]bool{}
	for r := range 8 {
		for q := range 3 {
			want[fmt.Sprintf("FMLAE(%d, %d, %d, %d)", 3*r+q, 26+q, 24+r/4, r%4)] = true
		}
	}
	for u := range want {
		if !got[u] {
			t.Errorf("KSTEP lacks %s", u)
		}
	}
	for u := range got {
		if !want[u] {
			t.Errorf("KSTEP has %s, which is not part of the 8×12 tile", u)
		}
	}
}

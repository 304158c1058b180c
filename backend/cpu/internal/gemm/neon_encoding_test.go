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

// macroExpr returns the WORD expression of the macro name(params) in the
// assembly file, as defined by a line "#define name(params) WORD $expr".
func macroExpr(t *testing.T, src []byte, file, name, params string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^#define ` + regexp.QuoteMeta(name+"("+params+")") + ` WORD \$(.*)$`)
	def := re.FindSubmatch(src)
	if def == nil {
		t.Fatalf("%s has no line #define %s(%s) WORD $...", file, name, params)
	}
	return string(def[1])
}

// encode evaluates a macro's WORD expression (C operators that are also
// Go's) with its single-letter parameters replaced by args.
func encode(t *testing.T, expr string, args map[string]int) uint64 {
	t.Helper()
	e := regexp.MustCompile(`\b[a-z]\b`).ReplaceAllStringFunc(expr, func(s string) string {
		v, ok := args[s]
		if !ok {
			t.Fatalf("expression %s uses %s, which is not a parameter", expr, s)
		}
		return strconv.Itoa(v)
	})
	tv, err := types.Eval(token.NewFileSet(), nil, token.NoPos, e)
	if err != nil {
		t.Fatalf("evaluating %s: %v", e, err)
	}
	v, ok := constant.Uint64Val(tv.Value)
	if !ok {
		t.Fatalf("%s is not an unsigned constant: %v", e, tv.Value)
	}
	return v
}

// fmlaeUse matches one use of the FMLAE macro.
var fmlaeUse = regexp.MustCompile(`FMLAE\((\d+), (\d+), (\d+), (\d+)\)`)

// TestNEONEncoding checks the NEON kernels' hand-encoded instructions on
// any architecture: each macro that writes one as WORD must give the words
// that GNU as (aarch64-linux-gnu-as 2.40) assembles from the instructions
// below, and KSTEP must use FMLAE for the 8×12 tile as its comment says:
// row r, columns 4q..4q+3 accumulate in V(3r+q) from B's V(26+q) times
// lane r%4 of V24 (rows 0-3) or V25 (rows 4-7). The kernel tests check
// what the instructions compute, where they can run (arm64, or qemu).
func TestNEONEncoding(t *testing.T) {
	files := map[string][]byte{}
	for _, f := range []string{"kernel_arm64.s", "dot_arm64.s"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files[f] = src
	}
	tests := []struct {
		file, macro, params string
		args                []int
		asm                 string
		want                uint64
	}{
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{0, 26, 24, 0}, "fmla v0.4s, v26.4s, v24.s[0]", 0x4f981340},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{0, 26, 24, 3}, "fmla v0.4s, v26.4s, v24.s[3]", 0x4fb81b40},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{23, 28, 25, 3}, "fmla v23.4s, v28.4s, v25.s[3]", 0x4fb91b97},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{17, 28, 25, 1}, "fmla v17.4s, v28.4s, v25.s[1]", 0x4fb91391},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{12, 26, 25, 0}, "fmla v12.4s, v26.4s, v25.s[0]", 0x4f99134c},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{31, 0, 31, 2}, "fmla v31.4s, v0.4s, v31.s[2]", 0x4f9f181f},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{0, 1, 2, 0}, "fmla v0.4s, v1.4s, v2.s[0]", 0x4f821020},
		{"kernel_arm64.s", "FMLAE", "d, n, m, i", []int{5, 15, 16, 1}, "fmla v5.4s, v15.4s, v16.s[1]", 0x4fb011e5},
		{"dot_arm64.s", "FADDV", "d, n, m", []int{0, 0, 1}, "fadd v0.4s, v0.4s, v1.4s", 0x4e21d400},
		{"dot_arm64.s", "FADDV", "d, n, m", []int{14, 14, 15}, "fadd v14.4s, v14.4s, v15.4s", 0x4e2fd5ce},
		{"dot_arm64.s", "FADDV", "d, n, m", []int{31, 17, 3}, "fadd v31.4s, v17.4s, v3.4s", 0x4e23d63f},
		{"dot_arm64.s", "FADDPV", "d, n, m", []int{0, 0, 2}, "faddp v0.4s, v0.4s, v2.4s", 0x6e22d400},
		{"dot_arm64.s", "FADDPV", "d, n, m", []int{8, 8, 12}, "faddp v8.4s, v8.4s, v12.4s", 0x6e2cd508},
		{"dot_arm64.s", "FADDPV", "d, n, m", []int{31, 17, 3}, "faddp v31.4s, v17.4s, v3.4s", 0x6e23d63f},
	}
	for _, tt := range tests {
		expr := macroExpr(t, files[tt.file], tt.file, tt.macro, tt.params)
		args := map[string]int{}
		for i, p := range strings.Split(tt.params, ", ") {
			args[p] = tt.args[i]
		}
		if got := encode(t, expr, args); got != tt.want {
			t.Errorf("%s %s%v = %#08x, want %#08x (%s)", tt.file, tt.macro, tt.args, got, tt.want, tt.asm)
		}
	}

	src := files["kernel_arm64.s"]
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

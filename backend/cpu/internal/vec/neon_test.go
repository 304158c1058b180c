package vec

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// neonSamples are instructions of each form that kernels_arm64.s writes as
// WORD, with the words GNU as (aarch64-linux-gnu-as 2.40) assembles them
// to: one with every register 0, which gives the form's base, and two
// with other registers, which check that the registers d, n, m (in the
// order the syntax names them) go in bits 0-4, 5-9 and 16-20.
var neonSamples = []struct {
	asm  string
	word uint32
}{
	{"fadd v0.4s, v0.4s, v0.4s", 0x4e20d400},
	{"fadd v1.4s, v2.4s, v3.4s", 0x4e23d441},
	{"fadd v31.4s, v17.4s, v8.4s", 0x4e28d63f},
	{"fsub v0.4s, v0.4s, v0.4s", 0x4ea0d400},
	{"fsub v1.4s, v2.4s, v3.4s", 0x4ea3d441},
	{"fsub v31.4s, v17.4s, v8.4s", 0x4ea8d63f},
	{"fmul v0.4s, v0.4s, v0.4s", 0x6e20dc00},
	{"fmul v1.4s, v2.4s, v3.4s", 0x6e23dc41},
	{"fmul v31.4s, v17.4s, v8.4s", 0x6e28de3f},
	{"fdiv v0.4s, v0.4s, v0.4s", 0x6e20fc00},
	{"fdiv v1.4s, v2.4s, v3.4s", 0x6e23fc41},
	{"fdiv v31.4s, v17.4s, v8.4s", 0x6e28fe3f},
	{"fmax v0.4s, v0.4s, v0.4s", 0x4e20f400},
	{"fmax v1.4s, v2.4s, v3.4s", 0x4e23f441},
	{"fmax v31.4s, v17.4s, v8.4s", 0x4e28f63f},
	{"fmin v0.4s, v0.4s, v0.4s", 0x4ea0f400},
	{"fmin v1.4s, v2.4s, v3.4s", 0x4ea3f441},
	{"fmin v31.4s, v17.4s, v8.4s", 0x4ea8f63f},
	{"fneg v0.4s, v0.4s", 0x6ea0f800},
	{"fneg v1.4s, v2.4s", 0x6ea0f841},
	{"fneg v31.4s, v17.4s", 0x6ea0fa3f},
	{"fsqrt v0.4s, v0.4s", 0x6ea1f800},
	{"fsqrt v1.4s, v2.4s", 0x6ea1f841},
	{"fsqrt v31.4s, v17.4s", 0x6ea1fa3f},
	{"fcmle v0.4s, v0.4s, #0.0", 0x6ea0d800},
	{"fcmle v1.4s, v2.4s, #0.0", 0x6ea0d841},
	{"fcmle v31.4s, v17.4s, #0.0", 0x6ea0da3f},
	{"fcmgt v0.4s, v0.4s, #0.0", 0x4ea0c800},
	{"fcmgt v1.4s, v2.4s, #0.0", 0x4ea0c841},
	{"fcmgt v31.4s, v17.4s, #0.0", 0x4ea0ca3f},
	{"fmaxv s0, v0.4s", 0x6e30f800},
	{"fmaxv s1, v2.4s", 0x6e30f841},
	{"fmaxv s31, v17.4s", 0x6e30fa3f},
	{"frintn v0.4s, v0.4s", 0x4e218800},
	{"frintn v1.4s, v2.4s", 0x4e218841},
	{"frintn v31.4s, v17.4s", 0x4e218a3f},
	{"fcvtzs v0.4s, v0.4s", 0x4ea1b800},
	{"fcvtzs v1.4s, v2.4s", 0x4ea1b841},
	{"fcvtzs v31.4s, v17.4s", 0x4ea1ba3f},
	{"fsqrt v0.2d, v0.2d", 0x6ee1f800},
	{"fsqrt v1.2d, v2.2d", 0x6ee1f841},
	{"fsqrt v31.2d, v17.2d", 0x6ee1fa3f},
	{"fdiv v0.2d, v0.2d, v0.2d", 0x6e60fc00},
	{"fdiv v1.2d, v2.2d, v3.2d", 0x6e63fc41},
	{"fdiv v31.2d, v17.2d, v8.2d", 0x6e68fe3f},
	{"fcvtn v0.2s, v0.2d", 0x0e616800},
	{"fcvtn v1.2s, v2.2d", 0x0e616841},
	{"fcvtn v31.2s, v17.2d", 0x0e616a3f},
	{"fcvtn2 v0.4s, v0.2d", 0x4e616800},
	{"fcvtn2 v1.4s, v2.2d", 0x4e616841},
	{"fcvtn2 v31.4s, v17.2d", 0x4e616a3f},
	{"fabs v0.4s, v0.4s", 0x4ea0f800},
	{"fabs v1.4s, v2.4s", 0x4ea0f841},
	{"fabs v31.4s, v17.4s", 0x4ea0fa3f},
	{"fcmge v0.4s, v0.4s, #0.0", 0x6ea0c800},
	{"fcmge v1.4s, v2.4s, #0.0", 0x6ea0c841},
	{"fcmge v31.4s, v17.4s, #0.0", 0x6ea0ca3f},
	{"sshr v0.4s, v0.4s, #1", 0x4f3f0400},
	{"sshr v1.4s, v2.4s, #1", 0x4f3f0441},
	{"sshr v31.4s, v17.4s, #1", 0x4f3f063f},
	{"bic v0.16b, v0.16b, v0.16b", 0x4e601c00},
	{"bic v1.16b, v2.16b, v3.16b", 0x4e631c41},
	{"bic v31.16b, v17.16b, v8.16b", 0x4e681e3f},
	{"fadd v0.2d, v0.2d, v0.2d", 0x4e60d400},
	{"fadd v1.2d, v2.2d, v3.2d", 0x4e63d441},
	{"fadd v31.2d, v17.2d, v8.2d", 0x4e68d63f},
	{"fsub v0.2d, v0.2d, v0.2d", 0x4ee0d400},
	{"fsub v1.2d, v2.2d, v3.2d", 0x4ee3d441},
	{"fsub v31.2d, v17.2d, v8.2d", 0x4ee8d63f},
	{"fmul v0.2d, v0.2d, v0.2d", 0x6e60dc00},
	{"fmul v1.2d, v2.2d, v3.2d", 0x6e63dc41},
	{"fmul v31.2d, v17.2d, v8.2d", 0x6e68de3f},
	{"faddp d0, v0.2d", 0x7e70d800},
	{"faddp d1, v2.2d", 0x7e70d841},
	{"faddp d31, v17.2d", 0x7e70da3f},
	{"fcvtl v0.2d, v0.2s", 0x0e617800},
	{"fcvtl v1.2d, v2.2s", 0x0e617841},
	{"fcvtl v31.2d, v17.2s", 0x0e617a3f},
	{"fcvtl2 v0.2d, v0.4s", 0x4e617800},
	{"fcvtl2 v1.2d, v2.4s", 0x4e617841},
	{"fcvtl2 v31.2d, v17.4s", 0x4e617a3f},
	{"fcmeq v0.4s, v0.4s, v0.4s", 0x4e20e400},
	{"fcmeq v1.4s, v2.4s, v3.4s", 0x4e23e441},
	{"fcmeq v31.4s, v17.4s, v8.4s", 0x4e28e63f},
	{"fcmgt v0.4s, v0.4s, v0.4s", 0x6ea0e400},
	{"fcmgt v1.4s, v2.4s, v3.4s", 0x6ea3e441},
	{"fcmgt v31.4s, v17.4s, v8.4s", 0x6ea8e63f},
	{"fcmge v0.4s, v0.4s, v0.4s", 0x6e20e400},
	{"fcmge v1.4s, v2.4s, v3.4s", 0x6e23e441},
	{"fcmge v31.4s, v17.4s, v8.4s", 0x6e28e63f},
	{"fcmeq v0.4s, v0.4s, #0.0", 0x4ea0d800},
	{"fcmeq v1.4s, v2.4s, #0.0", 0x4ea0d841},
	{"fcmeq v31.4s, v17.4s, #0.0", 0x4ea0da3f},
	{"cmgt v0.4s, v0.4s, v0.4s", 0x4ea03400},
	{"cmgt v1.4s, v2.4s, v3.4s", 0x4ea33441},
	{"cmgt v31.4s, v17.4s, v8.4s", 0x4ea8363f},
	{"sshr v0.4s, v0.4s, #4", 0x4f3c0400},
	{"sshr v1.4s, v2.4s, #4", 0x4f3c0441},
	{"sshr v31.4s, v17.4s, #4", 0x4f3c063f},
	{"sshr v0.4s, v0.4s, #23", 0x4f290400},
	{"sshr v1.4s, v2.4s, #23", 0x4f290441},
	{"sshr v31.4s, v17.4s, #23", 0x4f29063f},
	{"scvtf v0.4s, v0.4s", 0x4e21d800},
	{"scvtf v1.4s, v2.4s", 0x4e21d841},
	{"scvtf v31.4s, v17.4s", 0x4e21da3f},
	{"fmul v0.4s, v0.4s, v0.s[0]", 0x4f809000},
	{"fmul v1.4s, v2.4s, v3.s[0]", 0x4f839041},
	{"fmul v31.4s, v17.4s, v8.s[0]", 0x4f88923f},
	{"fmul v0.4s, v0.4s, v0.s[1]", 0x4fa09000},
	{"fmul v1.4s, v2.4s, v3.s[1]", 0x4fa39041},
	{"fmul v31.4s, v17.4s, v8.s[1]", 0x4fa8923f},
	{"fmul v0.4s, v0.4s, v0.s[2]", 0x4f809800},
	{"fmul v1.4s, v2.4s, v3.s[2]", 0x4f839841},
	{"fmul v31.4s, v17.4s, v8.s[2]", 0x4f889a3f},
	{"fmul v0.4s, v0.4s, v0.s[3]", 0x4fa09800},
	{"fmul v1.4s, v2.4s, v3.s[3]", 0x4fa39841},
	{"fmul v31.4s, v17.4s, v8.s[3]", 0x4fa89a3f},
	{"fmla v0.4s, v0.4s, v0.s[0]", 0x4f801000},
	{"fmla v1.4s, v2.4s, v3.s[0]", 0x4f831041},
	{"fmla v31.4s, v17.4s, v8.s[0]", 0x4f88123f},
	{"fmla v0.4s, v0.4s, v0.s[1]", 0x4fa01000},
	{"fmla v1.4s, v2.4s, v3.s[1]", 0x4fa31041},
	{"fmla v31.4s, v17.4s, v8.s[1]", 0x4fa8123f},
	{"fmla v0.4s, v0.4s, v0.s[2]", 0x4f801800},
	{"fmla v1.4s, v2.4s, v3.s[2]", 0x4f831841},
	{"fmla v31.4s, v17.4s, v8.s[2]", 0x4f881a3f},
	{"fmla v0.4s, v0.4s, v0.s[3]", 0x4fa01800},
	{"fmla v1.4s, v2.4s, v3.s[3]", 0x4fa31841},
	{"fmla v31.4s, v17.4s, v8.s[3]", 0x4fa81a3f},
	{"fmls v0.4s, v0.4s, v0.s[0]", 0x4f805000},
	{"fmls v1.4s, v2.4s, v3.s[0]", 0x4f835041},
	{"fmls v31.4s, v17.4s, v8.s[0]", 0x4f88523f},
	{"fmls v0.4s, v0.4s, v0.s[1]", 0x4fa05000},
	{"fmls v1.4s, v2.4s, v3.s[1]", 0x4fa35041},
	{"fmls v31.4s, v17.4s, v8.s[1]", 0x4fa8523f},
	{"fmls v0.4s, v0.4s, v0.s[2]", 0x4f805800},
	{"fmls v1.4s, v2.4s, v3.s[2]", 0x4f835841},
	{"fmls v31.4s, v17.4s, v8.s[2]", 0x4f885a3f},
	{"fmls v0.4s, v0.4s, v0.s[3]", 0x4fa05800},
	{"fmls v1.4s, v2.4s, v3.s[3]", 0x4fa35841},
	{"fmls v31.4s, v17.4s, v8.s[3]", 0x4fa85a3f},
	{"mla v0.4s, v0.4s, v0.s[0]", 0x6f800000},
	{"mla v1.4s, v2.4s, v3.s[0]", 0x6f830041},
	{"mla v31.4s, v17.4s, v8.s[0]", 0x6f88023f},
	{"mla v0.4s, v0.4s, v0.s[1]", 0x6fa00000},
	{"mla v1.4s, v2.4s, v3.s[1]", 0x6fa30041},
	{"mla v31.4s, v17.4s, v8.s[1]", 0x6fa8023f},
	{"mla v0.4s, v0.4s, v0.s[2]", 0x6f800800},
	{"mla v1.4s, v2.4s, v3.s[2]", 0x6f830841},
	{"mla v31.4s, v17.4s, v8.s[2]", 0x6f880a3f},
	{"mla v0.4s, v0.4s, v0.s[3]", 0x6fa00800},
	{"mla v1.4s, v2.4s, v3.s[3]", 0x6fa30841},
	{"mla v31.4s, v17.4s, v8.s[3]", 0x6fa80a3f},
}

// neonRegister matches a register operand of the GNU syntax: v3.4s, s0, d31.
var neonRegister = regexp.MustCompile(`\b[vsd](\d+)\b`)

// neonForm splits an instruction in GNU syntax into its form (registers
// numbered 0) and its register fields d, n, m placed as the encoding
// places them.
func neonForm(asm string) (form string, fields uint32) {
	var regs []uint32
	form = neonRegister.ReplaceAllStringFunc(asm, func(s string) string {
		r, _ := strconv.Atoi(s[1:])
		regs = append(regs, uint32(r))
		return s[:1] + "0"
	})
	for i, shift := range []uint{0, 5, 16} {
		if i < len(regs) {
			fields |= regs[i] << shift
		}
	}
	return form, fields
}

// neonWord matches a hand-encoded instruction of kernels_arm64.s.
var neonWord = regexp.MustCompile(`(?m)^\tWORD \$0x([0-9a-f]{8}) // (.+)$`)

// TestNEONWords checks every instruction kernels_arm64.s writes as WORD
// against the comment that names it, on any architecture: the word must
// be the base of the comment's form, from GNU as (neonSamples), with the
// comment's registers in their fields. Where aarch64-linux-gnu-as is on
// the PATH, it also assembles every comment and compares. The kernel
// tests check what the instructions compute, where they run (arm64, or
// qemu).
func TestNEONWords(t *testing.T) {
	bases := map[string]uint32{}
	for _, s := range neonSamples {
		if form, fields := neonForm(s.asm); fields == 0 {
			bases[form] = s.word
		}
	}
	for _, s := range neonSamples {
		form, fields := neonForm(s.asm)
		if base, ok := bases[form]; !ok || base|fields != s.word {
			t.Errorf("%q: GNU as gives %#08x; base %#08x (known: %v) with the registers in bits 0-4, 5-9, 16-20 gives %#08x",
				s.asm, s.word, base, ok, base|fields)
		}
	}
	src, err := os.ReadFile("kernels_arm64.s")
	if err != nil {
		t.Fatal(err)
	}
	uses := neonWord.FindAllSubmatch(src, -1)
	if len(uses) < 100 {
		t.Fatalf("kernels_arm64.s has %d WORD instructions with a comment; the kernels need hundreds", len(uses))
	}
	words := make([]uint32, len(uses))
	var asm bytes.Buffer
	for i, u := range uses {
		w, _ := strconv.ParseUint(string(u[1]), 16, 32)
		words[i] = uint32(w)
		form, fields := neonForm(string(u[2]))
		base, ok := bases[form]
		switch {
		case !ok:
			t.Errorf("WORD $%#08x // %s: no GNU as sample of the form %q in neonSamples", w, u[2], form)
		case base|fields != words[i]:
			t.Errorf("WORD $%#08x // %s: the instruction is %#08x", w, u[2], base|fields)
		}
		asm.Write(u[2])
		asm.WriteByte('\n')
	}

	as, err := exec.LookPath("aarch64-linux-gnu-as")
	if err != nil {
		t.Log("aarch64-linux-gnu-as not on the PATH: comments not assembled")
		return
	}
	dir := t.TempDir()
	in, obj := filepath.Join(dir, "words.s"), filepath.Join(dir, "words.o")
	if err := os.WriteFile(in, asm.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(as, "-o", obj, in).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", as, err, out)
	}
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text, err := f.Section(".text").Data()
	if err != nil {
		t.Fatal(err)
	}
	if len(text) != 4*len(words) {
		t.Fatalf("GNU as gave %d bytes for %d instructions", len(text), len(words))
	}
	for i, w := range words {
		if got := binary.LittleEndian.Uint32(text[4*i:]); got != w {
			t.Errorf("%s: GNU as gives %#08x, kernels_arm64.s has %#08x", strings.TrimSpace(string(uses[i][2])), got, w)
		}
	}
}

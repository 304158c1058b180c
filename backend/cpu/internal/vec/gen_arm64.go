//go:build ignore

// Command gen_arm64 writes kernels_arm64.s and stubs_arm64.go: the NEON
// (Advanced SIMD) kernels of package vec for arm64, four float32 lanes
// or two float64 lanes in each of the 32 vector registers, from one
// description per kernel.
//
// Go's arm64 assembler has almost none of NEON's floating-point
// instructions (it has VFMLA and VFMLS, the bitwise ones and the loads
// and stores), so the rest are written as WORD with their encoding,
// each followed by a comment with the instruction in GNU syntax, which
// neon_test.go checks the word against (TestNEONWords): the base of
// every form is taken from GNU as, and where aarch64-linux-gnu-as is on
// the PATH every comment is assembled and compared too.
//
// Three loop shapes cover the kernels:
//
//   - element-wise float32 maps (dst = f(inputs, scalars)), sixteen
//     elements (four vectors; eight in two, or four in one, where a body
//     needs more registers) per iteration, then four, then one at a
//     time: the last elements are loaded into lane 0 (FMOVS, which
//     zeroes the other lanes), run through the same vector
//     instructions, and stored from lane 0, so that they are computed
//     exactly as the others are;
//   - float64 reductions and accumulations, which widen each float32
//     vector into two float64 halves (FCVTL, FCVTL2), accumulate in
//     float64 vectors, add the accumulators up and take the last
//     elements one by one in scalar float64 arithmetic;
//   - a few loops of their own (Max, MaxScaled, the exponentials).
//
// The element-wise arithmetic, the row steps and AdamW repeat the
// operations of the Go kernels (generic.go) in the same order, fusing a
// multiply and an add exactly where the Go compiler fuses them on arm64
// (it does for y + a·b written in one expression, unless a conversion
// rounds the product), so that the two agree bit for bit. So do the
// functions (Exp, Log, Tanh, Sigmoid, SiLU, GELU, GELUTanh and their
// derivatives, ExpShift's exponentials), which take the steps of exp32,
// log32, tanhParts, sigmoidParts, phiTail and geluTanhExp (math32.go)
// with their constants, tables and coefficients (neonC, coeffs.go),
// computing both sides of a branch and selecting lane by lane, fused
// where Go fuses (roundEven's sum onto a product included); where Go
// rounds a float64 sum to float32 (fma32, gelu32's difference, the
// exponent of the sums' terms) they round once, which can differ only
// where that sum is a float32 midpoint (never seen in the tests). The
// exponential sums take expSum32's steps for their terms and add them
// in float64 in their own order.
//
// Constants that are only multiplied by or copied are kept four to a
// register and used by element (FMUL, FMLA, FMLS, MLA and DUP of a
// lane), which leaves the transcendental kernels registers for their
// temporaries; the sixteen-entry tables (GELUTanh's 2^(j/16), phiT's
// rows) are looked up with TBL, sixteen byte indices computed from each
// lane's entry number.
//
// Run it with: go run gen_arm64.go (go generate does); -dir writes the
// files elsewhere (generate_test.go compares such a run with the files).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"strings"
)

// gen accumulates the assembly and the Go declarations.
type gen struct {
	s     bytes.Buffer // kernels_arm64.s
	stubs bytes.Buffer // stubs_arm64.go
}

// I emits an instruction.
func (g *gen) I(format string, args ...any) { fmt.Fprintf(&g.s, "\t"+format+"\n", args...) }

func (g *gen) label(l string) { fmt.Fprintf(&g.s, "%s:\n", l) }

// ---- encodings ----

// form is one NEON instruction form Go's assembler lacks: the encoding
// with every register field 0, and its GNU syntax with %[1]d, %[2]d and
// %[3]d standing for the registers d, n and m, which go in bits 0-4, 5-9
// and 16-20 of the word.
type form struct {
	base   uint32
	syntax string
}

var forms = map[string]form{
	"fadd4s":  {0x4e20d400, "fadd v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fsub4s":  {0x4ea0d400, "fsub v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fmul4s":  {0x6e20dc00, "fmul v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fdiv4s":  {0x6e20fc00, "fdiv v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fmax4s":  {0x4e20f400, "fmax v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fmin4s":  {0x4ea0f400, "fmin v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fneg4s":  {0x6ea0f800, "fneg v%[1]d.4s, v%[2]d.4s"},
	"fsqrt4s": {0x6ea1f800, "fsqrt v%[1]d.4s, v%[2]d.4s"},
	"fcmle0":  {0x6ea0d800, "fcmle v%[1]d.4s, v%[2]d.4s, #0.0"},
	"fcmgt0":  {0x4ea0c800, "fcmgt v%[1]d.4s, v%[2]d.4s, #0.0"},
	"fmaxv":   {0x6e30f800, "fmaxv s%[1]d, v%[2]d.4s"},
	"frintn":  {0x4e218800, "frintn v%[1]d.4s, v%[2]d.4s"},
	"fcvtzs":  {0x4ea1b800, "fcvtzs v%[1]d.4s, v%[2]d.4s"},
	"sshr1":   {0x4f3f0400, "sshr v%[1]d.4s, v%[2]d.4s, #1"},
	"fabs4s":  {0x4ea0f800, "fabs v%[1]d.4s, v%[2]d.4s"},
	"fcmge0":  {0x6ea0c800, "fcmge v%[1]d.4s, v%[2]d.4s, #0.0"},
	"bic":     {0x4e601c00, "bic v%[1]d.16b, v%[2]d.16b, v%[3]d.16b"},
	"fadd2d":  {0x4e60d400, "fadd v%[1]d.2d, v%[2]d.2d, v%[3]d.2d"},
	"fsub2d":  {0x4ee0d400, "fsub v%[1]d.2d, v%[2]d.2d, v%[3]d.2d"},
	"fmul2d":  {0x6e60dc00, "fmul v%[1]d.2d, v%[2]d.2d, v%[3]d.2d"},
	"fdiv2d":  {0x6e60fc00, "fdiv v%[1]d.2d, v%[2]d.2d, v%[3]d.2d"},
	"fsqrt2d": {0x6ee1f800, "fsqrt v%[1]d.2d, v%[2]d.2d"},
	"faddp2d": {0x7e70d800, "faddp d%[1]d, v%[2]d.2d"},
	"fcvtn":   {0x0e616800, "fcvtn v%[1]d.2s, v%[2]d.2d"},
	"fcvtn2":  {0x4e616800, "fcvtn2 v%[1]d.4s, v%[2]d.2d"},
	"fcvtl":   {0x0e617800, "fcvtl v%[1]d.2d, v%[2]d.2s"},
	"fcvtl2":  {0x4e617800, "fcvtl2 v%[1]d.2d, v%[2]d.4s"},
	"fcmeq":   {0x4e20e400, "fcmeq v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fcmgt":   {0x6ea0e400, "fcmgt v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fcmge":   {0x6e20e400, "fcmge v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"fcmeq0":  {0x4ea0d800, "fcmeq v%[1]d.4s, v%[2]d.4s, #0.0"},
	"cmgt":    {0x4ea03400, "cmgt v%[1]d.4s, v%[2]d.4s, v%[3]d.4s"},
	"sshr4":   {0x4f3c0400, "sshr v%[1]d.4s, v%[2]d.4s, #4"},
	"sshr23":  {0x4f290400, "sshr v%[1]d.4s, v%[2]d.4s, #23"},
	"scvtf":   {0x4e21d800, "scvtf v%[1]d.4s, v%[2]d.4s"},
}

// The by-element forms, op·d = n op m.s[i]: FMUL, FMLA and FMLS of
// float32 lanes and MLA of int32 lanes, forms op0 to op3 by the lane,
// whose number goes in bits L (21) and H (11) of the word.
func init() {
	for op, base := range map[string]uint32{"fmul": 0x4f809000, "fmla": 0x4f801000, "fmls": 0x4f805000, "mla": 0x6f800000} {
		for i := range 4 {
			forms[fmt.Sprintf("%s%d", op, i)] = form{base | uint32(i&1)<<21 | uint32(i>>1)<<11,
				fmt.Sprintf("%s v%%[1]d.4s, v%%[2]d.4s, v%%[3]d.s[%d]", op, i)}
		}
	}
}

// W emits the instruction op with registers d, n and m (as many as the
// form has).
func (g *gen) W(op string, regs ...int) {
	f, ok := forms[op]
	if !ok {
		panic("no form " + op)
	}
	r := [3]int{}
	copy(r[:], regs)
	for _, v := range r {
		if v < 0 || v > 31 {
			panic(fmt.Sprintf("%s: register %d", op, v))
		}
	}
	w := f.base | uint32(r[0]) | uint32(r[1])<<5 | uint32(r[2])<<16
	syn := f.syntax
	// Drop the verbs for operands the form does not have, so that
	// Sprintf does not complain of extra arguments.
	args := []any{r[0], r[1], r[2]}[:strings.Count(syn, "%[")]
	g.I("WORD $0x%08x // %s", w, fmt.Sprintf(syn, args...))
}

// V names vector register r with an arrangement: V(3, "S4") is V3.S4.
func V(r int, arr string) string { return fmt.Sprintf("V%d.%s", r, arr) }

// list is a register list for VLD1/VST1: n consecutive registers from r.
func list(r, n int, arr string) string {
	var s []string
	for i := range n {
		s = append(s, V(r+i, arr))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// ---- arguments ----

// arg is one argument or result of an assembly function, laid out as Go's
// ABI0 lays out the frame: each at the next multiple of its size.
type arg struct {
	name, typ string
	off       int
}

func size(typ string) int {
	switch typ {
	case "float32":
		return 4
	}
	return 8
}

// frame lays out args and results and returns them with the frame size
// (args and results).
func frame(args, results []arg) ([]arg, []arg, int) {
	off := 0
	place := func(as []arg) []arg {
		var out []arg
		for _, a := range as {
			s := size(a.typ)
			off = (off + s - 1) / s * s
			a.off = off
			off += s
			out = append(out, a)
		}
		return out
	}
	args = place(args)
	off = (off + 7) / 8 * 8 // results start at a word boundary
	results = place(results)
	return args, results, off
}

// fn starts an assembly function and writes its Go declaration, doc being
// the comment above it.
func (g *gen) fn(name, doc string, args, results []arg) map[string]arg {
	args, results, fsize := frame(args, results)
	var ps, rs []string
	for _, a := range args {
		ps = append(ps, a.name+" "+a.typ)
	}
	for _, a := range results {
		rs = append(rs, a.name+" "+a.typ)
	}
	sig := "(" + strings.Join(ps, ", ") + ")"
	switch len(rs) {
	case 0:
	case 1:
		sig += " " + strings.TrimPrefix(rs[0], results[0].name+" ")
	default:
		sig += " (" + strings.Join(rs, ", ") + ")"
	}
	if len(results) == 1 {
		results[0].name = "ret"
	}
	fmt.Fprintf(&g.stubs, "// %s\n//\n//go:noescape\nfunc %s%s\n\n", doc, name, sig)
	fmt.Fprintf(&g.s, "\n// func %s%s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, sig, name, fsize)
	m := map[string]arg{}
	for _, a := range append(args, results...) {
		m[a.name] = a
	}
	return m
}

// ctxOf is a kctx of the constants names, each whole in its register of
// regs.
func ctxOf(names []string, regs []int) *kctx {
	c := &kctx{c: map[string]cref{}}
	for i, n := range names {
		c.c[n] = cref{regs[i], -1}
	}
	return c
}

// fp is the frame operand of argument a.
func fp(a arg) string { return fmt.Sprintf("%s+%d(FP)", a.name, a.off) }

// ---- constants ----

// neonConsts are the constants the kernels load from neonC (declared in
// stubs_arm64.go, from math32.go's constants and coeffs.go's
// coefficients, so that the assembly computes with the Go kernels'
// numbers), each with its Go expression.
var neonConsts = [][2]string{
	{"one", "1"},
	{"negInf", "float32(math.Inf(-1))"},
	// exp32
	{"expLo", "expLo"},
	{"expHi", "expHi"},
	{"log2e", "log2e"},
	{"ln2Hi", "ln2Hi"},
	{"ln2Lo", "ln2Lo"},
	{"expQ0", "expQ[0]"},
	{"expQ1", "expQ[1]"},
	{"expQ2", "expQ[2]"},
	{"expQ3", "expQ[3]"},
	{"expQ4", "expQ[4]"},
	// expSum32
	{"expSumLo", "expSumLo"},
	{"exp2P0", "exp2P[0]"},
	{"exp2P1", "exp2P[1]"},
	{"exp2P2", "exp2P[2]"},
	{"exp2P3", "exp2P[3]"},
	{"exp2P4", "exp2P[4]"},
	// roundEven's 1.5·2²³, which Go on arm64 adds to a product in one
	// fused multiply-add (exp32, phiTail)
	{"magic23", "0x1.8p23"},
	// log32
	{"tiny", "0x1p-126"},
	{"twoP23", "0x1p23"},
	{"k23", "23"},
	{"sqrtHalfBits", "math.Float32frombits(0x3f3504f3)"},
	{"logL0", "logL[0]"},
	{"logL1", "logL[1]"},
	{"logL2", "logL[2]"},
	{"logL3", "logL[3]"},
	{"logL4", "logL[4]"},
	{"logL5", "logL[5]"},
	{"logL6", "logL[6]"},
	{"logL7", "logL[7]"},
	{"negHalf", "-0.5"},
	{"nan", "float32(math.NaN())"},
	{"posInf", "float32(math.Inf(1))"},
	// tanhParts
	{"tanhSmall", "tanhSmall"},
	{"two", "2"},
	{"signBit", "math.Float32frombits(1 << 31)"},
	{"tanhP0", "tanhP[0]"},
	{"tanhP1", "tanhP[1]"},
	{"tanhP2", "tanhP[2]"},
	{"tanhP3", "tanhP[3]"},
	{"tanhP4", "tanhP[4]"},
	{"tanhP5", "tanhP[5]"},
	// phiTail, gelu32, geluGrad32
	{"geluMaxA", "geluMaxA"},
	{"negHalfLog2e", "-0.5 * log2e"},
	{"twoLn2Hi", "2 * ln2Hi"},
	{"twoLn2Lo", "2 * ln2Lo"},
	{"gaussQ0", "gaussQ[0]"},
	{"gaussQ1", "gaussQ[1]"},
	{"gaussQ2", "gaussQ[2]"},
	{"gaussQ3", "gaussQ[3]"},
	{"gaussQ4", "gaussQ[4]"},
	{"gaussQ5", "gaussQ[5]"},
	{"invSqrt2Pi", "invSqrt2Pi"},
	// the byte indices of TBL for a table of sixteen float32: 4j + 0..3
	// in the four bytes of a lane holding j (int32 lanes)
	{"mask15", "math.Float32frombits(15)"},
	{"byteOffsets", "math.Float32frombits(0x03020100)"},
	{"byteStep", "math.Float32frombits(0x04040404)"},
	// geluTanhExp, geluTanh32, geluTanhGrad32
	{"gtA1Hi", "gtA1Hi"},
	{"gtA1Lo", "gtA1Lo"},
	{"gtA3Hi", "gtA3Hi"},
	{"gtA3Lo", "gtA3Lo"},
	{"gtMagic", "gtMagic"},
	{"gtXMax", "gtXMax"},
	{"negXMax", "-gtXMax"},
	{"gtExp2P0", "gtExp2P[0]"},
	{"gtExp2P1", "gtExp2P[1]"},
	{"gtExp2P2", "gtExp2P[2]"},
	{"nMin", "math.Float32frombits(0xffffff82)"}, // −126 in an int32 lane
	{"nMax", "math.Float32frombits(127)"},        // 127 in an int32 lane
	{"gtC1", "gtC1"},
	{"gt3C3", "3 * gtC3"},
}

func constIndex(name string) int {
	for i, c := range neonConsts {
		if c[0] == name {
			return i
		}
	}
	panic("no constant " + name)
}

// loadConsts loads the named constants of neonC into every lane of
// V(top), V(top−1), ... and returns their registers. It uses R11.
func (g *gen) loadConsts(top int, names ...string) []int {
	if len(names) == 0 {
		return nil
	}
	g.I("MOVD $·neonC(SB), R11")
	var r []int
	for i, name := range names {
		v := top - i
		g.I("FMOVS %d(R11), F%d // %s", 4*constIndex(name), v, name)
		g.I("VDUP V%d.S[0], %s", v, V(v, "S4"))
		r = append(r, v)
	}
	return r
}

// expConsts are the constants exp needs: those it takes whole, then
// those it may take from lanes (expLanes).
var (
	expConsts = append([]string{"one", "expLo", "expHi", "magic23"}, expLanes...)
	expLanes  = []string{"log2e", "ln2Hi", "ln2Lo", "expQ0", "expQ1", "expQ2", "expQ3", "expQ4"}
)

// mov copies register s to d.
func (g *gen) mov(d, s int) { g.I("VORR %s, %s, %s", V(s, "B16"), V(s, "B16"), V(d, "B16")) }

// horner sets the polynomial Σ c[k]·x^k (c the registers of the
// coefficients, degree 0 first) into one of t0, t1, evaluated as Go's
// p = p·x + c[k], each step fused, and returns the register. FMLA adds
// into its destination, so each step copies its coefficient there
// first.
func (g *gen) horner(x int, c []int, t0, t1 int) int {
	cs := make([]cref, len(c))
	for i, r := range c {
		cs[i] = cref{r, -1}
	}
	return g.hornerc(x, cs, t0, t1)
}

// ---- element-wise kernels ----

// mapK is an element-wise kernel dst[i] = f(ins[i]..., scalars). The
// assembly function takes dst, the inputs and updates (pointers), the
// float32 scalars and n.
type mapK struct {
	name, doc string
	ins       []string
	// updates are inputs that the body also changes in place and that
	// are stored back (float32 accumulators).
	updates []string
	scalars []string
	// consts are constants of neonC (by name) that body finds after the
	// scalars in s.
	consts []string
	temps  int
	// unroll is the number of vectors per iteration of the main loop:
	// 4 where it is 0.
	unroll int
	// body computes one vector: in holds the registers of the inputs
	// then the updates, s the scalars (in every lane), t temporaries. It
	// returns the register holding dst's vector.
	body func(g *gen, in, s, t []int) int

	// The transcendental kernels take these instead of body.
	//
	// lanes are constants of neonC packed four to a register, which
	// vbody finds in kctx.c with consts (whole registers): a constant
	// that is only multiplied by (FMUL, FMLA, FMLS by element) or copied
	// (DUP) costs a quarter of a register.
	lanes []string
	// tables are Go arrays of sixteen float32, each kept in four
	// consecutive registers for TBL.
	tables []string
	// shared is a number of consecutive temporaries for all the
	// unrolled vectors at once (a row of a table loaded in the loop).
	shared int
	// setup runs before the loops; R12 to R15 and R19 to R21 are the
	// kernel's.
	setup func(g *gen)
	// vbody computes the vectors of one iteration together, so that
	// what they share (a row loaded from memory) is done once: in[u]
	// and t[u] are vector u's inputs and temporaries. It returns the
	// register of each vector's result.
	vbody func(g *gen, c *kctx, in, t [][]int) []int
}

// cref is where a constant is: lane 0 to 3 of register r, or the whole
// register where lane is −1.
type cref struct{ r, lane int }

// kctx holds what a vbody finds besides its vectors: the scalars, the
// constants by name, the first register of each table and the shared
// temporaries.
type kctx struct {
	s   []int
	c   map[string]cref
	tab map[string]int
	sh  []int
}

// full returns the register of a constant kept whole, for the
// instructions that take no element (additions, comparisons, selections).
func (c *kctx) full(name string) int {
	r, ok := c.c[name]
	if !ok || r.lane >= 0 {
		panic("no whole-register constant " + name)
	}
	return r.r
}

// each makes a vbody of a body that computes one vector.
func each(f func(g *gen, c *kctx, in, t []int) int) func(g *gen, c *kctx, in, t [][]int) []int {
	return func(g *gen, c *kctx, in, t [][]int) []int {
		var out []int
		for u := range in {
			out = append(out, f(g, c, in[u], t[u]))
		}
		return out
	}
}

// at returns a constant's place, whole or in a lane.
func (c *kctx) at(name string) cref {
	r, ok := c.c[name]
	if !ok {
		panic("no constant " + name)
	}
	return r
}

func (g *gen) mapKernel(k mapK) {
	unroll := k.unroll
	if unroll == 0 {
		unroll = 4
	}
	shift := map[int]int{1: 2, 2: 3, 4: 4}[unroll] // log2 of the elements per iteration
	streams := append(append([]string{}, k.ins...), k.updates...)
	args := []arg{{name: "dst", typ: "*float32"}}
	for _, s := range streams {
		args = append(args, arg{name: s, typ: "*float32"})
	}
	for _, s := range k.scalars {
		args = append(args, arg{name: s, typ: "float32"})
	}
	args = append(args, arg{name: "n", typ: "int"})
	a := g.fn(k.name, k.doc, args, nil)

	// Registers: stream j in V(u·j)..V(u·j+u−1) (one per unrolled
	// vector, u = unroll), temporary j after them, then the tables and
	// the shared temporaries; scalars, constants and the registers of
	// packed constants from V31 down. Pointers: dst in R0, stream j in
	// R(1+j), the store pointers of the updates after.
	nS, nT := len(streams), k.temps
	nLanes := (len(k.lanes) + 3) / 4
	base := unroll * (nS + nT)
	if base+4*len(k.tables)+k.shared+len(k.scalars)+len(k.consts)+nLanes > 32 {
		panic(k.name + ": out of vector registers")
	}
	in := func(u int) []int {
		var r []int
		for j := range nS {
			r = append(r, unroll*j+u)
		}
		return r
	}
	tmp := func(u int) []int {
		var r []int
		for j := range nT {
			r = append(r, unroll*(nS+j)+u)
		}
		return r
	}
	var sc []int
	for i := range k.scalars {
		sc = append(sc, 31-i)
	}
	store := func(j int) int { return 1 + nS + j - len(k.ins) } // update j's store pointer
	g.I("MOVD %s, R0", fp(a["dst"]))
	for j, s := range streams {
		g.I("MOVD %s, R%d", fp(a[s]), 1+j)
	}
	for j := len(k.ins); j < nS; j++ {
		g.I("MOVD R%d, R%d", 1+j, store(j))
	}
	for i, s := range k.scalars {
		g.I("FMOVS %s, F%d", fp(a[s]), sc[i])
		g.I("VDUP V%d.S[0], %s", sc[i], V(sc[i], "S4"))
	}
	full := g.loadConsts(31-len(k.scalars), k.consts...)
	sc = append(sc, full...)
	c := &kctx{s: sc[:len(k.scalars)], c: map[string]cref{}, tab: map[string]int{}}
	for i, name := range k.consts {
		c.c[name] = cref{full[i], -1}
	}
	top := 31 - len(k.scalars) - len(k.consts)
	for i, name := range k.lanes {
		r := cref{top - i/4, i % 4}
		if i == 0 && len(k.consts) == 0 {
			g.I("MOVD $·neonC(SB), R11")
		}
		g.I("MOVWU %d(R11), R12 // %s", 4*constIndex(name), name)
		g.I("VMOV R12, V%d.S[%d]", r.r, r.lane)
		c.c[name] = r
	}
	for i, name := range k.tables {
		r := base + 4*i
		g.I("MOVD $·%s(SB), R12", name)
		g.I("VLD1 (R12), %s", list(r, 4, "S4"))
		c.tab[name] = r
	}
	for i := range k.shared {
		c.sh = append(c.sh, base+4*len(k.tables)+i)
	}
	if k.setup != nil {
		k.setup(g)
	}
	// vectors computes vectors 0..m−1 and returns their results'
	// registers, which must follow one another.
	vectors := func(m int) int {
		var outs []int
		if k.vbody != nil {
			ins, ts := make([][]int, m), make([][]int, m)
			for u := range m {
				ins[u], ts[u] = in(u), tmp(u)
			}
			outs = k.vbody(g, c, ins, ts)
		} else {
			for u := range m {
				outs = append(outs, k.body(g, in(u), sc, tmp(u)))
			}
		}
		for u, o := range outs {
			if o != outs[0]+u {
				panic(k.name + ": results not in consecutive registers")
			}
		}
		return outs[0]
	}
	g.I("MOVD %s, R9", fp(a["n"]))
	l := k.name
	g.I("LSR $%d, R9, R10", shift)
	g.I("CBZ R10, %s_4", l)

	g.label(l + "_16")
	for j := range nS {
		g.I("VLD1.P %d(R%d), %s", 16*unroll, 1+j, list(unroll*j, unroll, "S4"))
	}
	out := vectors(unroll)
	g.I("VST1.P %s, %d(R0)", list(out, unroll, "S4"), 16*unroll)
	for j := len(k.ins); j < nS; j++ {
		g.I("VST1.P %s, %d(R%d)", list(unroll*j, unroll, "S4"), 16*unroll, store(j))
	}
	g.I("SUBS $1, R10, R10")
	g.I("BNE %s_16", l)

	g.label(l + "_4")
	g.I("AND $%d, R9, R9", 1<<shift-1)
	if unroll > 1 {
		g.I("LSR $2, R9, R10")
		g.I("CBZ R10, %s_1", l)
		g.label(l + "_4loop")
		for j := range nS {
			g.I("VLD1.P 16(R%d), [%s]", 1+j, V(unroll*j, "S4"))
		}
		out = vectors(1)
		g.I("VST1.P [%s], 16(R0)", V(out, "S4"))
		for j := len(k.ins); j < nS; j++ {
			g.I("VST1.P [%s], 16(R%d)", V(unroll*j, "S4"), store(j))
		}
		g.I("SUBS $1, R10, R10")
		g.I("BNE %s_4loop", l)
	}

	// The last n%4 elements, one at a time in lane 0.
	g.label(l + "_1")
	g.I("ANDS $3, R9, R9")
	g.I("BEQ %s_done", l)
	g.label(l + "_1loop")
	for j := range nS {
		g.I("FMOVS.P 4(R%d), F%d", 1+j, unroll*j)
	}
	out = vectors(1)
	g.I("FMOVS.P F%d, 4(R0)", out)
	for j := len(k.ins); j < nS; j++ {
		g.I("FMOVS.P F%d, 4(R%d)", unroll*j, store(j))
	}
	g.I("SUBS $1, R9, R9")
	g.I("BNE %s_1loop", l)
	g.label(l + "_done")
	g.I("RET")
}

// fill is Fill: the value in V0-V3, stored sixteen, four and one at a
// time.
func (g *gen) fill() {
	a := g.fn("neonFill", "neonFill sets dst[0:n] to v.", []arg{{name: "dst", typ: "*float32"}, {name: "v", typ: "float32"}, {name: "n", typ: "int"}}, nil)
	g.I("MOVD %s, R0", fp(a["dst"]))
	g.I("FMOVS %s, F0", fp(a["v"]))
	for r := range 4 {
		g.I("VDUP V0.S[0], %s", V(r, "S4"))
	}
	g.I("MOVD %s, R9", fp(a["n"]))
	g.I("LSR $4, R9, R10")
	g.I("CBZ R10, fill_4")
	g.label("fill_16")
	g.I("VST1.P %s, 64(R0)", list(0, 4, "S4"))
	g.I("SUBS $1, R10, R10")
	g.I("BNE fill_16")
	g.label("fill_4")
	g.I("AND $15, R9, R9")
	g.I("LSR $2, R9, R10")
	g.I("CBZ R10, fill_1")
	g.label("fill_4loop")
	g.I("VST1.P [V0.S4], 16(R0)")
	g.I("SUBS $1, R10, R10")
	g.I("BNE fill_4loop")
	g.label("fill_1")
	g.I("ANDS $3, R9, R9")
	g.I("BEQ fill_done")
	g.label("fill_1loop")
	g.I("FMOVS.P F0, 4(R0)")
	g.I("SUBS $1, R9, R9")
	g.I("BNE fill_1loop")
	g.label("fill_done")
	g.I("RET")
}

// bin is dst = a op b.
func bin(op string) func(g *gen, in, s, t []int) int {
	return func(g *gen, in, s, t []int) int { g.W(op, in[0], in[0], in[1]); return in[0] }
}

// scal is dst = a op s.
func scal(op string) func(g *gen, in, s, t []int) int {
	return func(g *gen, in, s, t []int) int { g.W(op, in[0], in[0], s[0]); return in[0] }
}

// fmla is d += n·m, rounded once.
func (g *gen) fmla(d, n, m int) { g.I("VFMLA %s, %s, %s", V(m, "S4"), V(n, "S4"), V(d, "S4")) }

// fmls is d −= n·m, rounded once.
func (g *gen) fmls(d, n, m int) { g.I("VFMLS %s, %s, %s", V(m, "S4"), V(n, "S4"), V(d, "S4")) }

var maps = []mapK{
	{name: "neonAdd", doc: "neonAdd sets dst = a + b over n elements.", ins: []string{"a", "b"}, body: bin("fadd4s")},
	{name: "neonSub", doc: "neonSub sets dst = a − b over n elements.", ins: []string{"a", "b"}, body: bin("fsub4s")},
	{name: "neonMul", doc: "neonMul sets dst = a·b over n elements.", ins: []string{"a", "b"}, body: bin("fmul4s")},
	{name: "neonDiv", doc: "neonDiv sets dst = a/b over n elements.", ins: []string{"a", "b"}, body: bin("fdiv4s")},
	{name: "neonAddScalar", doc: "neonAddScalar sets dst = a + s over n elements.", ins: []string{"a"}, scalars: []string{"s"}, body: scal("fadd4s")},
	{name: "neonSubScalar", doc: "neonSubScalar sets dst = a − s over n elements.", ins: []string{"a"}, scalars: []string{"s"}, body: scal("fsub4s")},
	{name: "neonMulScalar", doc: "neonMulScalar sets dst = a·s over n elements.", ins: []string{"a"}, scalars: []string{"s"}, body: scal("fmul4s")},
	{name: "neonDivScalar", doc: "neonDivScalar sets dst = a/s over n elements (divided, as a/s rounds).", ins: []string{"a"}, scalars: []string{"s"}, body: scal("fdiv4s")},
	// y + alpha·x rounded once, as the Go kernel's y[i] += alpha*x[i]
	// is on arm64, where the compiler fuses it (dst is y).
	{name: "neonAxpy", doc: "neonAxpy sets dst = y + alpha·x (rounded once) over n elements.",
		ins: []string{"y", "x"}, scalars: []string{"alpha"},
		body: func(g *gen, in, s, t []int) int { g.fmla(in[0], in[1], s[0]); return in[0] }},

	{name: "neonSqrt", doc: "neonSqrt sets dst = √x over n elements.", ins: []string{"x"},
		body: func(g *gen, in, s, t []int) int { g.W("fsqrt4s", in[0], in[0]); return in[0] }},
	// 1/√x: the square root, then 1 divided by it, as Go's 1 / sqrt32(x).
	{name: "neonRsqrt", doc: "neonRsqrt sets dst = 1/√x (the root rounded, then the quotient) over n elements.",
		ins: []string{"x"}, scalars: []string{"one"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			g.W("fsqrt4s", in[0], in[0])
			g.W("fdiv4s", t[0], s[0], in[0])
			return t[0]
		}},
	{name: "neonNeg", doc: "neonNeg sets dst = −x over n elements.", ins: []string{"x"},
		body: func(g *gen, in, s, t []int) int { g.W("fneg4s", in[0], in[0]); return in[0] }},
	{name: "neonSquare", doc: "neonSquare sets dst = x·x over n elements.", ins: []string{"x"},
		body: func(g *gen, in, s, t []int) int { g.W("fmul4s", in[0], in[0], in[0]); return in[0] }},
	// x where !(x ≤ 0), so NaN passes, and +0 elsewhere.
	{name: "neonReLU", doc: "neonReLU sets dst = x where x > 0 or x is NaN, else 0, over n elements.",
		ins: []string{"x"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			g.W("fcmle0", t[0], in[0])
			g.W("bic", in[0], in[0], t[0])
			return in[0]
		}},
	// Derivatives: in[0] is x, in[1] is dy; the operations of the Go
	// kernels (vec.go), in their order.
	{name: "neonReLUGrad", doc: "neonReLUGrad sets dx = dy where x > 0, else 0, over n elements.",
		ins: []string{"x", "dy"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fcmgt0", in[0], in[0])
			g.I("VAND %s, %s, %s", V(in[0], "B16"), V(in[1], "B16"), V(in[1], "B16"))
			return in[1]
		}},
	{name: "neonNegGrad", doc: "neonNegGrad sets dx = −dy over n elements.", ins: []string{"x", "dy"},
		body: func(g *gen, in, s, t []int) int { g.W("fneg4s", in[1], in[1]); return in[1] }},
	{name: "neonSquareGrad", doc: "neonSquareGrad sets dx = (x + x)·dy over n elements.", ins: []string{"x", "dy"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fadd4s", in[0], in[0], in[0])
			g.W("fmul4s", in[0], in[0], in[1])
			return in[0]
		}},
	{name: "neonLogGrad", doc: "neonLogGrad sets dx = dy/x over n elements.", ins: []string{"x", "dy"},
		body: func(g *gen, in, s, t []int) int { g.W("fdiv4s", in[1], in[1], in[0]); return in[1] }},
	// dy·0.5/√x.
	{name: "neonSqrtGrad", doc: "neonSqrtGrad sets dx = (dy·0.5)/√x over n elements.", ins: []string{"x", "dy"},
		scalars: []string{"half"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fsqrt4s", in[0], in[0])
			g.W("fmul4s", in[1], in[1], s[0])
			g.W("fdiv4s", in[1], in[1], in[0])
			return in[1]
		}},
	// dy·−0.5·(1/√x)/x.
	{name: "neonRsqrtGrad", doc: "neonRsqrtGrad sets dx = ((dy·−0.5)·(1/√x))/x over n elements.", ins: []string{"x", "dy"},
		scalars: []string{"negHalf", "one"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			g.W("fsqrt4s", t[0], in[0])
			g.W("fdiv4s", t[0], s[1], t[0])
			g.W("fmul4s", in[1], in[1], s[0])
			g.W("fmul4s", in[1], in[1], t[0])
			g.W("fdiv4s", in[1], in[1], in[0])
			return in[1]
		}},

	// The exponentials, as exp32 computes them.
	{name: "neonExp", doc: "neonExp sets dst = e^x over n elements, as exp32.", ins: []string{"x"},
		consts: expConsts, temps: 3,
		vbody: each(func(g *gen, c *kctx, in, t []int) int { g.exp(in[0], t, c); return in[0] })},
	{name: "neonExpGrad", doc: "neonExpGrad sets dx = dy·e^x over n elements.", ins: []string{"x", "dy"},
		consts: expConsts, temps: 3,
		vbody: each(func(g *gen, c *kctx, in, t []int) int {
			g.exp(in[0], t, c)
			g.W("fmul4s", in[1], in[1], in[0])
			return in[1]
		})},
	// 1/(1 + e^−x) and x/(1 + e^−x), as sigmoid32 and silu32.
	{name: "neonSigmoid", doc: "neonSigmoid sets dst = 1/(1 + e^−x) over n elements, as sigmoid32.", ins: []string{"x"},
		consts: expConsts, temps: 4,
		vbody: each(func(g *gen, c *kctx, in, t []int) int {
			one := c.full("one")
			g.W("fneg4s", t[3], in[0])
			g.exp(t[3], t, c)
			g.W("fadd4s", t[3], t[3], one)
			g.W("fdiv4s", t[0], one, t[3])
			return t[0]
		})},
	{name: "neonSiLU", doc: "neonSiLU sets dst = x/(1 + e^−x) over n elements, as silu32.", ins: []string{"x"},
		consts: expConsts, temps: 4,
		vbody: each(func(g *gen, c *kctx, in, t []int) int {
			g.W("fneg4s", t[3], in[0])
			g.exp(t[3], t, c)
			g.W("fadd4s", t[3], t[3], c.full("one"))
			g.W("fdiv4s", in[0], in[0], t[3])
			return in[0]
		})},

	// Derivatives of σ and SiLU from sigmoidParts: e = e^−|x|, r =
	// 1/(1 + e), s0 = e·r, σ = x ≥ 0 ? r : s0, σ(1 − σ) = r·s0; dy·r·s0
	// and dy·(x·r·s0 + σ) (that multiply-add fused, as Go fuses it).
	{name: "neonSigmoidGrad", doc: "neonSigmoidGrad sets dx = dy·σ(x)(1 − σ(x)) over n elements, as sigmoidParts.",
		ins: []string{"x", "dy"}, consts: expConsts, temps: 4, unroll: 2,
		vbody: each(func(g *gen, c *kctx, in, t []int) int {
			sigmoidParts(g, c, in[0], t)
			g.W("fmul4s", in[1], in[1], t[2])
			return in[1]
		})},
	{name: "neonSiLUGrad", doc: "neonSiLUGrad sets dx = dy·(x·σ(x)(1 − σ(x)) + σ(x)) over n elements, as siluGrad32.",
		ins: []string{"x", "dy"}, consts: expConsts, temps: 4, unroll: 2,
		vbody: each(func(g *gen, c *kctx, in, t []int) int {
			sigmoidParts(g, c, in[0], t)
			g.fmla(t[3], in[0], t[2])
			g.W("fmul4s", in[1], in[1], t[3])
			return in[1]
		})},

	// The row steps, as generic.go writes them.
	{name: "neonScaleMul", doc: "neonScaleMul sets dst = (x·s)·w over n elements.", ins: []string{"x", "w"}, scalars: []string{"s"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fmul4s", in[0], in[0], s[0])
			g.W("fmul4s", in[0], in[0], in[1])
			return in[0]
		}},
	{name: "neonNormalize", doc: "neonNormalize sets dst = (((x − mh) − ml)·r)·gamma over n elements.",
		ins: []string{"x", "gamma"}, scalars: []string{"mh", "ml", "r"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fsub4s", in[0], in[0], s[0])
			g.W("fsub4s", in[0], in[0], s[1])
			g.W("fmul4s", in[0], in[0], s[2])
			g.W("fmul4s", in[0], in[0], in[1])
			return in[0]
		}},
	// ·g + b fused, as Go fuses it on arm64.
	{name: "neonNormalizeShift", doc: "neonNormalizeShift sets dst = (((x − mh) − ml)·r)·gamma + beta, the last two rounded once, over n elements.",
		ins: []string{"x", "gamma", "beta"}, scalars: []string{"mh", "ml", "r"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fsub4s", in[0], in[0], s[0])
			g.W("fsub4s", in[0], in[0], s[1])
			g.W("fmul4s", in[0], in[0], s[2])
			g.fmla(in[2], in[0], in[1])
			return in[2]
		}},
	{name: "neonSoftmaxGrad", doc: "neonSoftmaxGrad sets dx = (y·s)·((dy − dh) − dl) over n elements.",
		ins: []string{"y", "dy"}, scalars: []string{"s", "dh", "dl"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fsub4s", in[1], in[1], s[1])
			g.W("fsub4s", in[1], in[1], s[2])
			g.W("fmul4s", in[0], in[0], s[0])
			g.W("fmul4s", in[0], in[0], in[1])
			return in[0]
		}},
	// (rs·w)·dy − x·c, the last product fused into the subtraction, as
	// Go fuses it on arm64.
	{name: "neonRMSNormGrad", doc: "neonRMSNormGrad sets dx = (rs·w)·dy − x·c, the last product and difference rounded once, over n elements.",
		ins: []string{"x", "w", "dy"}, scalars: []string{"rs", "c"},
		body: func(g *gen, in, s, t []int) int {
			g.W("fmul4s", in[1], s[0], in[1])
			g.W("fmul4s", in[1], in[1], in[2])
			g.fmls(in[1], in[0], s[1])
			return in[1]
		}},
	// And acc += (x·rs)·dy, rounded once (fused in Go too).
	{name: "neonRMSNormGradAcc", doc: "neonRMSNormGradAcc is neonRMSNormGrad that also sets acc += (x·rs)·dy, rounded once.",
		ins: []string{"x", "w", "dy"}, updates: []string{"acc"}, scalars: []string{"rs", "c"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			g.W("fmul4s", t[0], in[0], s[0])
			g.fmla(in[3], t[0], in[2])
			g.W("fmul4s", in[1], s[0], in[1])
			g.W("fmul4s", in[1], in[1], in[2])
			g.fmls(in[1], in[0], s[1])
			return in[1]
		}},
	// (dy·w − mg − x̂·mgx)·r for x̂ = ((x − mh) − ml)·r, each product
	// rounded (Go's conversions keep them apart).
	{name: "neonLayerNormGrad", doc: "neonLayerNormGrad sets dx = ((dy·w − mg) − x̂·mgx)·r for x̂ = ((x − mh) − ml)·r over n elements.",
		ins: []string{"x", "w", "dy"}, scalars: []string{"mh", "ml", "r", "mg", "mgx"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			layerNormGrad(g, in, s, t)
			return in[1]
		}},
	// And accG += x̂·dy (rounded once, as Go fuses it), accB += dy.
	{name: "neonLayerNormGradAcc", doc: "neonLayerNormGradAcc is neonLayerNormGrad that also sets accG += x̂·dy (rounded once) and accB += dy.",
		ins: []string{"x", "w", "dy"}, updates: []string{"accG", "accB"}, scalars: []string{"mh", "ml", "r", "mg", "mgx"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			layerNormGrad(g, in, s, t)
			g.fmla(in[3], in[0], in[2])
			g.W("fadd4s", in[4], in[4], in[2])
			return in[1]
		}},
	// The same without accB (LayerNormGradAcc called with none).
	{name: "neonLayerNormGradAccG", doc: "neonLayerNormGradAccG is neonLayerNormGrad that also sets accG += x̂·dy (rounded once).",
		ins: []string{"x", "w", "dy"}, updates: []string{"accG"}, scalars: []string{"mh", "ml", "r", "mg", "mgx"}, temps: 1,
		body: func(g *gen, in, s, t []int) int {
			layerNormGrad(g, in, s, t)
			g.fmla(in[3], in[0], in[2])
			return in[1]
		}},
}

// sigmoidParts leaves σ(x)(1 − σ(x)) in t[2] and σ(x) in t[3] as
// sigmoidParts (math32.go) computes them, using t[0..3].
func sigmoidParts(g *gen, c *kctx, x int, t []int) {
	one := c.full("one")
	e := t[3]
	g.W("fabs4s", e, x)
	g.W("fneg4s", e, e)
	g.exp(e, t, c)
	g.W("fadd4s", t[0], e, one)
	g.W("fdiv4s", t[0], one, t[0])                                         // r
	g.W("fmul4s", t[1], e, t[0])                                           // s0
	g.W("fmul4s", t[2], t[0], t[1])                                        // r·s0
	g.W("fcmge0", t[3], x)                                                 // x ≥ 0
	g.I("VBSL %s, %s, %s", V(t[1], "B16"), V(t[0], "B16"), V(t[3], "B16")) // r there, s0 elsewhere
}

// layerNormGrad leaves x̂ in in[0] and dx in in[1], dy in in[2] as it
// was, using t[0].
func layerNormGrad(g *gen, in, s, t []int) {
	x, w, dy := in[0], in[1], in[2]
	g.W("fsub4s", x, x, s[0])
	g.W("fsub4s", x, x, s[1])
	g.W("fmul4s", x, x, s[2]) // x̂
	g.W("fmul4s", w, dy, w)
	g.W("fsub4s", w, w, s[3])
	g.W("fmul4s", t[0], x, s[4])
	g.W("fsub4s", w, w, t[0])
	g.W("fmul4s", w, w, s[2])
}

// ---- transcendental functions ----

// The scalar and bitwise operations of the kernels below, in the
// operand order of the GNU syntax: d = n op m.

func (g *gen) iadd(d, n, m int) { g.I("VADD %s, %s, %s", V(m, "S4"), V(n, "S4"), V(d, "S4")) }
func (g *gen) isub(d, n, m int) { g.I("VSUB %s, %s, %s", V(m, "S4"), V(n, "S4"), V(d, "S4")) }
func (g *gen) and(d, n, m int)  { g.I("VAND %s, %s, %s", V(m, "B16"), V(n, "B16"), V(d, "B16")) }

// bsl sets d = n where the mask d is set, m elsewhere.
func (g *gen) bsl(d, n, m int) { g.I("VBSL %s, %s, %s", V(m, "B16"), V(n, "B16"), V(d, "B16")) }

// bit sets d = n where the mask m is set; bif where it is not.
func (g *gen) bit(d, n, m int) { g.I("VBIT %s, %s, %s", V(m, "B16"), V(n, "B16"), V(d, "B16")) }
func (g *gen) bif(d, n, m int) { g.I("VBIF %s, %s, %s", V(m, "B16"), V(n, "B16"), V(d, "B16")) }

// dupc sets every lane of d to the constant c.
func (g *gen) dupc(d int, c cref) {
	if c.lane < 0 {
		g.mov(d, c.r)
		return
	}
	g.I("VDUP V%d.S[%d], %s", c.r, c.lane, V(d, "S4"))
}

// byElem emits op (fmul, fmla, fmls or mla) of d, n and the constant c,
// by element where c is in a lane.
func (g *gen) byElem(op string, d, n int, c cref) {
	if c.lane >= 0 {
		g.W(fmt.Sprintf("%s%d", op, c.lane), d, n, c.r)
		return
	}
	switch op {
	case "fmul":
		g.W("fmul4s", d, n, c.r)
	case "fmla":
		g.fmla(d, n, c.r)
	case "fmls":
		g.fmls(d, n, c.r)
	default:
		g.W(op+"0", d, n, c.r) // any lane of a whole register
	}
}

func (g *gen) fmulc(d, n int, c cref) { g.byElem("fmul", d, n, c) }
func (g *gen) fmlac(d, n int, c cref) { g.byElem("fmla", d, n, c) }
func (g *gen) fmlsc(d, n int, c cref) { g.byElem("fmls", d, n, c) }

// crefs returns the places of the named constants.
func (c *kctx) crefs(names ...string) []cref {
	var r []cref
	for _, n := range names {
		r = append(r, c.at(n))
	}
	return r
}

// hornerc is horner with constants in lanes as well as whole registers
// (see cref).
func (g *gen) hornerc(x int, cs []cref, t0, t1 int) int {
	p, q := t0, t1
	g.dupc(p, cs[len(cs)-1])
	for k := len(cs) - 2; k >= 0; k-- {
		g.dupc(q, cs[k])
		g.fmla(q, p, x)
		p, q = q, p
	}
	return p
}

// tbl sets d to the float32 entries of the sixteen-entry table in
// registers tab..tab+3 that the byte indices in idx pick.
func (g *gen) tbl(d, tab, idx int) {
	g.I("VTBL %s, %s, %s", V(idx, "B16"), list(tab, 4, "B16"), V(d, "B16"))
}

// tableIndex sets d to TBL's byte indices for the entries j (0 to 15,
// int32 lanes): 4j, 4j+1, 4j+2, 4j+3 in the bytes of each lane.
func (g *gen) tableIndex(d, j int, c *kctx) {
	g.dupc(d, c.at("byteOffsets"))
	g.byElem("mla", d, j, c.at("byteStep"))
}

// exp sets x = e^x as exp32 computes it on arm64, using t[0..2] and
// the constants expConsts by name (whole or in lanes): x clamped to
// [expLo, expHi] (FMAX and FMIN return a NaN x, which stays NaN), n =
// round(x·log2e) rounded from the exact product, x·log2e + 1.5·2²³ in
// one fused multiply-add minus 1.5·2²³, as Go fuses roundEven's sum
// there, r = x − n·ln2Hi − n·ln2Lo, each fused, the polynomial, and the
// scaling by 2^(n>>1) and 2^(n − n>>1), each made by shifting the integer
// into the exponent field and adding 1.0's bits (127<<23): the
// operations of exp32 in its order, so that the two agree bit for bit.
func (g *gen) exp(x int, t []int, c *kctx) {
	one, magic := c.full("one"), c.full("magic23")
	n := t[0]
	g.W("fmax4s", x, x, c.full("expLo"))
	g.W("fmin4s", x, x, c.full("expHi"))
	g.mov(n, magic)
	g.fmlac(n, x, c.at("log2e"))
	g.W("fsub4s", n, n, magic)
	g.fmlsc(x, n, c.at("ln2Hi")) // exact
	g.fmlsc(x, n, c.at("ln2Lo")) // r
	p := g.hornerc(x, c.crefs("expQ0", "expQ1", "expQ2", "expQ3", "expQ4"), t[1], t[2])
	r2 := t[1]
	if p == t[1] {
		r2 = t[2]
	}
	g.W("fmul4s", r2, x, x)
	g.fmla(x, r2, p) // r²·Q + r
	g.W("fadd4s", x, x, one)
	h := t[1]
	g.W("fcvtzs", n, n)
	g.W("sshr1", h, n)
	g.isub(n, n, h)
	for _, e := range []int{h, n} {
		g.I("VSHL $23, %s, %s", V(e, "S4"), V(e, "S4"))
		g.iadd(e, e, one)
		g.W("fmul4s", x, x, e)
	}
}

// tanhParts leaves tanh(x) (grad false) or 1 − tanh²(x) (grad true) in
// t[1] as tanhParts (math32.go) computes it, using t[0..6]: both
// branches, selected by |x| < tanhSmall (NaN takes the second).
func tanhParts(g *gen, c *kctx, x int, t []int, grad bool) int {
	one, two := c.full("one"), c.full("two")
	a, small, u := t[0], t[1], t[2]
	g.W("fabs4s", a, x)
	g.W("fcmgt", small, c.full("tanhSmall"), a)
	// The odd polynomial: t = (x·u)·p + x for u = x², and 1 − t².
	g.W("fmul4s", u, x, x)
	p := g.hornerc(u, c.crefs("tanhP0", "tanhP1", "tanhP2", "tanhP3", "tanhP4", "tanhP5"), t[3], t[4])
	g.W("fmul4s", t[5], x, u)
	t1 := t[6]
	g.mov(t1, x)
	g.fmla(t1, t[5], p)
	if grad {
		g.mov(u, one)
		g.fmls(u, t1, t1) // 1 − t², rounded once
	}
	// q = 2/(e^{2|x|} + 1); tanh|x| = 1 − q with x's sign, 1 − tanh² =
	// (2 − q)·q.
	g.W("fadd4s", a, a, a)
	g.exp(a, t[3:6], c)
	g.W("fadd4s", a, a, one)
	g.W("fdiv4s", a, two, a) // q
	if grad {
		g.W("fsub4s", t[4], two, a)
		g.W("fmul4s", t[4], t[4], a)
		g.bsl(small, u, t[4])
		return small
	}
	g.W("fsub4s", t[3], one, a)
	g.bit(t[3], x, c.full("signBit"))
	g.bsl(small, t1, t[3])
	return small
}

var (
	tanhConsts = []string{"tanhSmall", "two", "signBit", "one", "expLo", "expHi", "magic23"}
	tanhLanes  = append([]string{"tanhP0", "tanhP1", "tanhP2", "tanhP3", "tanhP4", "tanhP5"}, expLanes...)
)

// logBody sets a register to ln x as log32 (math32.go) computes it and
// returns it, using t[0..5]: subnormal x scaled by 2²³ (k = 23), x =
// 2^e·m for m in [√½, √2) from the bits, f = m − 1, the polynomial, then
// the special values: −Inf for ±0, NaN below 0 and for NaN (Go's NaN,
// float32(math.NaN())), +Inf for +Inf.
func logBody(g *gen, c *kctx, x int, t []int) int {
	sub, y, e := t[0], t[1], t[2]
	g.W("fcmgt", sub, c.full("tiny"), x) // x < 2⁻¹²⁶
	g.fmulc(y, x, c.at("twoP23"))
	g.bif(y, x, sub)               // x·2²³ where subnormal, else x
	g.and(sub, sub, c.full("k23")) // k: 23 or 0
	g.isub(e, y, c.full("sqrtHalfBits"))
	g.W("sshr23", e, e) // e, rounded to nearest
	g.I("VSHL $23, %s, %s", V(e, "S4"), V(t[3], "S4"))
	g.isub(y, y, t[3])
	g.W("fsub4s", y, y, c.full("one")) // f
	p := g.hornerc(y, c.crefs("logL0", "logL1", "logL2", "logL3", "logL4", "logL5", "logL6", "logL7"), t[3], t[4])
	f2 := t[3]
	if p == t[3] {
		f2 = t[4]
	}
	h := t[5]
	g.dupc(h, c.at("negHalf"))
	g.fmla(h, y, p) // p·f − 0.5, rounded once
	g.W("fmul4s", f2, y, y)
	g.fmla(y, f2, h) // f + f²·(p·f − 0.5)
	g.W("scvtf", e, e)
	g.W("fsub4s", e, e, sub) // e − k
	g.fmlac(y, e, c.at("ln2Lo"))
	g.fmlac(y, e, c.at("ln2Hi"))
	g.W("fcmeq0", sub, x)
	g.bit(y, c.full("negInf"), sub)
	g.W("fcmge0", sub, x)
	g.bif(y, c.full("nan"), sub)
	g.W("fcmeq", sub, x, c.full("posInf"))
	g.bit(y, x, sub)
	return y
}

var (
	logConsts = []string{"one", "tiny", "k23", "sqrtHalfBits", "negInf", "nan", "posInf"}
	logLanes  = []string{"twoP23", "logL0", "logL1", "logL2", "logL3", "logL4", "logL5", "logL6", "logL7", "negHalf", "ln2Lo", "ln2Hi"}
)

// phiRows are the general registers that point at the rows of phiT,
// 64 bytes apart.
var phiRows = []string{"R12", "R13", "R14", "R15", "R19", "R20", "R21"}

func phiSetup(g *gen) {
	g.I("MOVD $·phiT(SB), R12")
	for k := 1; k < len(phiRows); k++ {
		g.I("ADD $%d, R12, %s", 64*k, phiRows[k])
	}
}

// phiTail computes h = Φ(−|x|) and g = e^{−x²/2} for the vectors xs as
// phiTail (math32.go) does, each vector u with temporaries t[u][0..6]
// and the rows of phiT loaded once for all of them into c.sh: it
// returns, per vector, the registers of h, g and |x| (t[u][0]); t[u][1]
// holds the mask of the lanes where |x| > geluMaxA, where h and g are 0,
// and t[u][2], t[u][3] are free.
func phiTail(g *gen, c *kctx, xs []int, t [][]int) (h, gs, a []int) {
	one, magic := c.full("one"), c.full("magic23")
	ps := make([]int, len(xs))
	for u, x := range xs {
		t := t[u]
		g.W("fabs4s", t[0], x)
		g.W("fcmgt", t[1], t[0], c.full("geluMaxA"))
		// n = round(fl(a²)·(−½log2e)), the product not rounded first;
		// R = a² + 2n·ln2Hi rounded once (exact in Go's float64, one
		// fused multiply-add here), + 2n·ln2Lo.
		n, r := t[3], t[2]
		g.W("fmul4s", r, t[0], t[0])
		g.mov(n, magic)
		g.fmlac(n, r, c.at("negHalfLog2e"))
		g.W("fsub4s", n, n, magic)
		g.fmulc(r, n, c.at("twoLn2Hi"))
		g.fmla(r, t[0], t[0])
		g.fmlac(r, n, c.at("twoLn2Lo"))
		q := g.hornerc(r, c.crefs("gaussQ0", "gaussQ1", "gaussQ2", "gaussQ3", "gaussQ4", "gaussQ5"), t[4], t[5])
		g.mov(t[6], one)
		g.fmla(t[6], q, r)
		g.W("fcvtzs", n, n)
		g.I("VSHL $23, %s, %s", V(n, "S4"), V(n, "S4"))
		g.iadd(n, n, one)
		g.W("fmul4s", t[6], t[6], n) // g = (q·R + 1)·2ⁿ
		// The interval: i = (bits(a+1) >> 21) & 15, as TBL's bytes.
		g.W("fadd4s", r, t[0], one)
		g.I("VUSHR $21, %s, %s", V(r, "S4"), V(r, "S4"))
		g.and(r, r, c.full("mask15"))
		g.tableIndex(n, r, c)
	}
	row := func(k int) { g.I("VLD1 (%s), %s", phiRows[k], list(c.sh[0], 4, "S4")) }
	row(0)
	for u := range xs {
		g.tbl(t[u][4], c.sh[0], t[u][3])
		g.W("fsub4s", t[u][2], t[u][0], t[u][4]) // a − centre
	}
	row(6)
	for u := range xs {
		g.tbl(t[u][4], c.sh[0], t[u][3])
		ps[u] = t[u][4]
	}
	for k := 5; k >= 1; k-- {
		row(k)
		for u := range xs {
			q := t[u][4] + t[u][5] - ps[u] // the other one
			g.tbl(q, c.sh[0], t[u][3])
			g.fmla(q, ps[u], t[u][2])
			ps[u] = q
		}
	}
	for u := range xs {
		t := t[u]
		hu := t[4] + t[5] - ps[u]
		g.W("fmul4s", hu, t[6], ps[u])
		g.W("bic", hu, hu, t[1])
		g.W("bic", t[6], t[6], t[1])
		h, gs, a = append(h, hu), append(gs, t[6]), append(a, t[0])
	}
	return h, gs, a
}

var (
	geluConsts = []string{"one", "geluMaxA", "magic23", "mask15"}
	geluLanes  = []string{"negHalfLog2e", "twoLn2Hi", "twoLn2Lo", "gaussQ0", "gaussQ1", "gaussQ2", "gaussQ3", "gaussQ4", "gaussQ5",
		"byteOffsets", "byteStep", "invSqrt2Pi"}
)

// geluTanhExp sets e = 2^v = e^{−y} and s = fl(a²) as geluTanhExp
// (math32.go) computes them for a (|a| ≤ gtXMax), using t[0..6], and
// returns their registers (t[2], t[0]) with, where hi, that of the mask
// of 2^v ≥ 2¹²⁸ (n > 127: t[6]). Each fma32 is one fused multiply-add,
// rounded once where Go rounds its float64 sum a second time (they
// differ only where that sum lands on a float32 midpoint). g is carried
// negated, h = −g, which FMLS takes where Go's fused multiply-adds add
// g's products: the same roundings of the same values.
func geluTanhExp(g *gen, c *kctx, a int, t []int, hi bool) (e, s, mhi int) {
	a1, magic := c.full("gtA1Hi"), c.full("gtMagic")
	s, sl, qh, ql := t[0], t[1], t[2], t[3]
	g.W("fmul4s", s, a, a)
	g.W("fneg4s", sl, s)
	g.fmla(sl, a, a) // a² − s, exact
	g.mov(qh, a1)
	g.fmlac(qh, s, c.at("gtA3Hi"))
	g.W("fsub4s", ql, a1, qh) // −(Qh − gtA1Hi), exact
	g.fmlac(ql, s, c.at("gtA3Hi"))
	w := t[4]
	g.dupc(w, c.at("gtA1Lo"))
	g.fmlac(w, s, c.at("gtA3Lo"))
	g.fmlac(w, sl, c.at("gtA3Hi"))
	g.W("fadd4s", ql, ql, w) // Ql
	idx, h := t[1], t[4]
	g.mov(idx, magic)
	g.fmla(idx, a, qh) // a·Qh + gtMagic
	g.W("fsub4s", h, idx, magic)
	g.fmls(h, a, qh)
	g.fmls(h, a, ql) // h = −g
	m, j, bytes := t[1], t[2], t[3]
	g.isub(m, idx, magic) // m
	g.and(j, m, c.full("mask15"))
	g.tableIndex(bytes, j, c)
	g.W("sshr4", m, m) // n = ⌊m/16⌋
	tj, uj := t[2], t[5]
	g.tbl(tj, c.tab["gtExp2T"], bytes)
	g.tbl(uj, c.tab["gtExp2Tau"], bytes)
	p, p0 := t[3], t[6]
	g.dupc(p, c.at("gtExp2P1"))
	g.fmlsc(p, h, c.at("gtExp2P2"))
	g.dupc(p0, c.at("gtExp2P0"))
	g.fmls(p0, p, h)
	g.fmls(uj, h, p0) // u = τ_j + g·P(g)
	lo := t[3]
	g.W("cmgt", lo, c.full("nMin"), m) // n < −126
	if hi {
		g.W("cmgt", t[6], m, c.full("nMax")) // n > 127
	}
	g.I("VSHL $23, %s, %s", V(m, "S4"), V(m, "S4"))
	g.iadd(tj, tj, m) // T_j·2ⁿ
	g.fmla(tj, tj, uj)
	g.W("bic", tj, tj, lo) // 0 below 2⁻¹²⁶
	return tj, s, t[6]
}

var (
	geluTanhConsts = []string{"one", "gtA1Hi", "gtMagic", "mask15", "gtXMax", "negXMax", "nMin"}
	geluTanhLanes  = []string{"gtA3Hi", "gtA3Lo", "gtA1Lo", "gtExp2P0", "gtExp2P1", "gtExp2P2", "byteOffsets", "byteStep"}
	geluTanhTables = []string{"gtExp2T", "gtExp2Tau"}
)

// fns are the kernels of the transcendental functions, each the steps of
// its Go function in math32.go with the same constants.
var fns = []mapK{
	{name: "neonLog", doc: "neonLog sets dst = ln x over n elements, as log32.", ins: []string{"x"},
		consts: logConsts, lanes: logLanes, temps: 6, unroll: 2,
		vbody: each(func(g *gen, c *kctx, in, t []int) int { return logBody(g, c, in[0], t) })},
	{name: "neonTanh", doc: "neonTanh sets dst = tanh x over n elements, as tanhParts.", ins: []string{"x"},
		consts: tanhConsts, lanes: tanhLanes, temps: 7, unroll: 2,
		vbody: each(func(g *gen, c *kctx, in, t []int) int { return tanhParts(g, c, in[0], t, false) })},
	{name: "neonTanhGrad", doc: "neonTanhGrad sets dx = dy·(1 − tanh² x) over n elements, as tanhParts.", ins: []string{"x", "dy"},
		consts: tanhConsts, lanes: tanhLanes, temps: 7, unroll: 2,
		vbody: each(func(g *gen, c *kctx, in, t []int) int {
			g.W("fmul4s", in[1], in[1], tanhParts(g, c, in[0], t, true))
			return in[1]
		})},
	// x·Φ(x) = max(x, 0) − |x|·h, rounded once (gelu32 rounds the
	// float64 difference to float32, a second rounding that differs only
	// at a float32 midpoint); max(x, 0) as ReLU takes it (NaN kept).
	{name: "neonGELU", doc: "neonGELU sets dst = x·Φ(x) over n elements, as gelu32.", ins: []string{"x"},
		consts: geluConsts, lanes: geluLanes, temps: 7, unroll: 2, shared: 4, setup: phiSetup,
		vbody: func(g *gen, c *kctx, in, t [][]int) []int {
			var xs []int
			for u := range in {
				xs = append(xs, in[u][0])
			}
			h, _, a := phiTail(g, c, xs, t)
			var out []int
			for u, x := range xs {
				// |x| is cleared beyond geluMaxA (t[u][1], phiTail's mask
				// of those lanes), where h is 0 and ±Inf·0 would be NaN.
				g.W("bic", a[u], a[u], t[u][1])
				m := t[u][1]
				g.W("fcmle0", t[u][3], x)
				g.W("bic", m, x, t[u][3])
				g.fmls(m, a[u], h[u])
				out = append(out, m)
			}
			return out
		}},
	// dy·(x·(g·invSqrt2Pi) + c), c = 1 − h for x ≥ 0 and h below.
	{name: "neonGELUGrad", doc: "neonGELUGrad sets dx = dy·(Φ(x) + x·φ(x)) over n elements, as geluGrad32.", ins: []string{"x", "dy"},
		consts: geluConsts, lanes: geluLanes, temps: 7, unroll: 2, shared: 4, setup: phiSetup,
		vbody: func(g *gen, c *kctx, in, t [][]int) []int {
			var xs []int
			for u := range in {
				xs = append(xs, in[u][0])
			}
			h, gs, a := phiTail(g, c, xs, t)
			var out []int
			for u, x := range xs {
				cu, omh := t[u][2], t[u][3]
				g.W("fsub4s", omh, c.full("one"), h[u])
				g.W("fcmge0", cu, x)
				g.bsl(cu, omh, h[u])
				g.fmulc(gs[u], gs[u], c.at("invSqrt2Pi"))
				// x cleared beyond geluMaxA (t[u][1], phiTail's mask of
				// those lanes), where φ is 0 and ±Inf·0 would be NaN; |x|'s
				// register is free.
				g.W("bic", a[u], x, t[u][1])
				g.fmla(cu, a[u], gs[u])
				g.W("fmul4s", in[u][1], in[u][1], cu)
				out = append(out, in[u][1])
			}
			return out
		}},
	// x/(1 + e^{−y}) for x clamped to ±gtXMax in the exponential; 0
	// where it overflows (n > 127), x itself for NaN (Go returns it).
	{name: "neonGELUTanh", doc: "neonGELUTanh sets dst = x/(1 + e^−y) over n elements, as geluTanh32.", ins: []string{"x"},
		consts: append(geluTanhConsts, "nMax"), lanes: geluTanhLanes, tables: geluTanhTables, temps: 8, unroll: 1,
		vbody: func(g *gen, c *kctx, in, ts [][]int) []int {
			x, t := in[0][0], ts[0]
			xc := t[7]
			g.W("fmax4s", xc, x, c.full("negXMax"))
			g.W("fmin4s", xc, xc, c.full("gtXMax"))
			e, _, hi := geluTanhExp(g, c, xc, t, true)
			d := t[3]
			g.W("fadd4s", d, e, c.full("one"))
			g.W("fdiv4s", d, x, d)
			g.W("bic", d, d, hi)
			g.W("fcmeq", t[4], x, x)
			g.bif(d, x, t[4])
			return []int{d}
		}},
	// dy·(s + (xc·y′)·(s0 − s0²)) with e = e^{−|y|}, r = 1/(1 + e), s0 =
	// e·r, s = r for x ≥ 0 and s0 below, y′ = gtC1 + 3·gtC3·xc².
	{name: "neonGELUTanhGrad", doc: "neonGELUTanhGrad sets dx = dy·(σ(y) + x·σ(y)·σ(−y)·y′) over n elements, as geluTanhGrad32.",
		ins: []string{"x", "dy"}, consts: geluTanhConsts, lanes: append(geluTanhLanes, "gtC1", "gt3C3"), tables: geluTanhTables,
		temps: 9, unroll: 1,
		vbody: func(g *gen, c *kctx, in, ts [][]int) []int {
			x, dy, t := in[0][0], in[0][1], ts[0]
			one := c.full("one")
			xc, a := t[7], t[8]
			g.W("fmax4s", xc, x, c.full("negXMax"))
			g.W("fmin4s", xc, xc, c.full("gtXMax"))
			g.W("fabs4s", a, xc)
			e, s, _ := geluTanhExp(g, c, a, t, false)
			r, s0, sig := t[3], t[4], t[5]
			g.W("fadd4s", r, e, one)
			g.W("fdiv4s", r, one, r)
			g.W("fmul4s", s0, e, r)
			g.W("fcmge0", sig, x)
			g.bsl(sig, r, s0)
			yp := t[6]
			g.dupc(yp, c.at("gtC1"))
			g.fmlac(yp, s, c.at("gt3C3"))
			g.W("fmul4s", yp, xc, yp)
			g.mov(t[1], s0)
			g.fmls(t[1], s0, s0) // s0 − s0²
			g.fmla(sig, yp, t[1])
			g.W("fmul4s", dy, dy, sig)
			return []int{dy}
		}},
}

// prefetch is Prefetch: PRFM PLDL1KEEP at every 64 bytes from the cache
// line of x[0] (aligned down) to the end of x[0:n], so that the last line
// is asked for too.
func (g *gen) prefetch() {
	a := g.fn("neonPrefetch", "neonPrefetch asks for the cache lines of x[0:n] to be loaded, without waiting for them.",
		[]arg{{name: "x", typ: "*float32"}, {name: "n", typ: "int"}}, nil)
	g.I("MOVD %s, R0", fp(a["x"]))
	g.I("MOVD %s, R9", fp(a["n"]))
	g.I("ADD R9<<2, R0, R9") // the end
	g.I("AND $~63, R0, R0")
	g.label("prefetch_loop")
	g.I("CMP R9, R0")
	g.I("BHS prefetch_done")
	g.I("PRFM (R0), PLDL1KEEP")
	g.I("ADD $64, R0, R0")
	g.I("B prefetch_loop")
	g.label("prefetch_done")
	g.I("RET")
}

// ---- float64 reductions ----

// redK is a reduction Σ f(inputs) into float64 results over float32
// streams.
type redK struct {
	name, doc string
	ins       []string
	scalars   []string // float64 scalars, each in both lanes
	results   []string
	// pre, where set, runs float32 arithmetic on a vector of each input
	// (their registers in raw) before the widening; it runs on lane 0 for
	// the last elements too.
	pre func(g *gen, raw []int)
	// wide lists the inputs widened to float64 (all where nil).
	wide  []int
	temps int
	// body adds one float64 vector of terms: w holds the widened
	// inputs, s the scalars, acc one accumulator per result, t
	// temporaries.
	body func(g *gen, w, s, acc, t []int)
	// tail does what body does in scalar arithmetic (lane 0: F
	// registers) for the last elements.
	tail func(g *gen, w, s, acc, t []int)
}

// The scalar float64 instructions, in Go's operand order spelled out:
// faddd sets d = n + m, fmaddd d = a + n·m (rounded once).
func (g *gen) faddd(d, n, m int)     { g.I("FADDD F%d, F%d, F%d", m, n, d) }
func (g *gen) fsubd(d, n, m int)     { g.I("FSUBD F%d, F%d, F%d", m, n, d) }
func (g *gen) fmaddd(d, a, n, m int) { g.I("FMADDD F%d, F%d, F%d, F%d", m, a, n, d) }

// fmla2d is d += n·m in float64 lanes, rounded once.
func (g *gen) fmla2d(d, n, m int) { g.I("VFMLA %s, %s, %s", V(m, "D2"), V(n, "D2"), V(d, "D2")) }

func (g *gen) redKernel(k redK) {
	args := []arg{}
	for _, s := range k.ins {
		args = append(args, arg{name: s, typ: "*float32"})
	}
	for _, s := range k.scalars {
		args = append(args, arg{name: s, typ: "float64"})
	}
	args = append(args, arg{name: "n", typ: "int"})
	var res []arg
	for _, r := range k.results {
		res = append(res, arg{name: r, typ: "float64"})
	}
	a := g.fn(k.name, k.doc, args, res)
	wide := k.wide
	if wide == nil {
		for j := range k.ins {
			wide = append(wide, j)
		}
	}
	// Two float32 vectors, four float64 halves, per iteration.
	// Registers: input j's vectors in V(2j), V(2j+1); widened input i's
	// halves after them, four each; the accumulators (four or two per
	// result), the temporaries (four each), the scalars from V31 down.
	nI, nW, nR := len(k.ins), len(wide), len(k.results)
	baseW := 2 * nI
	need := func(acc int) int { return baseW + 4*nW + acc*nR + 4*k.temps + len(k.scalars) }
	nA := 4
	if need(nA) > 32 {
		nA = 2
	}
	if need(nA) > 32 {
		panic(k.name + ": out of vector registers")
	}
	baseA := baseW + 4*nW
	baseT := baseA + nA*nR
	raw := func(u int) []int {
		var r []int
		for j := range nI {
			r = append(r, 2*j+u)
		}
		return r
	}
	w := func(h int) []int {
		var r []int
		for i := range nW {
			r = append(r, baseW+4*i+h)
		}
		return r
	}
	acc := func(h int) []int {
		var r []int
		for i := range nR {
			r = append(r, baseA+nA*i+h%nA)
		}
		return r
	}
	tmp := func(h int) []int {
		var r []int
		for i := range k.temps {
			r = append(r, baseT+4*i+h)
		}
		return r
	}
	var sc []int
	for i := range k.scalars {
		sc = append(sc, 31-i)
	}
	for j, s := range k.ins {
		g.I("MOVD %s, R%d", fp(a[s]), 1+j)
	}
	for i, s := range k.scalars {
		g.I("FMOVD %s, F%d", fp(a[s]), sc[i])
		g.I("VDUP V%d.D[0], %s", sc[i], V(sc[i], "D2"))
	}
	g.I("MOVD %s, R9", fp(a["n"]))
	for r := range nR {
		for i := range nA {
			v := baseA + nA*r + i
			g.I("VEOR %s, %s, %s", V(v, "B16"), V(v, "B16"), V(v, "B16"))
		}
	}
	// widen takes the vectors u of the inputs to halves 2u and 2u+1.
	widen := func(u int) {
		for i, j := range wide {
			g.W("fcvtl", baseW+4*i+2*u, 2*j+u)
			g.W("fcvtl2", baseW+4*i+2*u+1, 2*j+u)
		}
	}
	l := k.name
	g.I("LSR $3, R9, R10")
	g.I("CBZ R10, %s_4", l)
	g.label(l + "_8")
	for j := range nI {
		g.I("VLD1.P 32(R%d), %s", 1+j, list(2*j, 2, "S4"))
	}
	for u := range 2 {
		if k.pre != nil {
			k.pre(g, raw(u))
		}
		widen(u)
	}
	for h := range 4 {
		k.body(g, w(h), sc, acc(h), tmp(h))
	}
	g.I("SUBS $1, R10, R10")
	g.I("BNE %s_8", l)

	g.label(l + "_4")
	g.I("TBZ $2, R9, %s_sum", l)
	for j := range nI {
		g.I("VLD1.P 16(R%d), [%s]", 1+j, V(2*j, "S4"))
	}
	if k.pre != nil {
		k.pre(g, raw(0))
	}
	widen(0)
	for h := range 2 {
		k.body(g, w(h), sc, acc(h), tmp(h))
	}

	// The accumulators of each result added up into lane 0 of its
	// first, then the last n%4 elements in scalar arithmetic.
	g.label(l + "_sum")
	for r := range nR {
		v := baseA + nA*r
		if nA == 4 {
			g.W("fadd2d", v, v, v+1)
			g.W("fadd2d", v+2, v+2, v+3)
			g.W("fadd2d", v, v, v+2)
		} else {
			g.W("fadd2d", v, v, v+1)
		}
		g.W("faddp2d", v, v)
	}
	g.I("ANDS $3, R9, R9")
	g.I("BEQ %s_done", l)
	g.label(l + "_1")
	for j := range nI {
		g.I("FMOVS.P 4(R%d), F%d", 1+j, 2*j)
	}
	if k.pre != nil {
		k.pre(g, raw(0))
	}
	for i, j := range wide {
		g.I("FCVTSD F%d, F%d", 2*j, baseW+4*i)
	}
	k.tail(g, w(0), sc, acc(0), tmp(0))
	g.I("SUBS $1, R9, R9")
	g.I("BNE %s_1", l)
	g.label(l + "_done")
	for r, name := range k.results {
		n := name
		if nR == 1 {
			n = "ret"
		}
		g.I("FMOVD F%d, %s", baseA+nA*r, fp(a[n]))
	}
	g.I("RET")
}

var reds = []redK{
	{name: "neonSum", doc: "neonSum returns Σ x[0:n] in float64.", ins: []string{"x"}, results: []string{"s"},
		body: func(g *gen, w, s, acc, t []int) { g.W("fadd2d", acc[0], acc[0], w[0]) },
		tail: func(g *gen, w, s, acc, t []int) { g.faddd(acc[0], acc[0], w[0]) }},
	{name: "neonSumSquares", doc: "neonSumSquares returns Σ x[0:n]² in float64.", ins: []string{"x"}, results: []string{"s"},
		body: func(g *gen, w, s, acc, t []int) { g.fmla2d(acc[0], w[0], w[0]) },
		tail: func(g *gen, w, s, acc, t []int) { g.fmaddd(acc[0], acc[0], w[0], w[0]) }},
	{name: "neonDot", doc: "neonDot returns Σ a·b over n elements in float64.", ins: []string{"a", "b"}, results: []string{"s"},
		body: func(g *gen, w, s, acc, t []int) { g.fmla2d(acc[0], w[0], w[1]) },
		tail: func(g *gen, w, s, acc, t []int) { g.fmaddd(acc[0], acc[0], w[0], w[1]) }},
	// p = a·b in float32, then ss += x², dot += p·x, as in Go.
	{name: "neonSumSquaresDot3", doc: "neonSumSquaresDot3 returns Σ x² and Σ p·x for p = a·b (rounded to float32) over n elements in float64.",
		ins: []string{"x", "a", "b"}, results: []string{"ss", "dot"},
		pre:  func(g *gen, raw []int) { g.W("fmul4s", raw[1], raw[1], raw[2]) },
		wide: []int{0, 1},
		body: func(g *gen, w, s, acc, t []int) {
			g.fmla2d(acc[0], w[0], w[0])
			g.fmla2d(acc[1], w[1], w[0])
		},
		tail: func(g *gen, w, s, acc, t []int) {
			g.fmaddd(acc[0], acc[0], w[0], w[0])
			g.fmaddd(acc[1], acc[1], w[1], w[0])
		}},
	// d = x − c; sd += d, ssd += d².
	{name: "neonSumsAbout", doc: "neonSumsAbout returns Σ (x − c) and Σ (x − c)² over n elements in float64.",
		ins: []string{"x"}, scalars: []string{"c"}, results: []string{"sd", "ssd"},
		body: func(g *gen, w, s, acc, t []int) {
			g.W("fsub2d", w[0], w[0], s[0])
			g.W("fadd2d", acc[0], acc[0], w[0])
			g.fmla2d(acc[1], w[0], w[0])
		},
		tail: func(g *gen, w, s, acc, t []int) {
			g.fsubd(w[0], w[0], s[0])
			g.faddd(acc[0], acc[0], w[0])
			g.fmaddd(acc[1], acc[1], w[0], w[0])
		}},
	// g = w·dy in float32, then d = x − c; sd += d, ssd += d², sg += g,
	// sgd += d·g.
	{name: "neonLayerNormGradStats", doc: "neonLayerNormGradStats returns Σ d, Σ d², Σ g and Σ d·g for d = x − c and g = w·dy (rounded to float32) over n elements in float64.",
		ins: []string{"x", "w", "dy"}, scalars: []string{"c"}, results: []string{"sd", "ssd", "sg", "sgd"},
		pre:  func(g *gen, raw []int) { g.W("fmul4s", raw[1], raw[1], raw[2]) },
		wide: []int{0, 1},
		body: func(g *gen, w, s, acc, t []int) {
			g.W("fsub2d", w[0], w[0], s[0])
			g.W("fadd2d", acc[0], acc[0], w[0])
			g.fmla2d(acc[1], w[0], w[0])
			g.W("fadd2d", acc[2], acc[2], w[1])
			g.fmla2d(acc[3], w[0], w[1])
		},
		tail: func(g *gen, w, s, acc, t []int) {
			g.fsubd(w[0], w[0], s[0])
			g.faddd(acc[0], acc[0], w[0])
			g.fmaddd(acc[1], acc[1], w[0], w[0])
			g.faddd(acc[2], acc[2], w[1])
			g.fmaddd(acc[3], acc[3], w[0], w[1])
		}},
}

// accumulate is Accumulate: acc[i] += float64(x[i]).
func (g *gen) accumulate() {
	a := g.fn("neonAccumulate", "neonAccumulate sets acc[i] += x[i] for i < n, in float64.",
		[]arg{{name: "acc", typ: "*float64"}, {name: "x", typ: "*float32"}, {name: "n", typ: "int"}}, nil)
	g.I("MOVD %s, R0", fp(a["acc"]))
	g.I("MOVD %s, R1", fp(a["x"]))
	g.I("MOVD %s, R9", fp(a["n"]))
	g.I("LSR $3, R9, R10")
	g.I("CBZ R10, acc_4")
	g.label("acc_8")
	// x in V0, V1, widened into V2-V5; acc in V16-V19.
	g.I("VLD1.P 32(R1), %s", list(0, 2, "S4"))
	g.I("VLD1 (R0), %s", list(16, 4, "D2"))
	for u := range 2 {
		g.W("fcvtl", 2+2*u, u)
		g.W("fcvtl2", 3+2*u, u)
	}
	for h := range 4 {
		g.W("fadd2d", 16+h, 16+h, 2+h)
	}
	g.I("VST1.P %s, 64(R0)", list(16, 4, "D2"))
	g.I("SUBS $1, R10, R10")
	g.I("BNE acc_8")
	g.label("acc_4")
	g.I("TBZ $2, R9, acc_1")
	g.I("VLD1.P 16(R1), [V0.S4]")
	g.I("VLD1 (R0), %s", list(16, 2, "D2"))
	g.W("fcvtl", 2, 0)
	g.W("fcvtl2", 3, 0)
	g.W("fadd2d", 16, 16, 2)
	g.W("fadd2d", 17, 17, 3)
	g.I("VST1.P %s, 32(R0)", list(16, 2, "D2"))
	g.label("acc_1")
	g.I("ANDS $3, R9, R9")
	g.I("BEQ acc_done")
	g.label("acc_1loop")
	g.I("FMOVS.P 4(R1), F0")
	g.I("FCVTSD F0, F0")
	g.I("FMOVD (R0), F1")
	g.faddd(1, 1, 0)
	g.I("FMOVD.P F1, 8(R0)")
	g.I("SUBS $1, R9, R9")
	g.I("BNE acc_1loop")
	g.label("acc_done")
	g.I("RET")
}

// adamw is AdamW, four elements (two float64 halves) per iteration and
// then one at a time in lane 0, each step as goAdamW computes it in
// float64, every product rounded (Go's conversions keep it from fusing),
// then rounded to float32 (FCVTN, as Go's conversion rounds).
func (g *gen) adamw() {
	a := g.fn("neonAdamW", "neonAdamW performs one AdamW step on p, m and v over n elements with gradient g and the constants *s, as goAdamW.",
		[]arg{{name: "p", typ: "*float32"}, {name: "grad", typ: "*float32"}, {name: "m", typ: "*float32"}, {name: "v", typ: "*float32"},
			{name: "s", typ: "*AdamWStep"}, {name: "n", typ: "int"}}, nil)
	for i, name := range []string{"p", "grad", "m", "v"} {
		g.I("MOVD %s, R%d", fp(a[name]), i)
	}
	g.I("MOVD R0, R5")
	g.I("MOVD R2, R6")
	g.I("MOVD R3, R7")
	// The constants, in AdamWStep's field order, in V31 down to V25.
	g.I("MOVD %s, R4", fp(a["s"]))
	const b1, omb1, b2, omb2, decay, step, eps = 31, 30, 29, 28, 27, 26, 25
	for i := range 7 {
		g.I("FMOVD %d(R4), F%d", 8*i, 31-i)
		g.I("VDUP V%d.D[0], %s", 31-i, V(31-i, "D2"))
	}
	g.I("MOVD %s, R9", fp(a["n"]))
	// body updates half h: p, g, m, v widened in V(4+h), V(6+h), V(8+h),
	// V(10+h); temporaries V(12+2h), V(13+2h).
	body := func(h int) {
		p, gr, m, v, t0, t1 := 4+h, 6+h, 8+h, 10+h, 12+2*h, 13+2*h
		g.W("fmul2d", t0, b1, m)
		g.W("fmul2d", t1, omb1, gr)
		g.W("fadd2d", m, t0, t1) // m
		g.W("fmul2d", t0, b2, v)
		g.W("fmul2d", t1, omb2, gr)
		g.W("fmul2d", t1, t1, gr)
		g.W("fadd2d", v, t0, t1) // v
		g.W("fmul2d", p, decay, p)
		g.W("fmul2d", t0, step, m)
		g.W("fsqrt2d", t1, v)
		g.W("fadd2d", t1, t1, eps)
		g.W("fdiv2d", t0, t0, t1)
		g.W("fsub2d", p, p, t0)
	}
	widen := func(halves int) {
		for j := range 4 {
			g.W("fcvtl", 4+2*j, j)
			if halves == 2 {
				g.W("fcvtl2", 5+2*j, j)
			}
		}
	}
	narrow := func(halves int) {
		for _, j := range []int{0, 2, 3} { // p, m, v
			g.W("fcvtn", j, 4+2*j)
			if halves == 2 {
				g.W("fcvtn2", j, 5+2*j)
			}
		}
	}
	g.I("LSR $2, R9, R10")
	g.I("CBZ R10, adamw_1")
	g.label("adamw_4")
	for j := range 4 {
		g.I("VLD1.P 16(R%d), [%s]", j, V(j, "S4"))
	}
	widen(2)
	body(0)
	body(1)
	narrow(2)
	for i, j := range []int{0, 2, 3} {
		g.I("VST1.P [%s], 16(R%d)", V(j, "S4"), 5+i)
	}
	g.I("SUBS $1, R10, R10")
	g.I("BNE adamw_4")
	g.label("adamw_1")
	g.I("ANDS $3, R9, R9")
	g.I("BEQ adamw_done")
	g.label("adamw_1loop")
	for j := range 4 {
		g.I("FMOVS.P 4(R%d), F%d", j, j)
	}
	widen(1)
	body(0)
	narrow(1)
	for i, j := range []int{0, 2, 3} {
		g.I("FMOVS.P F%d, 4(R%d)", j, 5+i)
	}
	g.I("SUBS $1, R9, R9")
	g.I("BNE adamw_1loop")
	g.label("adamw_done")
	g.I("RET")
}

// ---- maxima ----

// max is Max (scaled false) or MaxScaled: four running maxima, from x[0]
// (times s) in every lane, then FMAXV across them and FMAXS over the
// last elements. FMAX returns a NaN operand, so a NaN anywhere in x
// makes the result NaN; the Go wrapper of Max then finds the NaN of x to
// return.
func (g *gen) max(scaled bool) {
	name, doc := "neonMax", "neonMax returns the largest of x[0:n], n ≥ 1, or NaN where x holds one."
	args := []arg{{name: "x", typ: "*float32"}}
	if scaled {
		name, doc = "neonMaxScaled", "neonMaxScaled returns the largest s·x[i] (products rounded) for i < n, n ≥ 1, or NaN where one is."
		args = append(args, arg{name: "s", typ: "float32"})
	}
	args = append(args, arg{name: "n", typ: "int"})
	a := g.fn(name, doc, args, []arg{{name: "m", typ: "float32"}})
	g.I("MOVD %s, R0", fp(a["x"]))
	g.I("MOVD %s, R9", fp(a["n"]))
	g.I("VLD1R (R0), [V0.S4]")
	if scaled {
		g.I("FMOVS %s, F31", fp(a["s"]))
		g.I("VDUP V31.S[0], V31.S4")
		g.W("fmul4s", 0, 0, 31)
	}
	for r := 1; r < 4; r++ {
		g.I("VORR %s, %s, %s", V(0, "B16"), V(0, "B16"), V(r, "B16"))
	}
	g.I("LSR $4, R9, R10")
	g.I("CBZ R10, %s_4", name)
	g.label(name + "_16")
	g.I("VLD1.P 64(R0), %s", list(4, 4, "S4"))
	for r := range 4 {
		if scaled {
			g.W("fmul4s", 4+r, 4+r, 31)
		}
		g.W("fmax4s", r, r, 4+r)
	}
	g.I("SUBS $1, R10, R10")
	g.I("BNE %s_16", name)
	g.label(name + "_4")
	g.I("AND $15, R9, R9")
	g.I("LSR $2, R9, R10")
	g.I("CBZ R10, %s_across", name)
	g.label(name + "_4loop")
	g.I("VLD1.P 16(R0), [V4.S4]")
	if scaled {
		g.W("fmul4s", 4, 4, 31)
	}
	g.W("fmax4s", 0, 0, 4)
	g.I("SUBS $1, R10, R10")
	g.I("BNE %s_4loop", name)
	g.label(name + "_across")
	g.W("fmax4s", 0, 0, 1)
	g.W("fmax4s", 2, 2, 3)
	g.W("fmax4s", 0, 0, 2)
	g.W("fmaxv", 0, 0)
	g.I("ANDS $3, R9, R9")
	g.I("BEQ %s_done", name)
	g.label(name + "_1")
	g.I("FMOVS.P 4(R0), F4")
	if scaled {
		g.I("FMULS F31, F4, F4")
	}
	g.I("FMAXS F4, F0, F0")
	g.I("SUBS $1, R9, R9")
	g.I("BNE %s_1", name)
	g.label(name + "_done")
	g.I("FMOVS F0, %s", fp(a["ret"]))
	g.I("RET")
}

// ---- sums of exponentials ----

// expSumConsts are the constants expSum needs: 1, then the bound and the
// polynomial's coefficients; log2e, which the caller needs, last.
var expSumConsts = []string{"one", "expSumLo", "exp2P0", "exp2P1", "exp2P2", "exp2P3", "exp2P4", "log2e"}

// expSum sets a register to 2^u as expSum32 does (math32.go) and returns
// it, using t[0..2] (u is changed): u ≥ −125 clamped (a NaN u returned by
// FMAX stays NaN, whatever the integer added to its bits), 2^f for f =
// u − round(u) by the polynomial, and round(u) added to its exponent
// field. c holds expSumConsts' registers.
func (g *gen) expSum(u int, t []int, c []int) int {
	one, lo, p := c[0], c[1], c[2:7]
	n := t[0]
	g.W("fmax4s", u, u, lo)
	g.W("frintn", n, u)
	g.W("fsub4s", u, u, n) // f
	r := g.horner(u, append([]int{one}, p...), t[1], t[2])
	g.W("fcvtzs", n, n)
	g.I("VSHL $23, %s, %s", V(n, "S4"), V(n, "S4"))
	g.I("VADD %s, %s, %s", V(n, "S4"), V(r, "S4"), V(r, "S4"))
	return r
}

// expSums writes the exponential sums, two vectors (eight elements) per
// iteration, then four, then one at a time in lane 0:
//
//   - sum false: ExpShift, dst = e^(scale·x − shift) (the argument one
//     fused multiply-add, as Go fuses it) computed as exp does, stored,
//     and summed;
//   - sum true: ExpShiftSum's Σ 2^(x·log2e − c), the exponent one fused
//     multiply-add, the terms as expSum makes them, not stored;
//
// with next, also the largest element of next (as long as x), from −Inf,
// FMAX returning a NaN of next. The terms are widened to float64 and
// summed in four float64 vectors, added up before the last elements.
func (g *gen) expSums(sum, next bool) {
	docs := map[[2]bool][2]string{
		{false, false}: {"neonExpShift", "neonExpShift sets dst = e^(scale·x − shift) over n elements and returns their sum in float64."},
		{false, true}:  {"neonExpShiftNextMax", "neonExpShiftNextMax is neonExpShift that also returns the largest element of next[0:n]."},
		{true, false}:  {"neonExpShiftSum", "neonExpShiftSum returns Σ 2^(x·log2e − c) over n elements (the terms of ExpShiftSum) in float64."},
		{true, true}:   {"neonExpShiftSumNextMax", "neonExpShiftSumNextMax is neonExpShiftSum that also returns the largest element of next[0:n]."},
	}
	name, doc := docs[[2]bool{sum, next}][0], docs[[2]bool{sum, next}][1]
	var args []arg
	if !sum {
		args = append(args, arg{name: "dst", typ: "*float32"})
	}
	args = append(args, arg{name: "x", typ: "*float32"})
	if next {
		args = append(args, arg{name: "next", typ: "*float32"})
	}
	if sum {
		args = append(args, arg{name: "c", typ: "float32"})
	} else {
		args = append(args, arg{name: "scale", typ: "float32"}, arg{name: "shift", typ: "float32"})
	}
	args = append(args, arg{name: "n", typ: "int"})
	res := []arg{{name: "sum", typ: "float64"}}
	if next {
		res = append(res, arg{name: "m", typ: "float32"})
	}
	a := g.fn(name, doc, args, res)
	sumRes := "sum"
	if !next {
		sumRes = "ret"
	}

	// Registers: x in V0, V1, the terms in V2, V3, temporaries V4-V6 and
	// V7-V9 (and the widened terms once the exponentials are done; −Inf
	// in V4 before the loop), the sums V10-V13, next V14, V15 and its
	// maxima V16, V17, the scalars (scale in V18, −shift or −c in V19 or
	// V23) and the constants from V31 down.
	var c []int
	var ec *kctx
	var negShift, scale, log2e int
	if sum {
		c = g.loadConsts(31, expSumConsts...)
		log2e = c[len(c)-1]
		negShift = 23
		g.I("FMOVS %s, F%d", fp(a["c"]), negShift)
	} else {
		ec = ctxOf(expConsts, g.loadConsts(31, expConsts...))
		scale, negShift = 18, 19
		g.I("FMOVS %s, F%d", fp(a["scale"]), scale)
		g.I("VDUP V%d.S[0], %s", scale, V(scale, "S4"))
		g.I("FMOVS %s, F%d", fp(a["shift"]), negShift)
	}
	g.I("FNEGS F%d, F%d", negShift, negShift)
	g.I("VDUP V%d.S[0], %s", negShift, V(negShift, "S4"))
	g.I("MOVD %s, R1", fp(a["x"]))
	if !sum {
		g.I("MOVD %s, R0", fp(a["dst"]))
	}
	if next {
		g.I("MOVD %s, R2", fp(a["next"]))
		negInf := g.loadConsts(4, "negInf")[0]
		g.mov(16, negInf)
		g.mov(17, negInf)
	}
	g.I("MOVD %s, R9", fp(a["n"]))
	for r := 10; r < 14; r++ {
		g.I("VEOR %s, %s, %s", V(r, "B16"), V(r, "B16"), V(r, "B16"))
	}
	// term computes vector u's terms (lane 0 only for the last
	// elements) and returns their register.
	term := func(u int) int {
		d, t := 2+u, []int{4 + 3*u, 5 + 3*u, 6 + 3*u}
		g.mov(d, negShift)
		if sum {
			g.fmla(d, u, log2e) // x·log2e − c
			g.mov(d, g.expSum(d, t, c))
			return d
		}
		g.fmla(d, u, scale) // scale·x − shift
		g.exp(d, t, ec)
		return d
	}
	// add widens vector u's terms and adds them to sums 2u, 2u+1.
	add := func(u int) {
		w0, w1 := 4+3*u, 5+3*u
		g.W("fcvtl", w0, 2+u)
		g.W("fcvtl2", w1, 2+u)
		g.W("fadd2d", 10+2*u, 10+2*u, w0)
		g.W("fadd2d", 11+2*u, 11+2*u, w1)
	}
	l := name
	g.I("LSR $3, R9, R10")
	g.I("CBZ R10, %s_4", l)
	g.label(l + "_8")
	g.I("VLD1.P 32(R1), %s", list(0, 2, "S4"))
	if next {
		g.I("VLD1.P 32(R2), %s", list(14, 2, "S4"))
		g.W("fmax4s", 16, 16, 14)
		g.W("fmax4s", 17, 17, 15)
	}
	term(0)
	term(1)
	if !sum {
		g.I("VST1.P %s, 32(R0)", list(2, 2, "S4"))
	}
	add(0)
	add(1)
	g.I("SUBS $1, R10, R10")
	g.I("BNE %s_8", l)

	g.label(l + "_4")
	g.I("TBZ $2, R9, %s_sum", l)
	g.I("VLD1.P 16(R1), [V0.S4]")
	if next {
		g.I("VLD1.P 16(R2), [V14.S4]")
		g.W("fmax4s", 16, 16, 14)
	}
	term(0)
	if !sum {
		g.I("VST1.P [V2.S4], 16(R0)")
	}
	add(0)

	g.label(l + "_sum")
	g.W("fadd2d", 10, 10, 11)
	g.W("fadd2d", 12, 12, 13)
	g.W("fadd2d", 10, 10, 12)
	g.W("faddp2d", 10, 10)
	if next {
		g.W("fmax4s", 16, 16, 17)
		g.W("fmaxv", 16, 16)
	}
	g.I("ANDS $3, R9, R9")
	g.I("BEQ %s_done", l)
	g.label(l + "_1")
	g.I("FMOVS.P 4(R1), F0")
	if next {
		g.I("FMOVS.P 4(R2), F14")
		g.I("FMAXS F14, F16, F16")
	}
	term(0)
	if !sum {
		g.I("FMOVS.P F2, 4(R0)")
	}
	g.I("FCVTSD F2, F4")
	g.faddd(10, 10, 4)
	g.I("SUBS $1, R9, R9")
	g.I("BNE %s_1", l)
	g.label(l + "_done")
	g.I("FMOVD F10, %s", fp(a[sumRes]))
	if next {
		g.I("FMOVS F16, %s", fp(a["m"]))
	}
	g.I("RET")
}

func main() {
	dir := flag.String("dir", ".", "directory to write kernels_arm64.s and stubs_arm64.go to")
	flag.Parse()
	g := &gen{}
	// -tags noasm leaves the assembly out (kernels_other.go then builds).
	g.s.WriteString("// Code generated by gen_arm64.go; DO NOT EDIT.\n\n//go:build !noasm\n\n#include \"textflag.h\"\n")
	g.stubs.WriteString("// Code generated by gen_arm64.go; DO NOT EDIT.\n\n//go:build !noasm\n\npackage vec\n\nimport \"math\"\n\n")
	g.stubs.WriteString("// neonC holds the constants of the assembly, which loads them by index.\nvar neonC = [...]float32{\n")
	for i, c := range neonConsts {
		fmt.Fprintf(&g.stubs, "\t%s, // %d: %s\n", c[1], i, c[0])
	}
	g.stubs.WriteString("}\n\n")
	g.fill()
	for _, k := range maps {
		g.mapKernel(k)
	}
	for _, k := range fns {
		g.mapKernel(k)
	}
	g.prefetch()
	for _, k := range reds {
		g.redKernel(k)
	}
	g.accumulate()
	g.adamw()
	g.max(false)
	g.max(true)
	for _, sum := range []bool{false, true} {
		g.expSums(sum, false)
		g.expSums(sum, true)
	}
	stubs, err := format.Source(g.stubs.Bytes())
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen_arm64:", err)
		os.Exit(1)
	}
	for name, b := range map[string][]byte{"kernels_arm64.s": g.s.Bytes(), "stubs_arm64.go": stubs} {
		if err := os.WriteFile(filepath.Join(*dir, name), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen_arm64:", err)
			os.Exit(1)
		}
	}
}

//go:build ignore

// Command gen_amd64 writes kernels_amd64.s and stubs_amd64.go: every vector
// kernel of package vec in two instruction sets, AVX2 with FMA (8 float32
// lanes in YMM registers) and AVX-512F with DQ (16 lanes in ZMM registers;
// DQ for VRANGEPS), from
// one description per kernel. The per-vector arithmetic of each kernel is
// written once below against a small set of helpers that spell the few
// instructions that differ between the two (compares into a vector or a
// mask register, blends, bit operations, rounding, masked loads and
// stores, half-width moves).
//
// Three loop shapes cover the kernels:
//
//   - element-wise float32 maps (dst = f(inputs, scalars)), unrolled, with
//     a masked last vector for the tail and a second entry point that
//     writes with non-temporal stores;
//   - float64 row kernels, which widen each float32 vector to two float64
//     halves, run the body on each half, and narrow the results (with
//     float64 accumulator arrays and float64 sums returned);
//   - a few custom loops (exp with a float64 sum, max).
//
// Run it with: go run gen_amd64.go (go generate does); -dir writes the
// files elsewhere (generate_test.go compares such a run with the files).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// isa is one target instruction set.
type isa struct {
	suffix string // of the symbol names
	v, h   string // register prefixes of a full and a half vector
	lanes  int    // float32 lanes of a full vector
	regs   int    // vector registers available
}

var (
	avx2   = isa{"AVX2", "Y", "X", 8, 16}
	avx512 = isa{"AVX512", "Z", "Y", 16, 32}
)

func (s isa) wide() bool           { return s.lanes == 16 }
func (s isa) bytes() int           { return 4 * s.lanes }
func (s isa) V(i int) string       { return fmt.Sprintf("%s%d", s.v, i) }
func (s isa) half(r string) string { return s.h + r[1:] }

// gen accumulates the assembly of one instruction set.
type gen struct {
	isa
	b *bytes.Buffer
	// consts maps constant operands (·c…(SB) and ·t…(SB)) to the
	// registers that hold them while a kernel's loop is written (see
	// keepConsts).
	consts map[string]string
}

// I emits an instruction, with the registers keepConsts chose in place
// of their constants. In AVX-512 code a constant operand (·c…(SB)) that
// no register holds is read as one float broadcast to every lane, with
// the .BCST form of the instruction or VBROADCASTSS for a plain load: a
// 64-byte constant load would often straddle two cache lines (Go aligns
// data to at most 32 bytes), which on large arrays costs more than the
// arithmetic.
func (g *gen) I(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	for operand, reg := range g.consts {
		line = strings.ReplaceAll(line, operand, reg)
	}
	// A row kernel's float64 scalar is an argument (FP) operand of an
	// arithmetic instruction; MOVQ and friends load pointers and counts.
	scalarArg := strings.Contains(line, "(FP)") && strings.HasPrefix(line, "V") &&
		!strings.HasPrefix(line, "VBROADCAST") && !strings.HasPrefix(line, "VMOVS")
	if g.wide() && (strings.Contains(line, "(SB)") && strings.Contains(line, "·c") || scalarArg) {
		op, rest, _ := strings.Cut(line, " ")
		switch op {
		case "VMOVUPS":
			op = "VBROADCASTSS"
		case "VMOVUPS.Z":
			op = "VBROADCASTSS.Z"
		default:
			op += ".BCST"
		}
		line = op + " " + rest
	}
	fmt.Fprintf(g.b, "\t%s\n", line)
}
func (g *gen) label(l string) { fmt.Fprintf(g.b, "%s:\n", l) }

// c returns the memory operand of a constant vector (a [16]float32 or
// [16]uint32 declared in stubs_amd64.go), k of them into a table.
func c(name string) string { return "·" + name + "(SB)" }
func ck(name string, k int) string {
	return fmt.Sprintf("·%s+%d(SB)", name, 64*k)
}

// Compare predicates of VCMPPS.
const (
	eqOQ  = 0  // a == b
	ltOS  = 1  // a < b
	unord = 3  // a or b is NaN
	nleUS = 6  // !(a <= b)
	ngeUS = 9  // !(a >= b)
	ngtUS = 10 // !(a > b)
	geOS  = 13 // a >= b
	gtOS  = 14 // a > b
)

// The helpers below take operands in Go assembler order: sources first,
// destination last, and for two sources "b, a" means a op b.

func (g *gen) and(b, a, d string) { g.bitop("VANDPS", "VPANDD", b, a, d) }
func (g *gen) or(b, a, d string)  { g.bitop("VORPS", "VPORD", b, a, d) }
func (g *gen) xor(b, a, d string) { g.bitop("VXORPS", "VPXORD", b, a, d) }

func (g *gen) bitop(narrow, wide, b, a, d string) {
	if g.wide() {
		g.I("%s %s, %s, %s", wide, b, a, d)
	} else {
		g.I("%s %s, %s, %s", narrow, b, a, d)
	}
}

func (g *gen) zero(d string) { g.xor(d, d, d) }

// round rounds to the nearest integer, ties to even.
func (g *gen) round(s, d string) {
	if g.wide() {
		g.I("VRNDSCALEPS $0, %s, %s", s, d)
	} else {
		g.I("VROUNDPS $0, %s, %s", s, d)
	}
}

// cmp sets mask m to a pred b lane by lane; m is a vector register for
// AVX2 and an opmask register for AVX-512.
func (g *gen) cmp(pred int, b, a, m string) { g.I("VCMPPS $%d, %s, %s, %s", pred, b, a, m) }

// blend sets d = m ? b : a; b may be a memory operand.
func (g *gen) blend(m, b, a, d string) {
	if g.wide() {
		g.I("VBLENDMPS %s, %s, %s, %s", b, a, m, d)
	} else {
		g.I("VBLENDVPS %s, %s, %s, %s", m, b, a, d)
	}
}

// keep sets d = m ? s : 0; s may be a memory operand.
func (g *gen) keep(m, s, d string) {
	if g.wide() {
		g.I("VMOVUPS.Z %s, %s, %s", s, m, d) // unaligned: s may be memory
	} else {
		g.I("VANDPS %s, %s, %s", s, m, d)
	}
}

// horner evaluates p = Σ table[k]·t^k (deg+1 coefficients) into p.
func (g *gen) horner(table string, deg int, t, p string) {
	g.I("VMOVUPS %s, %s", ck(table, deg), p)
	for k := deg - 1; k >= 0; k-- {
		g.I("VFMADD213PS %s, %s, %s", ck(table, k), t, p)
	}
}

// expOpts selects the parts of exp a caller needs.
type expOpts struct {
	lo, hi bool // clamp the argument below at expLo, above at expHi (NaN passes)
	wide   bool // results may leave the normal range: scale in two steps
	// poly has AVX-512 compute exp as AVX2 does, by the polynomial,
	// rather than as expTab (see exp).
	poly bool
}

// expFull is exp over all float32 arguments.
var expFull = expOpts{lo: true, hi: true, wide: true}

// exp sets x = e^x using three temporaries (four on AVX-512 but with
// o.poly); see exp32 in math32.go. The argument needs clamping only
// where it may be infinite or huge: below expLo the result is 0, above
// expHi +Inf, and clamping keeps the range reduction finite. AVX-512
// computes it as expTab does with the table's rounding errors
// (expTabTau), which clamps at expLo always, unless o.poly: thirteen
// operations where the polynomial takes fourteen, on a shorter chain,
// and more accurate (Exp 0.73 ulps at most over accuracy_test.go's
// sweep, against 0.97). In the L2 cache on Zen 5, the constants in
// registers either way, Exp's kernel took 8% less time, Sigmoid's and
// SiLU's 12%, Tanh's 5% and TanhGrad's 4%. The sigmoid's derivatives
// keep the polynomial: their bound of 5 ulps has no room (over every
// float32 in [3, 4], SigmoidGrad's worst error is 4.98 ulps with it,
// 5.08 with expTabTau).
func (g *gen) exp(x string, t []string, o expOpts) {
	t0, t1, t2 := t[0], t[1], t[2]
	hi := func() {
		if o.hi {
			g.I("VMINPS %s, %s, %s", x, g.inReg(c("cExpHi"), t0), x)
		}
	}
	if g.wide() && !o.poly {
		hi()
		g.expTab(x, t, expTabTau())
		return
	}
	if o.lo {
		g.I("VMAXPS %s, %s, %s", x, g.inReg(c("cExpLo"), t0), x) // NaN in x is returned
	}
	hi()
	g.I("VMULPS %s, %s, %s", c("cLog2e"), x, t0)
	g.round(t0, t0) // n
	g.I("VMOVAPS %s, %s", x, t1)
	g.I("VFNMADD231PS %s, %s, %s", c("cLn2Hi"), t0, t1) // exact
	g.I("VFNMADD231PS %s, %s, %s", c("cLn2Lo"), t0, t1) // r
	g.horner("cExpQ", 4, t1, t2)
	g.I("VMULPS %s, %s, %s", t1, t1, x)
	g.I("VFMADD213PS %s, %s, %s", t1, t2, x) // r²·Q + r
	g.I("VADDPS %s, %s, %s", c("cOne"), x, x)
	g.scale2n(x, t0, t1, o.wide)
}

// exp2Consts says where exp2Sum finds its constants: each a vector
// register or a memory operand.
type exp2Consts struct {
	log2e, lo, magic, one string
	tab, tab2             string   // AVX-512's table of 2^(j/32), its two halves
	p                     []string // the polynomial's coefficients, degree 0 up
}

// exp2Consts keeps exp2Sum's constants in registers where r has them to
// spare after reserve more, and in memory otherwise. AVX2's lo, which
// VMAXPS needs in a register to return a NaN argument, gets a register
// or is loaded into a temporary each time; AVX-512's magic, whose
// addition rounds down by an embedded rounding mode, which only
// register operands take, and its table get the first registers.
func (g *gen) exp2Consts(r *regs, reserve int) exp2Consts {
	var all []*string
	k := exp2Consts{log2e: c("cLog2e"), lo: c("cExpSumLo"), magic: c("cMagic"), one: c("cOne")}
	table, deg := "cExp2P", 5
	if g.wide() {
		k = exp2Consts{log2e: c("cLog2e"), magic: c("cSumMagic"), tab: "·tExp2S(SB)", tab2: "·tExp2S+64(SB)"}
		table, deg = "cExp2S", 2
		all = append(all, &k.magic, &k.tab, &k.tab2)
	} else {
		all = append(all, &k.lo, &k.log2e, &k.magic)
	}
	for i := range deg {
		k.p = append(k.p, ck(table, i))
	}
	for i := range k.p {
		all = append(all, &k.p[i])
	}
	if g.wide() {
		all = append(all, &k.log2e)
	} else {
		all = append(all, &k.one)
	}
	for _, s := range all {
		if r.g.regs-r.next <= reserve {
			break
		}
		reg := r.v()
		g.I("VMOVUPS %s, %s", *s, reg)
		*s = reg
	}
	if g.wide() && (strings.HasPrefix(k.magic, "·") || strings.HasPrefix(k.tab, "·")) {
		panic("exp2Consts: no register for the magic number or the table")
	}
	return k
}

// exp2Temps is how many temporaries exp2Sum needs.
func (g *gen) exp2Temps() int {
	if g.wide() {
		return 3
	}
	return 2
}

// exp2Sum sets x = 2^x, the terms of sums of exponentials, using
// exp2Temps() temporaries.
//
// AVX2 computes expSum32 (x ≥ −125 clamped, NaN passes): 2^n·2^f for n =
// round(x), f = x − n. It rounds by adding and subtracting 1.5·2²³ + 127,
// which leaves n + 127 in the sum's low bits, shifted up into an exponent
// field that makes 2^n, and multiplies by it: a NaN stays NaN whatever its
// payload (an integer add of the shifted bits into the result's exponent
// would turn a payload into a number). Ties round n to odd (the sum's low
// bit to even), which leaves f in [−½, ½]. With n ≥ −125 the scaling is
// exact, so the kernel agrees with expSum32 but for ties.
//
// AVX-512 splits x at k/32 = ⌊32x⌋/32, rounding down: 2^x = 2^⌊x⌋ ·
// 2^(j/32) · 2^g for j = k mod 32 and g = x − k/32 in [0, 1/32). Adding
// 1.5·2¹⁸ (sumMagic) to x rounding down (an embedded rounding mode) leaves
// k in the sum's low bits, whose last five VPERMI2PS takes as j to pick
// 2^(j/32) from a table in two registers (exp2S32, rounded to float32:
// 5.6e−8 relative at most, 0 for j = 0); VREDUCEPS takes g, exactly but
// where x is just below a multiple of 1/32 (then by 2⁻²⁹ at most, rounding
// down: under 1e−9 of the term); 2^g is 1 + g·P(g), P of degree 1 (exp2S,
// 6.6e−8 relative), times 2^(j/32) in one fused multiply-add, and
// VSCALEFPS scales by 2^⌊x⌋, taking the floor of x itself (j/32 + g < 1).
// Nothing is clamped: results below 2⁻¹²⁶ come out subnormal, rounded
// once, or 0; below −2¹⁷, where the sum leaves sumMagic's binade, j is
// meaningless but picks an entry all the same, and the term is 0; −Inf
// gives 0, NaN NaN. A table of 2^(j/16) and P of degree 2 took one
// multiply-add more a term (1e−7 relative at most, 1.4e−7 in exp2Factors'
// runs, against 1.8e−7 and 2.2e−7 now): the sums are bound by their count
// of instructions (see exp2Factors), and one fewer made cross_entropy
// 3–5% faster at rows of 1024 (4M floats, one thread, six alternated
// runs: 51.4–53.0 → 52.5–55.4 GB/s; at rows of 4096 1–4%). The tables
// and degree five on [−½, ½] that AVX-512 ran before those took four
// multiply-adds in place of five and no VRNDSCALEPS: ExpSumNextMax 9%
// faster on Zen 5 in cache (7–9% from memory).
func (g *gen) exp2Sum(x string, t []string, k exp2Consts) {
	if g.wide() {
		m, f, p := t[0], t[1], t[2]
		g.exp2Split(x, m, f, k)
		g.exp2Poly(f, p, k)
		g.I("VMULPS %s, %s, %s", f, p, p)
		g.I("VFMADD213PS %s, %s, %s", m, m, p) // 2^(j/32)·2^g
		g.I("VSCALEFPS %s, %s, %s", x, p, x)
		return
	}
	n, p := t[0], t[1]
	lo := k.lo
	if strings.HasPrefix(lo, "·") {
		g.I("VMOVUPS %s, %s", lo, n)
		lo = n
	}
	g.I("VMAXPS %s, %s, %s", x, lo, x) // NaN in x is returned
	g.I("VADDPS %s, %s, %s", k.magic, x, n)
	g.I("VSUBPS %s, %s, %s", k.magic, n, p)
	g.I("VSUBPS %s, %s, %s", p, x, x) // f
	g.I("VPSLLD $23, %s, %s", n, n)
	g.exp2Poly(x, p, k)
	g.I("VFMADD213PS %s, %s, %s", k.one, x, p)
	g.I("VMULPS %s, %s, %s", n, p, x)
}

// exp2Factors is AVX-512's exp2Sum for terms that a fused multiply-add
// adds into a sum: it leaves 2^x as the product of t[0] = 2^⌊x⌋·2^(j/32)
// (VSCALEFPS on the table entry) and t[2] = 2^g = 1 + g·P(g), rounded to
// float32 (half an ulp of a number near 1, 6e−8 relative at most, which
// exp2Sum's single multiply-add T + T·g·P(g) does not have), and x as it
// was. The product is not rounded before the addition. Cross-entropy's
// sums of exponentials are bound on Zen 5 by their count of
// instructions, not by any one pipe (leaving VREDUCEPS or VSCALEFPS out
// made the loop 16 and 10% faster, moving work between pipes with as
// many instructions never did): the terms of each run of sixteen vectors
// summed by two chains of multiply-adds, one instruction fewer a vector
// than exp2Sum and the tree of additions, made it 10% faster in the L2
// cache (68.0 → 61.4 ns a row of 1024) and 6% from L3 (71.2 → 67.1).
// Nothing is clamped: where 2^⌊x⌋·2^(j/32) goes subnormal or 0 the term
// does too, −Inf gives 0 and NaN NaN.
func (g *gen) exp2Factors(x string, t []string, k exp2Consts) {
	m, f, p := t[0], t[1], t[2]
	g.exp2Split(x, m, f, k)
	g.I("VSCALEFPS %s, %s, %s", x, m, m)
	g.exp2Poly(f, p, k)
	g.I("VFMADD213PS %s, %s, %s", c("cOne"), f, p)
}

// exp2Split is AVX-512's split of x at ⌊32x⌋/32 (see exp2Sum): m =
// 2^(j/32) from the table and f = g, the rest.
func (g *gen) exp2Split(x, m, f string, k exp2Consts) {
	g.I("VADDPS.RD_SAE %s, %s, %s", k.magic, x, m)
	g.I("VREDUCEPS $%#x, %s, %s", reduceFloor32, x, f)
	g.I("VPERMI2PS %s, %s, %s", k.tab2, k.tab, m) // 2^(j/32): m's low five bits pick
}

// exp2Poly sets p to exp2Sum's polynomial in f, Σ k.p[i]·f^i, by Horner's
// rule.
func (g *gen) exp2Poly(f, p string, k exp2Consts) {
	g.I("VMOVUPS %s, %s", k.p[len(k.p)-1], p)
	for i := len(k.p) - 2; i >= 0; i-- {
		g.I("VFMADD213PS %s, %s, %s", k.p[i], f, p)
	}
}

// reduceFloor32 is VREDUCEPS's immediate for x − ⌊32x⌋/32: five fraction
// bits kept (bits 7:4), the precision exception suppressed (bit 3), the
// rounding mode from the immediate (bit 2 clear), and that mode down
// (bits 1:0 = 01), for the rounding to thirty-seconds and the subtraction.
const reduceFloor32 = 0x59

// expTabConsts says where expTab finds its constants: each a vector
// register or a memory operand.
type expTabConsts struct {
	lo, magic, tab, log2e, ln2Hi, ln2Lo, one string
	// tau, where set, is the table of the entries' rounding errors
	// (gtExp2Tau), which expTab then adds back.
	tau string
	q   []string // expT's coefficients, degree 0 up
}

// expTabConsts keeps expTab's constants in registers where r has them to
// spare, in order of need: lo, which VMAXPS needs in a register to return
// a NaN argument (or it is loaded into a temporary each time), and the
// table, which VPERMPS would otherwise load whole each time, first.
func (g *gen) expTabConsts(r *regs) expTabConsts {
	k := expTabMem()
	for _, s := range []*string{&k.lo, &k.tab, &k.magic, &k.q[1], &k.log2e, &k.ln2Hi, &k.ln2Lo, &k.q[0], &k.one} {
		if r.next >= r.g.regs {
			break
		}
		reg := r.v()
		g.I("VMOVUPS %s, %s", *s, reg)
		*s = reg
	}
	return k
}

// expTabTau is expTab's constants as memory operands, with the table's
// rounding errors.
func expTabTau() expTabConsts {
	k := expTabMem()
	k.tau = "·tGtExp2Tau(SB)"
	return k
}

// expTabMem is expTab's constants as memory operands.
func expTabMem() expTabConsts {
	return expTabConsts{lo: c("cExpLo"), magic: c("cGtMagic"), tab: "·tGtExp2(SB)", log2e: c("cLog2e"),
		ln2Hi: c("cLn2Hi"), ln2Lo: c("cLn2Lo"), one: c("cOne"), q: []string{ck("cExpT", 0), ck("cExpT", 1)}}
}

// expTab sets x = e^x for x below 88.7 (NaN and −Inf are fine) using
// three temporaries, as AVX-512's ExpShift: e^x = 2^(k/16)·e^r, k/16
// the multiple of 1/16 nearest x·log2e and r = x − (k/16)·ln 2 in [−ln2/32,
// ln2/32] (a little more with the roundings). Adding 1.5·2¹⁹ (gtMagic) to
// x·log2e in a fused multiply-add rounds it to sixteenths and leaves k in
// the sum's low bits, whose last four VPERMPS takes as j to pick 2^(j/16)
// (gtExp2T); the sum less gtMagic is k/16 exactly, whose products with
// ln2Hi (9 significant bits) are exact, so that r is reduced as exp32
// reduces its argument, with k/16 for n. e^r − 1 is r·(1 + r·Q(r)), Q of
// degree 1 (expT, 1.7e−9 relative over the whole), 2^(j/16)·e^r one fused
// multiply-add, and VSCALEFPS scales by 2^⌊k/16⌋, rounding once where the
// result is subnormal and overflowing to +Inf above 88.72. x is clamped
// at expLo below, as exp32 clamps it, where e^x rounds to 0: that keeps
// the reduction finite for −Inf. The table's entries are float32
// roundings of 2^(j/16), 4.7e−8 relative at most (0.4 of an ulp of the
// result), which with the final rounding bounds the error at 1.3 ulps or
// so; 0.98 measured at most (accuracy_test.go), against exp's 0.97 and
// the 2 the package doc states. Twelve instructions where exp takes
// fourteen, nine of them multiply-adds, here seven: ExpShiftNextMax
// measured about 15% faster on Zen 5, in cache and from memory.
//
// With k.tau (and a fourth temporary) the entry's rounding error τ_j =
// (2^(j/16) − T_j)/T_j, from a second table, is added to e^r − 1 in
// the multiply-add that forms it: T·(1 + (e^r − 1 + τ)) is 2^(j/16)·e^r
// but for τ·(e^r − 1), under 2⁻²⁹, and the rounding of the small sum,
// so that the result is within about 0.55 ulps (0.554 measured over
// every float32 in [0.1, 0.8], against 0.99 without). One VPERMPS more:
// the element-wise kernels take it, where Sigmoid and SiLU without it
// exceeded their 3 ulps (3.07 and 3.14 near x = −16.7, every float32 in
// [−18, −15]).
func (g *gen) expTab(x string, t []string, k expTabConsts) {
	m, tt, q := t[0], t[1], t[2]
	g.I("VMAXPS %s, %s, %s", x, g.inReg(k.lo, m), x) // NaN in x is returned
	g.I("VMOVUPS %s, %s", k.magic, m)
	g.I("VFMADD231PS %s, %s, %s", k.log2e, x, m) // x·log2e to 1/16, plus gtMagic
	g.I("VPERMPS %s, %s, %s", k.tab, m, tt)      // 2^(j/16)
	if k.tau != "" {
		g.I("VPERMPS %s, %s, %s", k.tau, m, t[3]) // τ_j
	}
	g.I("VSUBPS %s, %s, %s", k.magic, m, m) // k/16
	g.I("VFNMADD231PS %s, %s, %s", k.ln2Hi, m, x)
	g.I("VFNMADD231PS %s, %s, %s", k.ln2Lo, m, x) // r
	g.I("VMOVUPS %s, %s", k.q[1], q)
	g.I("VFMADD213PS %s, %s, %s", k.q[0], x, q)
	g.I("VFMADD213PS %s, %s, %s", k.one, x, q)
	if k.tau != "" {
		g.I("VFMADD213PS %s, %s, %s", t[3], x, q) // e^r − 1 + τ
	} else {
		g.I("VMULPS %s, %s, %s", x, q, q) // e^r − 1
	}
	g.I("VFMADD213PS %s, %s, %s", tt, tt, q) // 2^(j/16)·e^r
	g.I("VSCALEFPS %s, %s, %s", m, q, x)
}

// scale2n multiplies x by 2^n for the integral float32 n in register n
// (clobbered, as is t); with wide, results beyond the normal range
// overflow or go subnormal with one rounding.
func (g *gen) scale2n(x, n, t string, wide bool) {
	t0, t1 := n, t
	if g.wide() {
		// AVX-512 scales by 2^n in one instruction, overflowing to +Inf
		// and rounding subnormal results once, as the two steps do.
		g.I("VSCALEFPS %s, %s, %s", t0, x, x)
		return
	}
	g.I("VCVTPS2DQ %s, %s", t0, t0)
	if wide {
		g.I("VPSRAD $1, %s, %s", t0, t1)
		g.I("VPSUBD %s, %s, %s", t1, t0, t0)
		g.I("VPADDD %s, %s, %s", c("cI127"), t1, t1)
		g.I("VPSLLD $23, %s, %s", t1, t1)
		g.I("VMULPS %s, %s, %s", t1, x, x)
	}
	g.I("VPADDD %s, %s, %s", c("cI127"), t0, t0)
	g.I("VPSLLD $23, %s, %s", t0, t0)
	g.I("VMULPS %s, %s, %s", t0, x, x)
}

// log sets d = ln x using temporaries t[0..4] and mask m; see log32.
func (g *gen) log(x, d string, t []string, m string) {
	t0, t1, t2, t3, t4 := t[0], t[1], t[2], t[3], t[4]
	// Subnormals: scale by 2^23 and take 23 off the exponent.
	g.cmp(ltOS, c("cMinNormal"), x, m)
	g.I("VMULPS %s, %s, %s", c("cTwo23"), x, t0)
	g.blend(m, t0, x, t1)
	g.keep(m, c("c23"), t2)
	g.I("VPSUBD %s, %s, %s", c("cSqrtHalfBits"), t1, t3)
	g.I("VPSRAD $23, %s, %s", t3, t3) // e
	g.I("VPSLLD $23, %s, %s", t3, t4)
	g.I("VPSUBD %s, %s, %s", t4, t1, t1)
	g.I("VSUBPS %s, %s, %s", c("cOne"), t1, t1) // f
	g.I("VCVTDQ2PS %s, %s", t3, t3)
	g.I("VSUBPS %s, %s, %s", t2, t3, t3) // e − k
	g.horner("cLogL", 7, t1, t2)
	g.I("VFMADD213PS %s, %s, %s", c("cNegHalf"), t1, t2) // p·f − ½
	g.I("VMULPS %s, %s, %s", t1, t1, t4)
	g.I("VFMADD213PS %s, %s, %s", t1, t4, t2) // f²·(p·f − ½) + f
	g.I("VFMADD231PS %s, %s, %s", c("cLn2Lo"), t3, t2)
	g.I("VFMADD231PS %s, %s, %s", c("cLn2Hi"), t3, t2)
	// Special values: 0 → −Inf, negative or NaN → NaN, +Inf → +Inf.
	g.zero(t0)
	g.cmp(eqOQ, t0, x, m)
	g.blend(m, c("cNegInf"), t2, t2)
	g.cmp(ngeUS, t0, x, m)
	g.blend(m, c("cNaN"), t2, t2)
	g.cmp(eqOQ, c("cPosInf"), x, m)
	g.blend(m, c("cPosInf"), t2, d)
}

// tanh sets d = tanh x and, if dd is not empty, dd = 1 − tanh²x; it uses
// temporaries t[0..5] and mask m. See tanhParts.
func (g *gen) tanh(x, d, dd string, t []string, m string) {
	t0, t1, t2, t3, t4, t5 := t[0], t[1], t[2], t[3], t[4], t[5]
	g.and(c("cAbs"), x, t0) // a
	g.I("VADDPS %s, %s, %s", t0, t0, t1)
	g.exp(t1, []string{t2, t3, t4, t5}, expOpts{hi: true, wide: true}) // 2|x| ≥ 0
	g.I("VADDPS %s, %s, %s", c("cOne"), t1, t1)
	g.I("VMOVUPS %s, %s", c("cTwo"), t2)
	g.I("VDIVPS %s, %s, %s", t1, t2, t2) // q = 2/(e^{2a}+1)
	g.I("VMOVUPS %s, %s", c("cOne"), t1)
	g.I("VSUBPS %s, %s, %s", t2, t1, t1) // 1 − q
	g.and(c("cSign"), x, t3)
	g.or(t3, t1, t1) // large-|x| tanh
	if dd != "" {
		g.I("VMOVUPS %s, %s", c("cTwo"), t4)
		g.I("VSUBPS %s, %s, %s", t2, t4, t4)
		g.I("VMULPS %s, %s, %s", t2, t4, t4) // q·(2 − q)
	}
	g.I("VMULPS %s, %s, %s", x, x, t3) // u = x²
	g.horner("cTanhP", 5, t3, t2)
	g.I("VMULPS %s, %s, %s", t3, x, t3)
	g.I("VFMADD213PS %s, %s, %s", x, t3, t2) // small-|x| tanh
	g.cmp(ltOS, c("cTanhSmall"), t0, m)
	if dd != "" {
		g.I("VMOVUPS %s, %s", c("cOne"), t5)
		g.I("VFNMADD231PS %s, %s, %s", t2, t2, t5) // 1 − t²
		g.blend(m, t5, t4, dd)
	}
	g.blend(m, t2, t1, d)
}

// sigmoid sets r = 1/(1+e) and s0 = e·r for e = exp(−|x|), so that
// σ(x) = x ≥ 0 ? r : s0 and σ·(1−σ) = r·s0. It uses t[0..2], and t[3]
// on AVX-512 unless poly, which it passes to exp: SigmoidGrad needs the
// polynomial (see exp); SiLUGrad, whose worst error over every float32
// in [−14, −12] is 4.71 ulps of its 5 with the table (4.67 with the
// polynomial), takes the table.
func (g *gen) sigmoid(x, r, s0 string, t []string, poly bool) {
	g.or(c("cSign"), x, s0)                                 // −|x|
	g.exp(s0, t, expOpts{lo: true, wide: true, poly: poly}) // −|x| ≤ 0
	g.I("VADDPS %s, %s, %s", c("cOne"), s0, t[0])
	g.I("VMOVUPS %s, %s", c("cOne"), r)
	g.I("VDIVPS %s, %s, %s", t[0], r, r)
	g.I("VMULPS %s, %s, %s", r, s0, s0)
}

// sigmoidFwd sets d = num/(1 + exp(−x)), which is σ(x) for num = 1 and
// x·σ(x) (SiLU) for num = x; see sigmoid32. It uses t[0..3], and t[4]
// on AVX-512 (see exp). Below x = −88.7, exp(−x) overflows and the
// result is 0 (σ would be below 2⁻¹²⁶ there, and SiLU below 2.7e−37 in
// magnitude).
func (g *gen) sigmoidFwd(x, num, d string, t []string) {
	e := t[3]
	g.xor(c("cSign"), x, e) // −x
	g.exp(e, append([]string{t[0], t[1], t[2]}, t[4:]...), expFull)
	g.I("VADDPS %s, %s, %s", c("cOne"), e, e)
	if num == "" {
		g.I("VMOVUPS %s, %s", c("cOne"), d)
		g.I("VDIVPS %s, %s, %s", e, d, d)
		return
	}
	g.I("VDIVPS %s, %s, %s", e, num, d)
}

// sigmoidPick sets d = x ≥ 0 ? r : s0.
func (g *gen) sigmoidPick(x, r, s0, d, m string) {
	g.cmp(geOS, c("cZero"), x, m)
	g.blend(m, r, s0, d)
}

// pwRows is how many rows pwRows (kernels_amd64.go) makes of a pwPoly for
// AVX-512, each a register in its GELU kernels: its six coefficients, its
// scale, the rounding constant 1.5·2²³ and its max. AVX2 reads the
// pwRows8 rows that pwRows8 makes from memory: its eight coefficients,
// its scale and its max.
const (
	pwRows  = 9
	pwRows8 = 10
)

// pwTail sets p = P(a) for a pwPoly (math32.go), a = |x| (NaN passes),
// and m to the lanes where a ≤ max or a is NaN; with zero, p is 0 in the
// others, and anything otherwise (the caller masks it). For AVX-512 tab
// holds the registers of its pwRows: a·scale + 1.5·2²³ rounded down (a
// fused multiply-add with an embedded rounding, which stays on Zen 5's
// multiply-add pipes) leaves the interval's number i in the sum's low
// bits, which VPERMPS takes to fetch the interval's coefficients, and the
// sum less 1.5·2²³ is i. AVX2 reads the rows of pwRows8 from sym in memory
// and truncates a·scale to i (a conversion, which takes a rounded
// product: where the product rounds up to the next integer, v below is a
// rounding's width below 0, where the polynomial is as good). Then v =
// a·scale − i, rounded once. f, v and t are temporaries; t may be a,
// which is not read after v is formed. AVX-512 takes 16 operations a
// vector (six permutes, seven multiply-adds, a subtraction, a compare and
// a copy), AVX2 20 (eight permutes, eight multiply-adds, a multiply, two
// conversions and a compare; with zero, an AND more): GELU's loop is 19
// operations a vector on AVX-512 and 25 on AVX2 where e^{−x²/2} and Φ's
// table made it 36 and 44. See the package doc on the accuracy this
// trades.
func (g *gen) pwTail(a, p, f, v, t, m string, tab []string, sym string, zero bool) {
	var coef []string
	if g.wide() {
		coef = tab[:pwRows-3]
		scale, magic, hi := tab[pwRows-3], tab[pwRows-2], tab[pwRows-1]
		g.cmp(ngtUS, hi, a, m)
		g.I("VMOVAPS %s, %s", a, f)
		g.I("VFMADD213PS.RD_SAE %s, %s, %s", magic, scale, f) // i in the low bits
		g.I("VSUBPS %s, %s, %s", magic, f, v)                 // i
		g.I("VFMSUB231PS %s, %s, %s", scale, a, v)            // a·scale − i
	} else {
		row := func(k int) string { return fmt.Sprintf("%s+%d(SB)", sym, 32*k) }
		for k := range pwRows8 - 2 {
			coef = append(coef, row(k))
		}
		scale, hi := row(pwRows8-2), row(pwRows8-1)
		g.cmp(ngtUS, hi, a, m)
		g.I("VMULPS %s, %s, %s", scale, a, f)
		g.I("VCVTTPS2DQ %s, %s", f, f) // i, which VPERMPS takes mod 8
		g.I("VCVTDQ2PS %s, %s", f, v)
		g.I("VFMSUB231PS %s, %s, %s", scale, a, v) // a·scale − i
	}
	last := len(coef) - 1
	g.I("VPERMPS %s, %s, %s", coef[last], f, p)
	for k := last - 1; k >= 0; k-- {
		g.I("VPERMPS %s, %s, %s", coef[k], f, t)
		if k == 0 && zero && g.wide() {
			g.I("VFMADD213PS.Z %s, %s, %s, %s", t, v, m, p)
			continue
		}
		g.I("VFMADD213PS %s, %s, %s", t, v, p)
	}
	if zero && !g.wide() {
		g.I("VANDPS %s, %s, %s", m, p, p)
	}
}

// pwGELU sets d = max(x, 0) − |x|·P(|x|) for the tail part P of a GELU
// (Φ(−a) for GELU, σ(−y(a)) for its tanh approximation), with P taken
// as 0 beyond its max (then d is x or 0, ±Inf included); tab and sym
// are pwTail's, t[0..4] temporaries and m a mask.
func (g *gen) pwGELU(x, d string, t []string, m string, tab []string, sym string) {
	a, p := t[0], t[1]
	g.and(c("cAbs"), x, a)
	g.pwTail(a, p, t[2], t[3], t[4], m, tab, sym, !g.wide())
	g.I("VMAXPS %s, %s, %s", c("cZero"), x, d)
	if g.wide() {
		g.I("VFNMADD231PS %s, %s, %s, %s", a, p, m, d) // merge-masked
		return
	}
	g.I("VANDPS %s, %s, %s", a, m, a) // |x|·0 beyond max, not ∞·0
	g.I("VFNMADD231PS %s, %s, %s", a, p, d)
}

// pwGELUGrad sets d = dy·D for a GELU's derivative, D = P(|x|) below 0
// and 1 − P(|x|) from 0 on (−0 included) for P its pwPoly's function
// (Φ(−a) − a·φ(a) for GELU), P taken as 0 beyond its max; tab and sym
// are pwTail's, t[0..3] temporaries and m[0..1] masks (AVX2 needs only
// m[0]).
func (g *gen) pwGELUGrad(x, dy, d string, t, m []string, tab []string, sym string) {
	a, p, f, v := t[0], t[1], t[2], t[3]
	g.and(c("cAbs"), x, a)
	g.pwTail(a, p, f, v, a, m[0], tab, sym, true)
	one := v
	g.I("VMOVUPS %s, %s", c("cOne"), one)
	if g.wide() {
		g.cmp(geOS, c("cZero"), x, m[1])
		g.I("VSUBPS %s, %s, %s, %s", p, one, m[1], p) // 1 − P from 0 on
		g.I("VMULPS %s, %s, %s", dy, p, d)
		return
	}
	g.cmp(geOS, c("cZero"), x, f)
	g.I("VSUBPS %s, %s, %s", p, one, one) // 1 − P
	g.blend(f, one, p, d)
	g.I("VMULPS %s, %s, %s", dy, d, d)
}

// ---- element-wise maps ----

// mapK is an element-wise kernel dst[i] = body(ins[i]..., scalars).
type mapK struct {
	name string
	ins  []string // input slices after dst
	// updates are slices after ins that body reads and writes in place:
	// they come after ins in in[], and are stored back from there (with
	// ordinary stores: they are small and read again soon).
	updates []string
	scalars []string // float32 arguments, broadcast
	// tabRows rows of the table tab stay in registers through the loop
	// (AVX-512 only), after the scalars in body's s[].
	tabRows int
	tab     string
	temps   int
	// temps512, if set, is the number of temporaries AVX-512 needs
	// instead of temps (t[temps512:] are then absent).
	temps512 int
	masks    int
	// masks512 more masks are there for AVX-512 only (opmask registers,
	// which AVX2 would have to take from the vector registers), as
	// m[masks:].
	masks512 int
	unroll   int
	// body computes out from the loaded inputs in[], the broadcast
	// scalars s[], temporaries t[] and masks m[]; out is a register of its
	// own.
	body func(g *gen, out string, in, s, t, m []string)
}

// frame lays out Go arguments for ABI0: each aligned to its size, results
// after the arguments aligned to 8. It returns each one's offset, the
// size of the arguments and the size of the whole frame.
type param struct {
	name string
	size int
	typ  string
}

func frame(args, results []param) (offs map[string]int, argSize, total int) {
	offs = map[string]int{}
	o := 0
	for _, a := range args {
		o = (o + a.size - 1) / a.size * a.size
		offs[a.name] = o
		o += a.size
	}
	o = (o + 7) / 8 * 8
	argSize = o
	for _, r := range results {
		o = (o + r.size - 1) / r.size * r.size
		offs[r.name] = o
		o += r.size
	}
	return offs, argSize, o
}

var ptrRegs = []string{"DI", "SI", "DX", "R8", "R9", "R10", "R11", "R12"}

// stubs collects the Go declarations of the generated functions.
var stubs bytes.Buffer

// fields maps a kernel's field in asmFuncs to its Go type and, per
// instruction set, its value.
var (
	fieldOrder []string
	fieldType  = map[string]string{}
	fieldValue = map[string]map[string][]string{} // field → isa → functions
)

// table records fn (of instruction set is) under field.
func table(field, is, fn string, args, results []param) {
	var a, r []string
	for _, p := range args {
		a = append(a, p.typ)
	}
	for _, p := range results {
		r = append(r, p.typ)
	}
	typ := "func(" + strings.Join(a, ", ") + ")"
	if len(r) == 1 {
		typ += " " + r[0]
	} else if len(r) > 1 {
		typ += " (" + strings.Join(r, ", ") + ")"
	}
	if _, ok := fieldType[field]; !ok {
		fieldOrder = append(fieldOrder, field)
		fieldType[field] = typ
		fieldValue[field] = map[string][]string{}
	}
	fieldValue[field][is] = append(fieldValue[field][is], fn)
}

func declare(name, doc string, args, results []param) {
	var a, r []string
	for _, p := range args {
		a = append(a, p.name+" "+p.typ)
	}
	for _, p := range results {
		r = append(r, p.name+" "+p.typ)
	}
	res := ""
	if len(r) > 0 {
		res = " (" + strings.Join(r, ", ") + ")"
	}
	fmt.Fprintf(&stubs, "// %s\n//\n//go:noescape\nfunc %s(%s)%s\n\n", doc, name, strings.Join(a, ", "), res)
}

// regs hands out vector registers, and AVX-512 opmask registers from K2
// on (K1 is the tail mask), in order.
type regs struct {
	g     *gen
	next  int
	nextK int
}

func (r *regs) v() string {
	if r.next >= r.g.regs {
		panic("out of vector registers")
	}
	s := r.g.V(r.next)
	r.next++
	return s
}

func (r *regs) vs(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, r.v())
	}
	return out
}

// masks returns n body masks: vector registers for AVX2, K2.. for AVX-512
// (K1 is the tail mask).
func (r *regs) masks(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		if r.g.wide() {
			if r.nextK+2 > 7 {
				panic("out of opmask registers")
			}
			out = append(out, fmt.Sprintf("K%d", 2+r.nextK))
			r.nextK++
		} else {
			out = append(out, r.v())
		}
	}
	return out
}

// tailMask sets up the tail mask for the CX (< lanes) remaining elements:
// register tm (AVX2) or K1 (AVX-512).
func (g *gen) tailMask(tm string) {
	if g.wide() {
		g.I("MOVL $1, AX")
		g.I("SHLL CX, AX")
		g.I("DECL AX")
		g.I("KMOVW AX, K1")
		return
	}
	g.I("LEAQ maskTail<>+32(SB), BX")
	g.I("MOVQ CX, AX")
	g.I("SHLQ $2, AX")
	g.I("SUBQ AX, BX")
	g.I("VMOVDQU (BX), %s", tm)
}

// loadMasked loads the first CX lanes of mem into d, zeroing the rest.
func (g *gen) loadMasked(mem, tm, d string) {
	if g.wide() {
		g.I("VMOVUPS.Z %s, K1, %s", mem, d)
	} else {
		g.I("VMASKMOVPS %s, %s, %s", mem, tm, d)
	}
}

// storeMasked stores the first CX lanes of s to mem.
func (g *gen) storeMasked(s, tm, mem string) {
	if g.wide() {
		g.I("VMOVUPS %s, K1, %s", s, mem)
	} else {
		g.I("VMASKMOVPS %s, %s, %s", s, tm, mem)
	}
}

// constOperand matches a constant operand: a ·c… vector as c and ck
// write it, or a ·t… table.
var constOperand = regexp.MustCompile(`·[ct][A-Za-z0-9]+(\+[0-9]+)?\(SB\)`)

// keepConsts loads the constants that body reads into up to spare
// registers from r, tables and then the most read first, and has g.I
// read those registers in their place until the returned function is
// called. body is only written to find the constants, and its text
// thrown away. With their constants in registers, where each was a
// broadcast operand (a load) before, and the clamps' copies of them gone,
// the element-wise kernels took less time in the L2 cache on Zen 5:
// Exp's 19% less, Sigmoid's 8%, SiLU's 6%, TanhGrad's 5%, Tanh's 3%,
// SiLUGrad's 2%; GELU's, whose table was in registers already, within 1%.
func (g *gen) keepConsts(r *regs, spare int, body func()) (release func()) {
	out := g.b
	var scratch bytes.Buffer
	g.b = &scratch
	body()
	g.b = out
	uses := map[string]int{}
	var names []string
	for _, m := range constOperand.FindAllString(scratch.String(), -1) {
		if uses[m] == 0 {
			names = append(names, m)
		}
		uses[m]++
	}
	// Tables first: they are whole vectors, loaded where a broadcast
	// reads one float, and may straddle two cache lines.
	table := func(o string) int {
		if strings.HasPrefix(o, "·t") {
			return 1
		}
		return 0
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := table(b) - table(a); d != 0 {
			return d
		}
		if d := uses[b] - uses[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	consts := map[string]string{}
	for _, name := range names[:min(spare, len(names))] {
		reg := r.v()
		g.I("VMOVUPS %s, %s", name, reg)
		consts[name] = reg
	}
	g.consts = consts
	return func() { g.consts = nil }
}

// kept returns the register that holds constant operand o (see
// keepConsts), or o itself where none does.
func (g *gen) kept(o string) string {
	if reg, ok := g.consts[o]; ok {
		return reg
	}
	return o
}

// inReg returns a register holding operand o: the one keepConsts put it
// in, o itself if it is a register, or t after loading it there.
func (g *gen) inReg(o, t string) string {
	o = g.kept(o)
	if strings.HasPrefix(o, "·") {
		g.I("VMOVUPS %s, %s", o, t)
		return t
	}
	return o
}

// interleave emits body(0..n−1), merging their instructions round-robin
// (the bodies are the same code on different registers, so they have the
// same length).
func (g *gen) interleave(n int, body func(u int)) {
	out := g.b
	var lines [][]string
	for u := 0; u < n; u++ {
		var buf bytes.Buffer
		g.b = &buf
		body(u)
		lines = append(lines, strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"))
	}
	g.b = out
	for i := range lines[0] {
		for u := range lines {
			if len(lines[u]) != len(lines[0]) {
				panic("interleave: bodies of different lengths")
			}
			fmt.Fprintln(out, lines[u][i])
		}
	}
}

func (g *gen) mapKernel(k mapK, nt bool) {
	name := k.name + g.suffix
	if nt {
		name += "NT"
	}
	args := []param{{"dst", 8, "*float32"}}
	ins := append(append([]string{}, k.ins...), k.updates...)
	for _, in := range ins {
		args = append(args, param{in, 8, "*float32"})
	}
	for _, s := range k.scalars {
		args = append(args, param{s, 4, "float32"})
	}
	args = append(args, param{"n", 8, "int"})
	offs, argSize, _ := frame(args, nil)
	doc := fmt.Sprintf("%s is the %s %s kernel", name, g.suffix, k.name)
	if nt {
		doc += " with non-temporal stores, not fenced; dst must be aligned to the vector size"
	}
	declare(name, doc+".", args, nil)
	table(k.name, g.suffix, name, args, nil)

	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, name, argSize)
	g.I("MOVQ dst+0(FP), DI")
	ptrs := []string{"DI"}
	for i, in := range ins {
		g.I("MOVQ %s+%d(FP), %s", in, offs[in], ptrRegs[i+1])
		ptrs = append(ptrs, ptrRegs[i+1])
	}
	g.I("MOVQ n+%d(FP), CX", offs["n"])
	r := &regs{g: g}
	var sc []string
	for _, s := range k.scalars {
		v := r.v()
		g.I("VBROADCASTSS %s+%d(FP), %s", s, offs[s], v)
		sc = append(sc, v)
	}
	if g.wide() {
		if k.tabRows > 0 && k.tab == "" {
			panic(k.name + ": tabRows without a table")
		}
		for j := 0; j < k.tabRows; j++ {
			v := r.v()
			g.I("VMOVUPS ·%s+%d(SB), %s", k.tab, 64*j, v)
			sc = append(sc, v)
		}
	}
	tm := ""
	if !g.wide() {
		tm = r.v()
	}
	type copyRegs struct {
		out      string
		in, t, m []string
	}
	// Unroll as asked, or as far as the registers go.
	temps := k.temps
	if g.wide() && k.temps512 > 0 {
		temps = k.temps512
	}
	per := 1 + len(ins) + temps
	if !g.wide() {
		per += k.masks
	}
	unroll := min(k.unroll, (g.regs-r.next)/per)
	masks := k.masks
	if g.wide() {
		masks += k.masks512
	}
	var cp []copyRegs
	for u := 0; u < unroll; u++ {
		cp = append(cp, copyRegs{r.v(), r.vs(len(ins)), r.vs(temps), r.masks(masks)})
	}
	if g.wide() {
		x := cp[0]
		defer g.keepConsts(r, g.regs-r.next, func() { k.body(g, x.out, x.in, sc, x.t, x.m) })()
	}
	L, B := g.lanes, g.bytes()
	store := "VMOVUPS"
	if nt {
		store = "VMOVNTPS"
	}
	step := func(n int) {
		for _, p := range ptrs {
			g.I("ADDQ $%d, %s", n*B, p)
		}
		g.I("SUBQ $%d, CX", n*L)
	}
	if unroll > 1 {
		g.I("CMPQ CX, $%d", unroll*L)
		g.I("JB one")
		g.label("loop")
		for u, x := range cp {
			for i, in := range x.in {
				g.I("VMOVUPS %d(%s), %s", u*B, ptrs[i+1], in)
			}
		}
		// The copies' bodies are interleaved instruction by instruction,
		// so that the out-of-order core sees independent work side by
		// side rather than one long dependency chain after another.
		g.interleave(len(cp), func(u int) { x := cp[u]; k.body(g, x.out, x.in, sc, x.t, x.m) })
		for u, x := range cp {
			g.I("%s %s, %d(DI)", store, x.out, u*B)
			for i, in := range x.in[len(k.ins):] {
				g.I("VMOVUPS %s, %d(%s)", in, u*B, ptrs[len(k.ins)+1+i])
			}
		}
		step(unroll)
		g.I("CMPQ CX, $%d", unroll*L)
		g.I("JAE loop")
	}
	x := cp[0]
	g.label("one")
	g.I("CMPQ CX, $%d", L)
	g.I("JB tail")
	for i, in := range x.in {
		g.I("VMOVUPS (%s), %s", ptrs[i+1], in)
	}
	k.body(g, x.out, x.in, sc, x.t, x.m)
	g.I("%s %s, (DI)", store, x.out)
	for i, in := range x.in[len(k.ins):] {
		g.I("VMOVUPS %s, (%s)", in, ptrs[len(k.ins)+1+i])
	}
	step(1)
	g.I("JMP one")
	g.label("tail")
	g.I("TESTQ CX, CX")
	g.I("JZ done")
	g.tailMask(tm)
	for i, in := range x.in {
		g.loadMasked(fmt.Sprintf("(%s)", ptrs[i+1]), tm, in)
	}
	k.body(g, x.out, x.in, sc, x.t, x.m)
	g.storeMasked(x.out, tm, "(DI)")
	for i, in := range x.in[len(k.ins):] {
		g.storeMasked(in, tm, fmt.Sprintf("(%s)", ptrs[len(k.ins)+1+i]))
	}
	g.label("done")
	g.I("VZEROUPPER")
	g.I("RET")
}

// ---- float64 row kernels ----

// stream modes of a row kernel's slices.
const (
	in32    = iota // float32 input
	out32          // float32 output
	inout32        // float32 input and output
	acc64          // float64 accumulators, read and written
	// acc32 is float32 accumulators, read and written: a fused stream
	// (see rowK's pre), which pre updates in float32 and the kernel
	// stores back.
	acc32
)

type stream struct {
	name string
	mode int
}

// half is what a row kernel's body sees for one float64 half of a vector.
type half struct {
	in  map[string]string // float32 inputs (and in/outs), widened
	out map[string]string // registers to leave float32 outputs in
	acc map[string]string // float64 accumulators, loaded; update in place
	red []string          // this half's reduction accumulators
	c   func(k int) string
	t   []string
	// tail is, in the last partial vector, the mask of this half's live
	// lanes (empty elsewhere): reductions whose terms are not 0 for the
	// zeros loaded past the end must clear those lanes (see keep64).
	tail string
}

// keep64 clears the float64 lanes of r outside the tail mask, if any.
func (g *gen) keep64(h half, r string) {
	if h.tail == "" {
		return
	}
	if g.wide() {
		g.I("VMOVAPD.Z %s, %s, %s", r, h.tail, r)
	} else {
		g.I("VANDPD %s, %s, %s", h.tail, r, r)
	}
}

type rowK struct {
	name    string
	doc     string
	streams []stream
	// ahead names the input streams that an AVX-512 statistics kernel's
	// twin for rows outside the cache (the streaming sets') asks for
	// nextPrefetch bytes ahead, one PREFETCHT0 a vector: the norm
	// gradients' first pass, whose loads of x and dy miss the cache at
	// every 4 KB page the hardware prefetchers stop at.
	ahead   []string
	scalars []string // float64, passed splatted through c
	results []string // float64 sums returned
	temps   int
	body    func(g *gen, h half)
	// pre, if set, runs float32 arithmetic on whole vectors before
	// widening: it reads the float32 registers f of the streams in fused
	// (which are not widened themselves) and leaves its result in
	// f[fused[0]], which the body sees widened as in[preOut]. Widening is
	// the costliest step of these kernels (VCVTPS2PD issues about once a
	// cycle), so a product taken in float32 saves one.
	pre    func(g *gen, f map[string]string)
	fused  []string
	preOut string
	// wideOnly leaves the kernel out of AVX2, whose sixteen registers
	// cannot hold it (its Kernels field is nil there).
	wideOnly bool
}

func (k rowK) isFused(name string) bool { return slices.Contains(k.fused, name) }

// widen sets d to float64 half hi (0 or 1) of the float32 vector s, using
// the half-width temporary t (which may be d).
func (g *gen) widen(s string, hi int, d, t string) {
	if hi == 0 {
		g.I("VCVTPS2PD %s, %s", g.half(s), d)
		return
	}
	g.extractHigh(s, t)
	g.I("VCVTPS2PD %s, %s", g.half(t), d)
}

func (g *gen) extractHigh(s, t string) {
	if g.wide() {
		g.I("VEXTRACTF64X4 $1, %s, %s", s, g.half(t))
	} else {
		g.I("VEXTRACTF128 $1, %s, %s", s, g.half(t))
	}
}

// narrow rounds the float64 vector s to float32 half hi of d, using t.
// With keep it leaves the other half of d as it was (in the tail, an
// in/out stream's input still waits there); without, the low half is
// written directly, clearing the high half, which must come after.
func (g *gen) narrow(s string, hi int, d, t string, keep bool) {
	if hi == 0 && !keep {
		if g.wide() {
			g.I("VCVTPD2PS %s, %s", s, g.half(d))
		} else {
			g.I("VCVTPD2PSY %s, %s", s, g.half(d))
		}
		return
	}
	if g.wide() {
		g.I("VCVTPD2PS %s, %s", s, g.half(t))
		g.I("VINSERTF64X4 $%d, %s, %s, %s", hi, g.half(t), d, d)
	} else {
		g.I("VCVTPD2PSY %s, %s", s, g.half(t))
		g.I("VINSERTF128 $%d, %s, %s, %s", hi, g.half(t), d, d)
	}
}

// hsum adds the float64 lanes of s into the low lane, using t.
func (g *gen) hsum(s, t string) {
	x := s
	if g.wide() {
		g.I("VEXTRACTF64X4 $1, %s, %s", s, g.half(t))
		g.I("VADDPD %s, %s, %s", g.half(t), g.half(s), g.half(s))
		x = g.half(s)
	}
	// x is a YMM register now.
	xx, tx := "X"+x[1:], "X"+t[1:]
	g.I("VEXTRACTF128 $1, %s, %s", x, tx)
	g.I("VADDPD %s, %s, %s", tx, xx, xx)
	g.I("VPERMILPD $1, %s, %s", xx, tx)
	g.I("VADDSD %s, %s, %s", tx, xx, xx)
}

// hmax sets lane 0 of s (XMM form) to the maximum of s's float32 lanes,
// using t as a temporary, as hsum does for float64 sums.
func (g *gen) hmax(s, t string) {
	x := s
	if g.wide() {
		g.extractHigh(s, t)
		g.I("VMAXPS %s, %s, %s", g.half(t), g.half(s), g.half(s))
		x = g.half(s)
	}
	xx, tx := "X"+x[1:], "X"+t[1:]
	g.I("VEXTRACTF128 $1, %s, %s", x, tx)
	g.I("VMAXPS %s, %s, %s", tx, xx, xx)
	g.I("VPERMILPS $0x4e, %s, %s", xx, tx)
	g.I("VMAXPS %s, %s, %s", tx, xx, xx)
	g.I("VPERMILPS $0xb1, %s, %s", xx, tx)
	g.I("VMAXPS %s, %s, %s", tx, xx, xx)
}

// streaming reports whether a row kernel has a float32 output only written,
// which a streaming variant can write with non-temporal stores.
func (k rowK) streaming() bool {
	out := false
	for _, s := range k.streams {
		if s.mode == inout32 {
			return false
		}
		out = out || s.mode == out32
	}
	return out
}

func (g *gen) rowKernel(k rowK, nt bool) {
	name := k.name + g.suffix
	ahead := nt && !k.streaming()
	switch {
	case ahead:
		name += "Ahead"
	case nt:
		name += "NT"
	}
	var args, results []param
	for _, s := range k.streams {
		typ := "*float32"
		if s.mode == acc64 {
			typ = "*float64"
		}
		args = append(args, param{s.name, 8, typ})
	}
	for _, sc := range k.scalars {
		args = append(args, param{sc, 8, "float64"})
	}
	args = append(args, param{"n", 8, "int"})
	for _, r := range k.results {
		results = append(results, param{r, 8, "float64"})
	}
	offs, _, total := frame(args, results)
	doc := fmt.Sprintf("%s is the %s kernel of %s", name, g.suffix, k.doc)
	switch {
	case ahead:
		doc += " that prefetches its rows ahead, for rows outside the cache"
	case nt:
		doc += ", with non-temporal stores, not fenced; the output must be aligned to the vector size"
	}
	declare(name, doc, args, results)
	table(k.name, g.suffix, name, args, results)

	// AVX-512 reads the float64 scalars from the arguments, broadcast
	// (.BCST). AVX2 has no broadcast operands: it splats them into the
	// local frame, 32 bytes each at a 32-byte aligned address (R13), so
	// that no load straddles two cache lines.
	frameSize := 0
	if !g.wide() && len(k.scalars) > 0 {
		frameSize = 32*len(k.scalars) + 32
	}
	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $%d-%d\n", name, name, frameSize, total)
	ptr := map[string]string{}
	for i, s := range k.streams {
		ptr[s.name] = ptrRegs[i]
		g.I("MOVQ %s+%d(FP), %s", s.name, offs[s.name], ptrRegs[i])
	}
	g.I("MOVQ n+%d(FP), CX", offs["n"])
	r := &regs{g: g}
	if frameSize > 0 {
		g.I("LEAQ 31(SP), R13")
		g.I("ANDQ $~31, R13")
		for j, sc := range k.scalars {
			g.I("VBROADCASTSD %s+%d(FP), %s", sc, offs[sc], g.V(0))
			g.I("VMOVUPD %s, %d(R13)", g.V(0), 32*j)
		}
	}
	tm := ""
	var tm64 [2]string
	if !g.wide() {
		tm = r.v()
		tm64 = [2]string{r.v(), r.v()}
	}
	// Reduction accumulators: one per result and half.
	red := g.accumulators(r, len(k.results))
	f32 := map[string]string{} // full float32 vectors of inputs (tail) and outputs
	for _, s := range k.streams {
		if s.mode == acc32 && !k.isFused(s.name) {
			// Only fused streams are loaded whole; pre updates acc32.
			panic("rowKernel: " + k.name + "'s float32 accumulator " + s.name + " is not fused")
		}
		if s.mode != acc64 {
			f32[s.name] = r.v()
		}
	}
	wid := map[string]string{} // widened halves of inputs
	accr := map[string]string{}
	outr := map[string]string{}
	if k.pre != nil {
		wid[k.preOut] = r.v()
	}
	for _, s := range k.streams {
		switch s.mode {
		case in32:
			if k.isFused(s.name) {
				continue
			}
			wid[s.name] = r.v()
		case out32:
			outr[s.name] = r.v()
		case inout32:
			wid[s.name] = r.v()
			outr[s.name] = wid[s.name]
		case acc64:
			accr[s.name] = r.v()
		}
	}
	// tmp serves narrowing; kernels without float32 outputs do without.
	tmp := ""
	for _, s := range k.streams {
		if s.mode == out32 || s.mode == inout32 {
			tmp = r.v()
			break
		}
	}
	ts := r.vs(k.temps)
	cf := func(j int) string {
		if g.wide() {
			return fmt.Sprintf("%s+%d(FP)", k.scalars[j], offs[k.scalars[j]])
		}
		return fmt.Sprintf("%d(R13)", 32*j)
	}
	L, B := g.lanes, g.bytes()
	// A kernel that only reduces takes two vectors a step, into two sets
	// of accumulators, where the registers allow: one vector a step
	// waits on the latency of its float64 additions (Sum, SumSquares,
	// SumsAbout), where the widening would let it go twice as fast.
	sets := [][2][]string{red}
	if k.reducesOnly() && r.next+2*len(k.results) <= g.regs {
		sets = append(sets, g.accumulators(r, len(k.results)))
	}

	// iter computes one vector at byte offset off from the streams'
	// pointers, reducing into the accumulators red.
	var prefetched []string // the streams whose rows it fetches ahead
	if ahead {
		prefetched = k.ahead
	}
	iter := func(masked bool, off int, red [2][]string) {
		g.reduceStart(k, masked, off, ptr, f32, tm, prefetched)
		// With an in/out stream the high half goes first: narrowing it
		// leaves the low half of the stream's register, still to be
		// widened in the tail, untouched.
		halves, keep := []int{0, 1}, false
		for _, s := range k.streams {
			if s.mode == inout32 {
				halves, keep = []int{1, 0}, true
			}
		}
		for _, h := range halves {
			for _, s := range k.streams {
				if s.mode != in32 && s.mode != inout32 || k.isFused(s.name) {
					continue
				}
				if masked {
					g.widen(f32[s.name], h, wid[s.name], wid[s.name])
				} else {
					cvtMem := fmt.Sprintf("%d(%s)", off+h*B/2, ptr[s.name])
					g.I("VCVTPS2PD %s, %s", cvtMem, wid[s.name])
				}
			}
			if k.pre != nil {
				g.widen(f32[k.fused[0]], h, wid[k.preOut], wid[k.preOut])
			}
			for _, s := range k.streams {
				if s.mode != acc64 {
					continue
				}
				mem := fmt.Sprintf("%d(%s)", h*B, ptr[s.name])
				if masked {
					g.accMasked(true, mem, h, tm64, accr[s.name])
				} else {
					g.I("VMOVUPD %s, %s", mem, accr[s.name])
				}
			}
			tail := ""
			if masked {
				tail = tm64[h]
				if g.wide() {
					tail = [2]string{"K1", "K7"}[h]
				}
			}
			k.body(g, half{in: wid, out: outr, acc: accr, red: red[h], c: cf, t: ts, tail: tail})
			for _, s := range k.streams {
				if s.mode == acc64 {
					mem := fmt.Sprintf("%d(%s)", h*B, ptr[s.name])
					if masked {
						g.accMasked(false, mem, h, tm64, accr[s.name])
					} else {
						g.I("VMOVUPD %s, %s", accr[s.name], mem)
					}
				}
				if s.mode == out32 || s.mode == inout32 {
					g.narrow(outr[s.name], h, f32[s.name], tmp, keep)
				}
			}
		}
		for _, s := range k.streams {
			if s.mode == out32 || s.mode == inout32 {
				switch {
				case masked:
					g.storeMasked(f32[s.name], tm, fmt.Sprintf("(%s)", ptr[s.name]))
				case nt:
					g.I("VMOVNTPS %s, (%s)", f32[s.name], ptr[s.name])
				default:
					g.I("VMOVUPS %s, (%s)", f32[s.name], ptr[s.name])
				}
			}
		}
	}

	if len(sets) > 1 {
		g.label("pairs")
		g.I("CMPQ CX, $%d", 2*L)
		g.I("JB loop")
		iter(false, 0, sets[0])
		iter(false, B, sets[1])
		for _, s := range k.streams {
			g.I("ADDQ $%d, %s", 2*B, ptr[s.name])
		}
		g.I("SUBQ $%d, CX", 2*L)
		g.I("JMP pairs")
	}
	g.label("loop")
	g.I("CMPQ CX, $%d", L)
	g.I("JB tail")
	iter(false, 0, red)
	for _, s := range k.streams {
		n := B
		if s.mode == acc64 {
			n = 2 * B
		}
		g.I("ADDQ $%d, %s", n, ptr[s.name])
	}
	g.I("SUBQ $%d, CX", L)
	g.I("JMP loop")
	g.label("tail")
	g.I("TESTQ CX, CX")
	g.I("JZ done")
	g.tailMask(tm)
	if !g.wide() && (hasAcc(k) || len(k.results) > 0) {
		// Sign-extend the dword lane mask to qword masks per half.
		g.I("VPMOVSXDQ %s, %s", g.half(tm), tm64[0])
		g.I("VEXTRACTI128 $1, %s, %s", tm, g.half(tm64[1]))
		g.I("VPMOVSXDQ %s, %s", g.half(tm64[1]), tm64[1])
	}
	if g.wide() && (hasAcc(k) || len(k.results) > 0) {
		g.I("KSHIFTRW $8, K1, K7")
	}
	iter(true, 0, red)
	g.label("done")
	g.storeSums(sets, k.results, offs)
	g.I("VZEROUPPER")
	g.I("RET")
}

// accumulators returns n zeroed float64 accumulators per half of a vector,
// n·2 registers from r, allocated result by result.
func (g *gen) accumulators(r *regs, n int) [2][]string {
	var acc [2][]string
	for range n {
		for h := range 2 {
			v := r.v()
			g.zero(v)
			acc[h] = append(acc[h], v)
		}
	}
	return acc
}

// storeSums adds the sets of accumulators into the first (set by set,
// half by half, result by result), then each result's two halves and
// their lanes, and stores result i at its name in offs. rowKernel and
// nextKernel share it so that their sums agree bit for bit.
func (g *gen) storeSums(sets [][2][]string, results []string, offs map[string]int) {
	red := sets[0]
	for _, set := range sets[1:] {
		for h := range 2 {
			for i := range results {
				g.I("VADDPD %s, %s, %s", set[h][i], red[h][i], red[h][i])
			}
		}
	}
	for i, res := range results {
		g.I("VADDPD %s, %s, %s", red[1][i], red[0][i], red[0][i])
		g.hsum(red[0][i], red[1][i]) // free once added in
		g.I("VMOVSD X%s, %s+%d(FP)", red[0][i][1:], res, offs[res])
	}
}

// nexts pairs each row step of the norms and their gradients (and of the
// softmax's gradient) with the statistics kernel the step of the next row
// needs: nextKernel fuses the two into one pass. The gradients' fused
// kernels first measured no faster than their two passes with the next
// row prefetched (fifteenth session: 42–45 GB/s either way, 4M floats in
// rows of 1024, one thread); with the next row's loads and sums ahead of
// the row's step in the loop they are (see nextKernel, and
// docs/cpu-row-kernels.md).
var nexts = []nextPair{
	{step: "scaleMul", red: "sumSquares"},
	{step: "normalize", red: "sumsAbout"},
	{step: "normalizeShift", red: "sumsAbout"},
	// The norm gradients' output passes (with the weight's partial sums
	// or without, for frozen weights) and the next row's statistics; the
	// weight is the step's own.
	{step: "rmsNormGrad", red: "sumSquaresDot3", shared: map[string]string{"a": "w"}},
	{step: "rmsNormGradAcc", red: "sumSquaresDot3", shared: map[string]string{"a": "w"}},
	{step: "layerNormGrad", red: "layerNormGradStats", shared: map[string]string{"w": "w"}},
	// With accG in the step and accB in the statistics (as the op's two
	// passes have them).
	{step: "layerNormGradAccG", red: "layerNormGradStatsAcc", shared: map[string]string{"w": "w"}},
	// The softmax's gradient and the next row's Σ y·dy.
	{step: "softmaxGrad", red: "dot"},
}

// nextPair names a Next kernel's row step and the reduction it takes over
// the next row. shared maps the reduction's streams that are a step's
// input (a weight, the same for every row) rather than a row of their own
// to that input.
type nextPair struct {
	step, red string
	shared    map[string]string
}

// nextKernel writes the AVX-512 kernel stepName+"Next": the row step sk
// over dst and its inputs and, in the same loop, the reduction rk over the
// next row's streams (rk only reads float32 streams), so that the next
// row's loads, which miss the cache on a large op, overlap this row's
// arithmetic instead of making a pass of their own wait for memory. The
// reduction is the one rowKernel writes for rk, addition for addition: two
// vectors a step into two sets of accumulators, then one vector a step
// into the first, then the masked tail; the sets, then the halves, added
// at the end in the same order. So its sums are rk's bit for bit, which
// lets a caller take one row's statistics from rk and the next ones from
// here. The kernel runs over the whole row: a streaming variant needs dst
// aligned to the vector size (callers pass unaligned rows to the other).
func (g *gen) nextKernel(sk mapK, rk rowK, shared map[string]string, nt bool) {
	// What the norms need, and no more: a step without masks or tables,
	// a reduction of float32 streams (and float32 accumulators it adds
	// to in its pre step).
	if !g.wide() || !rk.reducesOnly() || sk.masks+sk.masks512 > 0 || sk.tabRows > 0 {
		panic("nextKernel: " + sk.name + " with " + rk.name + " is not a pair it writes")
	}
	name := sk.name + "Next" + g.suffix
	if nt {
		name += "NT"
	}
	ins := append(append([]string{}, sk.ins...), sk.updates...) // as mapKernel's
	args := []param{{"dst", 8, "*float32"}}
	for _, in := range ins {
		args = append(args, param{in, 8, "*float32"})
	}
	// The reduction's streams: a row's the next row's (nextX), an
	// accumulator its own (it sums the next row into it), a shared one
	// the step's.
	nextName := func(s string) string { return "next" + strings.ToUpper(s[:1]) + s[1:] }
	argName := map[string]string{}
	for _, st := range rk.streams {
		if in, ok := shared[st.name]; ok {
			if !slices.Contains(sk.ins, in) {
				panic("nextKernel: " + rk.name + "'s shared stream " + st.name + " is not " + sk.name + "'s")
			}
			argName[st.name] = in
			continue
		}
		switch {
		case st.mode == acc32:
			argName[st.name] = st.name
		default:
			argName[st.name] = nextName(st.name)
		}
		args = append(args, param{argName[st.name], 8, "*float32"})
	}
	for _, sc := range sk.scalars {
		args = append(args, param{sc, 4, "float32"})
	}
	for _, sc := range rk.scalars {
		args = append(args, param{sc, 8, "float64"})
	}
	args = append(args, param{"n", 8, "int"})
	var results []param
	for _, res := range rk.results {
		results = append(results, param{nextName(res), 8, "float64"})
	}
	offs, _, total := frame(args, results)
	doc := fmt.Sprintf("%s is the %s %s kernel with %s over the next row", name, g.suffix, sk.name, rk.doc)
	if nt {
		doc += ", with non-temporal stores, not fenced; dst must be aligned to the vector size"
	}
	declare(name, doc, args, results)
	table(sk.name+"Next", g.suffix, name, args, results)
	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, name, total)

	ptrs := []string{}
	ptrOf := map[string]string{}
	for i, a := range args {
		if a.typ != "*float32" {
			continue
		}
		g.I("MOVQ %s+%d(FP), %s", a.name, offs[a.name], ptrRegs[i])
		ptrs = append(ptrs, ptrRegs[i])
		ptrOf[a.name] = ptrRegs[i]
	}
	ptr := map[string]string{} // the reduction's streams
	for _, st := range rk.streams {
		ptr[st.name] = ptrOf[argName[st.name]]
	}
	g.I("MOVQ n+%d(FP), CX", offs["n"])
	r := &regs{g: g}
	temps := sk.temps // the step's
	if sk.temps512 > 0 {
		temps = sk.temps512
	}
	// The reduction's registers, as rowKernel has them: float32 vectors
	// of the masked tail's loads and of fused streams, widened halves of
	// the rest and of pre's output. The float32 vectors of streams that
	// are not fused serve only the masked tail, whose step is done with
	// its registers before the reduction loads: where the registers would
	// not go round, they take the step's.
	widened := len(rk.streams) - len(rk.fused)
	if rk.pre != nil {
		widened++
	}
	need := 4*len(rk.results) + len(rk.streams) + widened + rk.temps + 1 + len(ins) + temps + len(sk.scalars)
	shareTail := need > g.regs
	sets := [][2][]string{g.accumulators(r, len(rk.results)), g.accumulators(r, len(rk.results))}
	f32, wid := map[string]string{}, map[string]string{}
	for _, st := range rk.streams {
		if !shareTail || rk.isFused(st.name) {
			f32[st.name] = r.v()
		}
		if !rk.isFused(st.name) {
			wid[st.name] = r.v()
		}
	}
	if rk.pre != nil {
		wid[rk.preOut] = r.v()
	}
	ts := r.vs(rk.temps)
	cf := func(j int) string { return fmt.Sprintf("%s+%d(FP)", rk.scalars[j], offs[rk.scalars[j]]) }
	// The step's registers: one copy, reused by each vector of a step.
	out, in, t := r.v(), r.vs(len(ins)), r.vs(temps)
	spare := append([]string{out}, in...)
	for _, st := range rk.streams {
		if _, ok := f32[st.name]; !ok {
			if len(spare) == 0 {
				panic("nextKernel: " + sk.name + " with " + rk.name + " runs out of vector registers")
			}
			f32[st.name], spare = spare[0], spare[1:]
		}
	}
	var sc []string
	for _, name := range sk.scalars {
		v := r.v()
		g.I("VBROADCASTSS %s+%d(FP), %s", name, offs[name], v)
		sc = append(sc, v)
	}
	L, B := g.lanes, g.bytes()
	store := "VMOVUPS"
	if nt {
		store = "VMOVNTPS"
	}
	// step writes dst's vector at byte offset off (masked: the tail).
	step := func(masked bool, off int) {
		for i := range ins {
			if masked {
				g.loadMasked(fmt.Sprintf("(%s)", ptrs[1+i]), "", in[i])
			} else {
				g.I("VMOVUPS %d(%s), %s", off, ptrs[1+i], in[i])
			}
		}
		sk.body(g, out, in, sc, t, nil)
		if masked {
			g.storeMasked(out, "", "(DI)")
		} else {
			g.I("%s %s, %d(DI)", store, out, off)
		}
		for i, u := range in[len(sk.ins):] {
			if masked {
				g.storeMasked(u, "", fmt.Sprintf("(%s)", ptrs[len(sk.ins)+1+i]))
			} else {
				g.I("VMOVUPS %s, %d(%s)", u, off, ptrs[len(sk.ins)+1+i])
			}
		}
	}
	// reduce adds the next row's vector at byte offset off into red. The
	// streaming kernel asks for the next row's data nextPrefetch ahead
	// (4M floats, one thread, three runs: layernorm 44–55 → 60–65 GB/s at
	// rows of 1024, 29–47 → 42–58 at rows of 4096; rmsnorm, at the copy's
	// speed, alike).
	ahead := rk.ahead // the streams of rows to prefetch
	if ahead == nil {
		for _, st := range rk.streams {
			ahead = append(ahead, st.name)
		}
	}
	if !nt {
		ahead = nil // only the streaming kernel prefetches
	}
	reduce := func(masked bool, off int, red [2][]string) {
		g.reduceStart(rk, masked, off, ptr, f32, "", ahead)
		for h := range 2 {
			for _, st := range rk.streams {
				switch {
				case rk.isFused(st.name):
				case masked:
					g.widen(f32[st.name], h, wid[st.name], wid[st.name])
				default:
					g.I("VCVTPS2PD %d(%s), %s", off+h*B/2, ptr[st.name], wid[st.name])
				}
			}
			if rk.pre != nil {
				g.widen(f32[rk.fused[0]], h, wid[rk.preOut], wid[rk.preOut])
			}
			tail := ""
			if masked {
				tail = [2]string{"K1", "K7"}[h]
			}
			rk.body(g, half{in: wid, red: red[h], c: cf, t: ts, tail: tail})
		}
	}
	advance := func(v int) {
		for _, p := range ptrs {
			g.I("ADDQ $%d, %s", v*B, p)
		}
		g.I("SUBQ $%d, CX", v*L)
	}
	g.label("pairs")
	g.I("CMPQ CX, $%d", 2*L)
	g.I("JB loop")
	reduce(false, 0, sets[0])
	step(false, 0)
	reduce(false, B, sets[1])
	step(false, B)
	advance(2)
	g.I("JMP pairs")
	g.label("loop")
	g.I("CMPQ CX, $%d", L)
	g.I("JB tail")
	reduce(false, 0, sets[0])
	step(false, 0)
	advance(1)
	g.I("JMP loop")
	g.label("tail")
	g.I("TESTQ CX, CX")
	g.I("JZ done")
	g.tailMask("")
	g.I("KSHIFTRW $8, K1, K7")
	step(true, 0)
	reduce(true, 0, sets[0])
	g.label("done")
	var names []string
	for _, res := range results {
		names = append(names, res.name)
	}
	g.storeSums(sets, names, offs)
	g.I("VZEROUPPER")
	g.I("RET")
}

// reducesOnly reports whether a row kernel only reads float32 streams
// into its results (besides float32 accumulators, which its pre updates
// in registers: they add no widening to a step, so the kernel still takes
// two vectors a step).
func (k rowK) reducesOnly() bool {
	for _, s := range k.streams {
		if s.mode != in32 && s.mode != acc32 {
			return false
		}
	}
	return len(k.results) > 0
}

// reduceStart begins row kernel k's work on the vector at byte offset off
// from its streams' pointers ptr: under the tail mask tm where masked,
// every stream it reads loaded masked into its float32 register in f32;
// else the fused streams loaded, and the rows of the streams named in
// ahead prefetched nextPrefetch ahead. Then k's pre step, and its float32
// accumulators stored back. rowKernel and nextKernel's reduction share it.
func (g *gen) reduceStart(k rowK, masked bool, off int, ptr, f32 map[string]string, tm string, ahead []string) {
	if masked {
		for _, s := range k.streams {
			if s.mode == in32 || s.mode == inout32 || s.mode == acc32 {
				g.loadMasked(fmt.Sprintf("(%s)", ptr[s.name]), tm, f32[s.name])
			}
		}
	} else {
		for _, name := range k.fused {
			g.I("VMOVUPS %d(%s), %s", off, ptr[name], f32[name])
		}
		for _, name := range ahead {
			g.I("PREFETCHT0 %d(%s)", off+nextPrefetch, ptr[name])
		}
	}
	if k.pre != nil {
		k.pre(g, f32)
	}
	for _, s := range k.streams {
		if s.mode != acc32 {
			continue
		}
		if masked {
			g.storeMasked(f32[s.name], tm, fmt.Sprintf("(%s)", ptr[s.name]))
		} else {
			g.I("VMOVUPS %s, %d(%s)", f32[s.name], off, ptr[s.name])
		}
	}
}

// mapNamed and rowNamed return the kernels of maps and rows named name.
func mapNamed(name string) mapK {
	for _, k := range maps {
		if k.name == name {
			return k
		}
	}
	panic("no map kernel " + name)
}

func rowNamed(name string) rowK {
	for _, k := range rows {
		if k.name == name {
			return k
		}
	}
	panic("no row kernel " + name)
}

func hasAcc(k rowK) bool {
	for _, s := range k.streams {
		if s.mode == acc64 {
			return true
		}
	}
	return false
}

// accMasked loads (or stores) the float64 half h of an accumulator under
// the tail mask.
func (g *gen) accMasked(load bool, mem string, h int, tm64 [2]string, r string) {
	if g.wide() {
		k := "K1"
		if h == 1 {
			k = "K7"
		}
		if load {
			g.I("VMOVUPD.Z %s, %s, %s", mem, k, r)
		} else {
			g.I("VMOVUPD %s, %s, %s", r, k, mem)
		}
		return
	}
	if load {
		g.I("VMASKMOVPD %s, %s, %s", mem, tm64[h], r)
	} else {
		g.I("VMASKMOVPD %s, %s, %s", r, tm64[h], mem)
	}
}

// ---- custom loops ----

// nextPrefetch is how far ahead of its loads of a row coming from memory
// an AVX-512 kernel asks for the cache line to come (PREFETCHT0, one a
// vector): the exponential kernels with the next row's maximum, the
// streaming Next kernels' next row and the norm gradients' statistics
// twins (rowK's ahead). The hardware prefetchers stop at
// each 4 KB page, a row of 1024 floats, and a core busy with
// exponentials has too few loads in flight to hide memory's latency
// itself. 8 KB: on Zen 5, one thread, 4M floats, rows of 1024,
// cross_entropy 38–40 → 42–44 GB/s and cross_entropy_grad 45–49 → 49–52
// (rows of 32768: softmax 0.41–0.56 → 0.72–0.75 of the copy, the
// gradient 0.40–0.57 → 0.71–0.78); 1 KB and 2 KB ahead were slower than
// none, 4–16 KB alike, in cache no different. Prefetches past the end
// of the data do no harm (they do not fault).
const nextPrefetch = 8 << 10

// expKind names one of the kernels expKernel writes, all one pass over
// a row that sums exponentials: what each stores, takes and returns
// follows from the kind (see its methods).
type expKind int

// The kinds, in an order withMax relies on: those from expSumNextMaxKind
// on take the maximum of a row to come.
const (
	// expShiftKind writes dst = exp(scale·x − shift) and returns the
	// float64 sum.
	expShiftKind expKind = iota
	// expShiftSumKind returns the sum only, taking no scale and a shift c
	// in base 2: it sums 2^(x·log2e − c) with exp2Sum (see sumShift).
	expShiftSumKind
	// expSumNextMaxKind is expShiftSumKind that also returns the maximum
	// of the next row, next[0:n].
	expSumNextMaxKind
	// expShiftNextMaxKind is expShiftKind with scale 1 that also returns
	// the maximum of the next row.
	expShiftNextMaxKind
	// softmaxStepKind (AVX-512) is softmaxStep: exp(scale·x − shift)
	// stored and summed as expShift stores and sums them, the maximum of
	// next as expShiftNextMax takes it (unscaled), and in the same pass
	// the row before, out = src·c, with non-temporal stores (out 64-byte
	// aligned), where the vector at hole takes value in the lanes of mask
	// (the cross-entropy gradient's target element, which an ordinary
	// store after the streaming ones would make wait for memory). A row's
	// softmax is written by the pass over the row after it: its stores to
	// memory then overlap that row's exponentials and the next row's
	// loads, where the pass of their own waited on the stores alone (see
	// vec's SoftmaxStep).
	softmaxStepKind
	// expSumRowsKind is expSumRows: expShiftSum over rows consecutive
	// rows of cols elements in one call, row r's shift c = m·log2e from
	// its maximum m, maxes[r] (float64), where the pass over row r−2
	// stored it: each pass takes the maximum of the row two after its own
	// (in memory too) as expSumNextMax takes its next row's, and stores it
	// two entries on. The caller sets the first two. It stores each row's
	// sum before sumShift's fix and stops before a row whose c sumShift
	// would refuse (|c| ≥ 2¹⁶, infinite or NaN), returning the rows done.
	// The sums are bit for bit expShiftSum's (the same code per row).
	// Against expSumNextMax a row at a time it saves the Go and the call
	// between rows and, with the maximum two rows ahead, the wait at each
	// row's start for the one just taken (reduced, scaled and broadcast,
	// about 30 cycles in a row): rows of 1024 from L3 on Zen 5, 77 →
	// 70–75 ns a row. AVX-512 prefetches the argument ahead bytes beyond
	// next (vec's expSumRowsPrefetch).
	expSumRowsKind
)

// name is the kernel's name without the instruction set's suffix.
func (k expKind) name() string {
	return [...]string{"expShift", "expShiftSum", "expSumNextMax", "expShiftNextMax", "softmaxStep", "expSumRows"}[k]
}

// store reports whether the kernel stores its exponentials.
func (k expKind) store() bool {
	return k == expShiftKind || k == expShiftNextMaxKind || k == softmaxStepKind
}

// withMax reports whether the kernel takes the maximum of a row to come.
func (k expKind) withMax() bool { return k >= expSumNextMaxKind }

// prev reports whether the kernel also writes the row before's output.
func (k expKind) prev() bool { return k == softmaxStepKind }

// rows reports whether the kernel runs over several rows in one call.
func (k expKind) rows() bool { return k == expSumRowsKind }

// expKernel writes the kernel of kind k for g's instruction set.
func (g *gen) expKernel(k expKind) {
	store, withMax, prev, rows := k.store(), k.withMax(), k.prev(), k.rows()
	name := k.name() + g.suffix
	var args []param
	if store {
		args = append(args, param{"dst", 8, "*float32"})
	}
	args = append(args, param{"x", 8, "*float32"})
	if rows {
		args = append(args, param{"sums", 8, "*float64"}, param{"maxes", 8, "*float64"},
			param{"cols", 8, "int"}, param{"rows", 8, "int"}, param{"ahead", 8, "int"})
	} else if withMax {
		args = append(args, param{"next", 8, "*float32"})
		if prev {
			args = append(args, param{"src", 8, "*float32"}, param{"out", 8, "*float32"},
				param{"hole", 8, "*float32"}, param{"mask", 8, "int"}, param{"value", 4, "float32"},
				param{"scale", 4, "float32"}, param{"c", 4, "float32"})
		}
	} else if store {
		args = append(args, param{"scale", 4, "float32"})
	}
	shiftName := "shift"
	if !store {
		shiftName = "c"
	}
	results := []param{{"sum", 8, "float64"}}
	if rows {
		results = []param{{"done", 8, "int"}}
	} else {
		args = append(args, param{shiftName, 4, "float32"}, param{"n", 8, "int"})
	}
	if withMax && !rows {
		results = append(results, param{"m", 4, "float32"})
	}
	offs, _, total := frame(args, results)
	doc := fmt.Sprintf("%s is the %s exp(scale·x − shift) kernel", name, g.suffix)
	switch {
	case rows:
		doc = fmt.Sprintf("%s is the %s Σ 2^(x·log2e − c) and max(next) kernel over rows", name, g.suffix)
	case !store && withMax:
		doc = fmt.Sprintf("%s is the %s Σ 2^(x·log2e − c) and max(next) kernel", name, g.suffix)
	case !store:
		doc = fmt.Sprintf("%s is the %s Σ 2^(x·log2e − c) kernel", name, g.suffix)
	case withMax && prev:
		doc = fmt.Sprintf("%s is the %s exp(scale·x − shift), max(next) and out = src·c kernel", name, g.suffix)
	case withMax:
		doc = fmt.Sprintf("%s is the %s exp(x − shift) and max(next) kernel", name, g.suffix)
	}
	declare(name, doc, args, results)
	table(strings.TrimSuffix(name, g.suffix), g.suffix, name, args, results)
	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, name, total)
	if store {
		g.I("MOVQ dst+%d(FP), DI", offs["dst"])
	}
	if rows {
		// R13 is the row's start, R12 its number, DI its length in bytes.
		g.I("MOVQ x+%d(FP), R13", offs["x"])
		g.I("MOVQ sums+%d(FP), R8", offs["sums"])
		g.I("MOVQ maxes+%d(FP), R9", offs["maxes"])
		g.I("MOVQ cols+%d(FP), R10", offs["cols"])
		g.I("MOVQ rows+%d(FP), R11", offs["rows"])
		g.I("XORQ R12, R12")
		g.I("LEAQ (R10*4), DI")
		if g.wide() { // AVX2 does not prefetch
			g.I("MOVQ ahead+%d(FP), BX", offs["ahead"])
		}
	} else {
		g.I("MOVQ x+%d(FP), SI", offs["x"])
	}
	if withMax && !rows {
		g.I("MOVQ next+%d(FP), DX", offs["next"])
	}
	if prev {
		g.I("MOVQ src+%d(FP), R8", offs["src"])
		g.I("MOVQ out+%d(FP), R9", offs["out"])
		g.I("MOVQ hole+%d(FP), R10", offs["hole"])
		g.I("MOVQ mask+%d(FP), R11", offs["mask"])
		g.I("KMOVW R11, K2")
	}
	if !rows {
		g.I("MOVQ n+%d(FP), CX", offs["n"])
	}
	r := &regs{g: g}
	// With the maximum, scale is 1 and its register holds the maximum
	// (AVX2 has no other to spare).
	scale, shift := r.v(), r.v()
	mx := []string{scale}
	switch {
	case rows: // rowStart sets the registers up for each row
	case withMax:
		g.I("VMOVUPS %s, %s", c("cNegInf"), scale)
	case store:
		g.I("VBROADCASTSS scale+%d(FP), %s", offs["scale"], scale)
	}
	if !rows {
		g.I("VBROADCASTSS %s+%d(FP), %s", shiftName, offs[shiftName], shift)
	}
	tm := ""
	if !g.wide() {
		tm = r.v()
	}
	acc := [2]string{r.v(), r.v()}
	if !rows {
		g.zero(acc[0])
		g.zero(acc[1])
	}
	var pscale string // softmaxStep's scale (scale holds the maximum)
	if prev {
		pscale = r.v()
		g.I("VBROADCASTSS scale+%d(FP), %s", offs["scale"], pscale)
	}
	x, d, tmp := r.v(), r.v(), r.v()
	nt := 3 // exp's temporaries
	if !store {
		nt = g.exp2Temps()
	}
	// exp2Sum's constants, placed once every other register is (see exp2Consts).
	var k2 exp2Consts
	var kt expTabConsts // expTab's, likewise
	t := r.vs(nt)
	x2, t2 := r.v(), r.vs(nt)
	if withMax && g.wide() && !store {
		// The sums keep one maximum per vector of a quad: one would make
		// each wait for the last (about 2% slower in the L2 cache on Zen
		// 5). The kernels that store their exponentials keep a single
		// maximum, and the three registers saved hold more of expTab's
		// constants (see expTabConsts) instead of broadcasts from memory:
		// in SoftmaxStep log2e, ln2Hi and ln2Lo, in ExpShiftNextMax ln2Hi,
		// ln2Lo and expT's q0. Zen 5 issues two loads a cycle, a broadcast
		// operand counting as one, and each vector of SoftmaxStep took
		// nine (x, next, the previous row's exponentials and six
		// broadcasts). SoftmaxStep's kernel alone over rows of 1024 from
		// memory, one thread: 134–139 → 113–117 ns a row (131.7 → 125.2 on
		// a contended machine; through the ops within the noise);
		// ExpShiftNextMax 2% faster. The results are the same bits but for
		// the maximum of a next holding a NaN, which may be NaN or the
		// largest of some of the others (−Inf if none), as the sums'
		// maxima may, and the sign of a zero maximum (VMAXPS returns its
		// second operand on a tie of ±0, so the order of the elements
		// decides it), which changes no exponential.
		mx = append(mx, r.v(), r.v(), r.v())
		for _, m := range mx[1:] {
			if !rows {
				g.I("VMOVAPS %s, %s", scale, m)
			}
		}
	}
	// rowStart begins expSumRows' row R12 at R13 (see expSumRowsKind): it
	// leaves for ret where c = m·log2e is out of sumShift's range (the
	// integer comparison of |c|'s bits also takes NaN), and sets up the
	// registers as the single-row kernel's start does, with the row two
	// on as next.
	rowStart := func() {
		if !rows {
			return
		}
		xm, xt := "X"+scale[1:], "X"+tmp[1:]
		g.label("row")
		g.I("VMOVSD (R9)(R12*8), %s", xm)
		g.I("VCVTSD2SS %s, %s, %s", xm, xm, xm)
		// As sumShift's c; written as it stands, since g.I would make
		// the constant's operand a broadcast, which scalar forms lack.
		fmt.Fprintf(g.b, "\tVMULSS %s, %s, %s\n", c("cLog2e"), xm, xt)
		g.I("VMOVD %s, AX", xt)
		g.I("ANDL $0x7fffffff, AX")
		g.I("CMPL AX, $0x47800000") // 2¹⁶
		g.I("JAE ret")
		g.I("VBROADCASTSS %s, %s", xt, shift)
		for _, m := range mx {
			g.I("VMOVUPS %s, %s", c("cNegInf"), m)
		}
		g.zero(acc[0])
		g.zero(acc[1])
		g.I("MOVQ R10, CX")
		g.I("MOVQ R13, SI")
		g.I("LEAQ (R13)(DI*2), DX")
	}
	// load loads x from mem, off(SI), the u-th vector of a group, and
	// takes next's vector at the same offset into the maximum: its
	// loads, which miss the cache where the row is not in it yet, wait
	// while x's exponentials are computed.
	load := func(off int, x string, u int) {
		g.I("VMOVUPS %d(SI), %s", off, x)
		if withMax {
			m := mx[u%len(mx)]
			g.I("VMAXPS %d(DX), %s, %s", off, m, m)
			if g.wide() {
				if rows {
					// ahead bytes beyond next (vec's expSumRowsPrefetch),
					// in BX.
					g.I("PREFETCHT0 %d(DX)(BX*1)", off)
				} else {
					g.I("PREFETCHT0 %d(DX)", off+nextPrefetch)
				}
			}
		}
	}
	// advance moves the pointers on by v vectors and counts them off n.
	advance := func(v int) {
		b := v * g.bytes()
		if store {
			g.I("ADDQ $%d, DI", b)
		}
		g.I("ADDQ $%d, SI", b)
		if withMax {
			g.I("ADDQ $%d, DX", b)
		}
		if prev {
			g.I("ADDQ $%d, R8", b)
			g.I("ADDQ $%d, R9", b)
		}
		g.I("SUBQ $%d, CX", v*g.lanes)
	}
	// scaleOut writes v vectors of the previous row at off, out = src·c,
	// with non-temporal stores (out is 64-byte aligned); the one at hole
	// takes value in the lanes of K2, out of line (holes, at the end).
	// (Comparing once per run of sixteen vectors instead, the run with
	// the hole taking a copy of the loop with these comparisons, made
	// rows with a hole a third slower on Zen 5, for no reason found.)
	var holes []string
	fill := fmt.Sprintf("VBROADCASTSS value+%d(FP), K2, %s", offs["value"], d)
	scaleOut := func(off, v int) {
		if !prev {
			return
		}
		for u := range v {
			o := off + u*g.bytes()
			g.I("VMOVUPS %d(R8), %s", o, d)
			g.I("VMULPS c+%d(FP), %s, %s", offs["c"], d, d) // broadcast (see I)
			g.I("LEAQ %d(R9), R11", o)
			g.I("CMPQ R11, R10")
			l := fmt.Sprintf("hole%d", len(holes))
			g.I("JEQ %s", l)
			g.I("VMOVNTPS %s, %d(R9)", d, o)
			g.label(l + "back")
			holes = append(holes, fmt.Sprintf("%s:\n\t%s\n\tVMOVNTPS %s, (R11)\n\tJMP %sback\n", l, fill, d, l))
		}
	}
	exp := func(x string, t []string) {
		// Callers keep x − shift ≤ 88. The terms of a sum need less
		// accuracy than stored ones (see exp2Sum).
		switch {
		case !store:
			g.I("VFMSUB132PS %s, %s, %s", k2.log2e, shift, x) // x·log2e − c
			g.exp2Sum(x, t, k2)
			return
		case prev:
			g.I("VFMSUB132PS %s, %s, %s", pscale, shift, x) // scale·x − shift, as below
		case withMax:
			g.I("VSUBPS %s, %s, %s", shift, x, x)
		default:
			g.I("VFMSUB213PS %s, %s, %s", shift, scale, x) // scale·x − shift
		}
		if g.wide() {
			g.expTab(x, t, kt)
		} else {
			g.exp(x, t, expOpts{lo: true, wide: true})
		}
	}
	add := func(x string) {
		for h := 0; h < 2; h++ {
			g.widen(x, h, d, tmp)
			g.I("VADDPD %s, %s, %s", d, acc[h], acc[h])
		}
	}
	body := func(masked bool) {
		exp(x, t)
		if masked {
			if g.wide() {
				g.I("VMOVAPS.Z %s, K1, %s", x, x)
			} else {
				g.I("VANDPS %s, %s, %s", tm, x, x)
			}
		}
		add(x)
	}
	B := g.bytes()
	var q string
	if !g.wide() {
		q = r.v()
	}
	var xs []string
	var ts [][]string
	// quad sets xs[0] to the float32 sum ((a+b)+(c+d)) of the
	// exponentials of the four vectors at o(SI), storing them at o(DI).
	quad := func(o int) {
		// AVX-512 has the registers to interleave all four
		// exponentials, which keeps more independent work in flight
		// than two pairs one after the other.
		for u := range 4 {
			load(o+u*B, xs[u], u)
		}
		g.interleave(4, func(u int) { exp(xs[u], ts[u]) })
		if store {
			for u := range 4 {
				g.I("VMOVUPS %s, %d(DI)", xs[u], o+u*B)
			}
		}
		scaleOut(o, 4)
		g.I("VADDPS %s, %s, %s", xs[1], xs[0], xs[0])
		g.I("VADDPS %s, %s, %s", xs[3], xs[2], xs[2])
		g.I("VADDPS %s, %s, %s", xs[2], xs[0], xs[0])
	}
	if g.wide() {
		xs, ts = []string{x, x2, r.v(), r.v()}, [][]string{t, t2, r.vs(nt), r.vs(nt)}
		// Sixteen vectors at a time, their exponentials added in
		// float32 in a tree four deep, (Q1+Q2)+(Q3+Q4) of quads, before
		// widening: widening once per four vectors took about a tenth of
		// the kernel's time on Zen 5. Each term meets at most four
		// float32 roundings of partial sums of at most sixteen terms of
		// the row, all positive, so that the sum's relative error from
		// the grouping is at most 4·2⁻²⁴ in the worst case and, the
		// roundings' errors being of either sign, far less in practice
		// (accuracy_test.go checks sums against float64). The sums
		// without stores add their terms by multiply-adds instead (see
		// exp2Factors): the even vectors of a run into one float32
		// chain and the odd ones into another, eight terms a lane each,
		// the two added before widening (at most nine roundings).
		s1, s2 := r.v(), r.v()
		if !store {
			k2 = g.exp2Consts(r, 0)
		} else {
			kt = g.expTabConsts(r)
		}
		rowStart()
		g.label("runs")
		g.I("CMPQ CX, $%d", 16*g.lanes)
		g.I("JB quads")
		for k := range 4 {
			if !store {
				o := 4 * k * B
				for u := range 4 {
					load(o+u*B, xs[u], u)
				}
				g.interleave(4, func(u int) {
					g.I("VFMSUB132PS %s, %s, %s", k2.log2e, shift, xs[u]) // x·log2e − c
					g.exp2Factors(xs[u], ts[u], k2)
				})
				for u := range 4 {
					s, f := []string{s1, s2}[u%2], ts[u]
					if k == 0 && u < 2 {
						g.I("VMULPS %s, %s, %s", f[2], f[0], s)
					} else {
						g.I("VFMADD231PS %s, %s, %s", f[2], f[0], s)
					}
				}
				if k == 3 {
					g.I("VADDPS %s, %s, %s", s2, s1, s1)
				}
				continue
			}
			quad(4 * k * B)
			switch k {
			case 0:
				g.I("VMOVAPS %s, %s", xs[0], s1)
			case 1:
				g.I("VADDPS %s, %s, %s", xs[0], s1, s1)
			case 2:
				g.I("VMOVAPS %s, %s", xs[0], s2)
			case 3:
				g.I("VADDPS %s, %s, %s", xs[0], s2, s2)
				g.I("VADDPS %s, %s, %s", s2, s1, s1)
			}
		}
		add(s1)
		advance(16)
		g.I("JMP runs")
	}
	if !store && !g.wide() {
		k2 = g.exp2Consts(r, 0)
		rowStart()
	}
	// Four vectors at a time: their exponentials are added in float32
	// ((a+b)+(c+d)) before widening, which costs the sum two roundings of
	// a few terms, as small as the terms' own rounding, and quarters the
	// work of widening (a fifth of the kernel's time with pairs).
	g.label("quads")
	g.I("CMPQ CX, $%d", 4*g.lanes)
	g.I("JB pairs0")
	if g.wide() {
		quad(0)
	}
	for half := 0; half < 2 && !g.wide(); half++ {
		o := 2 * half * B
		load(o, x, 0)
		load(o+B, x2, 1)
		g.interleave(2, func(u int) { exp([]string{x, x2}[u], [][]string{t, t2}[u]) })
		if store {
			g.I("VMOVUPS %s, %d(DI)", x, o)
			g.I("VMOVUPS %s, %d(DI)", x2, o+B)
		}
		if half == 0 {
			g.I("VADDPS %s, %s, %s", x2, x, q)
		} else {
			g.I("VADDPS %s, %s, %s", x2, x, x)
			g.I("VADDPS %s, %s, %s", q, x, x)
		}
	}
	add(x)
	advance(4)
	g.I("JMP quads")
	g.label("pairs0")
	// Then two at a time, added in float32 the same way.
	g.I("CMPQ CX, $%d", 2*g.lanes)
	g.I("JB loop")
	g.label("pairs")
	load(0, x, 0)
	load(B, x2, 1)
	g.interleave(2, func(u int) { exp([]string{x, x2}[u], [][]string{t, t2}[u]) })
	if store {
		g.I("VMOVUPS %s, (DI)", x)
		g.I("VMOVUPS %s, %d(DI)", x2, B)
	}
	scaleOut(0, 2)
	g.I("VADDPS %s, %s, %s", x2, x, x)
	add(x)
	advance(2)
	g.I("CMPQ CX, $%d", 2*g.lanes)
	g.I("JAE pairs")
	g.label("loop")
	g.I("CMPQ CX, $%d", g.lanes)
	g.I("JB tail")
	load(0, x, 0)
	body(false)
	if store {
		g.I("VMOVUPS %s, (DI)", x)
	}
	scaleOut(0, 1)
	advance(1)
	g.I("JMP loop")
	g.label("tail")
	g.I("TESTQ CX, CX")
	g.I("JZ done")
	g.tailMask(tm)
	g.loadMasked("(SI)", tm, x)
	if withMax {
		// Lanes past the end count as −Inf, which no maximum picks.
		g.loadMasked("(DX)", tm, tmp)
		g.I("VMOVUPS %s, %s", c("cNegInf"), d)
		g.blend(maskOrK1(g, tm), tmp, d, d)
		g.I("VMAXPS %s, %s, %s", d, mx[0], mx[0])
	}
	body(true)
	if store {
		g.storeMasked(x, tm, "(DI)")
	}
	if prev {
		g.loadMasked("(R8)", tm, d)
		g.I("VMULPS c+%d(FP), %s, %s", offs["c"], d, d) // broadcast (see I)
		g.I("CMPQ R9, R10")
		g.I("JNE tailout")
		g.I("%s", fill)
		g.label("tailout")
		g.storeMasked(d, tm, "(R9)")
	}
	g.label("done")
	g.I("VADDPD %s, %s, %s", acc[1], acc[0], acc[0])
	g.hsum(acc[0], tmp)
	if rows {
		g.I("VMOVSD X%s, (R8)(R12*8)", acc[0][1:])
	} else {
		g.I("VMOVSD X%s, sum+%d(FP)", acc[0][1:], offs["sum"])
	}
	if withMax {
		m := mx[0]
		if len(mx) == 4 {
			g.I("VMAXPS %s, %s, %s", mx[1], m, m)
			g.I("VMAXPS %s, %s, %s", mx[3], mx[2], mx[2])
			g.I("VMAXPS %s, %s, %s", mx[2], m, m)
		}
		g.hmax(m, tmp)
		if rows {
			g.I("VCVTSS2SD X%s, X%s, X%s", m[1:], m[1:], m[1:])
			g.I("VMOVSD X%s, 16(R9)(R12*8)", m[1:]) // maxes[r+2]
			g.I("INCQ R12")
			g.I("ADDQ DI, R13")
			g.I("CMPQ R12, R11")
			g.I("JB row")
			g.label("ret")
			g.I("MOVQ R12, done+%d(FP)", offs["done"])
		} else {
			g.I("VMOVSS X%s, m+%d(FP)", m[1:], offs["m"])
		}
	}
	g.I("VZEROUPPER")
	g.I("RET")
	for _, h := range holes {
		g.b.WriteString(h)
	}
}

// prefetch asks for every cache line of x[0:n] to be brought into the
// cache (PREFETCHT0), without waiting for any of them.
func (g *gen) prefetch() {
	name := "prefetch" + g.suffix
	args := []param{{"x", 8, "*float32"}, {"n", 8, "int"}}
	_, _, total := frame(args, nil)
	declare(name, fmt.Sprintf("%s is the %s prefetch kernel", name, g.suffix), args, nil)
	table("prefetch", g.suffix, name, args, nil)
	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, name, total)
	g.I("MOVQ x+0(FP), SI")
	g.I("MOVQ n+8(FP), CX")
	g.I("LEAQ (SI)(CX*4), CX") // end
	g.label("loop")
	g.I("CMPQ SI, CX")
	g.I("JAE done")
	g.I("PREFETCHT0 (SI)")
	g.I("ADDQ $64, SI")
	g.I("JMP loop")
	g.label("done")
	g.I("RET")
}

// log64 is Kernels.Log64 eight float64 lanes at a time, AVX-512 only:
// log64 (log64.go) with the same operations in the same order, so the
// same bits, every lane taking both the table's path and the one near 1
// and keeping the one it needs. It returns how many elements it did,
// stopping at fewer than eight left or at a vector holding an element
// log64 leaves to math.Log (zero, subnormal, negative, infinite or NaN),
// which the caller takes with log64.
func (g *gen) log64() {
	name := "log64" + g.suffix
	args := []param{{"dst", 8, "*float64"}, {"x", 8, "*float64"}, {"n", 8, "int"}}
	results := []param{{"done", 8, "int"}}
	offs, _, total := frame(args, results)
	declare(name, fmt.Sprintf("%s is the %s Log64 kernel", name, g.suffix), args, results)
	table("log64", g.suffix, name, args, results)
	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, name, total)
	g.I("MOVQ dst+%d(FP), DI", offs["dst"])
	g.I("MOVQ x+%d(FP), SI", offs["x"])
	g.I("MOVQ n+%d(FP), CX", offs["n"])
	g.I("XORQ AX, AX")
	g.I("LEAQ ·logInv(SB), R8")
	g.I("LEAQ ·logC(SB), R9")
	// The constants, each broadcast from tLog64 (kernels_amd64.go's
	// log64Table, in this order).
	one, ln2, p7, p6, p5, p4, p3, p2, near, abs, mask := "Z16", "Z17", "Z18", "Z19", "Z20", "Z21", "Z22", "Z23", "Z24", "Z25", "Z26"
	for i, k := range []string{one, ln2, p7, p6, p5, p4, p3, p2, near, abs, mask} {
		g.I("VBROADCASTSD ·tLog64+%d(SB), %s", 8*i, k)
	}
	s, e, m, i, inv, lc, r1, a, p, rr := "Z0", "Z1", "Z2", "Z3", "Z4", "Z5", "Z6", "Z7", "Z8", "Z9"
	g.label("loop")
	g.I("CMPQ CX, $8")
	g.I("JB done")
	g.I("VMOVUPD (SI), %s", s)
	g.I("VFPCLASSPDZ $0xff, %s, K1", s) // every class but positive normal
	g.I("KORTESTB K1, K1")
	g.I("JNZ done")
	g.I("VGETEXPPD %s, %s", s, e)      // e, exactly
	g.I("VGETMANTPD $0, %s, %s", s, m) // m in [1, 2)
	// The table's index: the top logTabBits (log64.go's 7, which this
	// program cannot import; TestLog64Sets fails if they differ) of the
	// mantissa.
	g.I("VPSRLQ $%d, %s, %s", 52-7, s, i)
	g.I("VPANDQ %s, %s, %s", mask, i, i)
	g.I("KXNORW K2, K2, K2")
	g.I("VGATHERQPD (R8)(%s*8), K2, %s", i, inv)
	g.I("KXNORW K3, K3, K3")
	g.I("VGATHERQPD (R9)(%s*8), K3, %s", i, lc)
	g.I("VFMSUB213PD %s, %s, %s", one, inv, m) // r = m·inv − 1
	g.I("VFMADD213PD %s, %s, %s", lc, ln2, e)  // base = e·ln2 + c
	// Near 1: r = s − 1 and no base.
	g.I("VSUBPD %s, %s, %s", one, s, r1)
	g.I("VANDPD %s, %s, %s", abs, r1, a)
	g.I("VCMPPD $%d, %s, %s, K4", ltOS, near, a)
	g.I("VMOVAPD %s, K4, %s", r1, m)
	g.I("VXORPD %s, %s, K4, %s", e, e, e)
	g.I("VMOVAPD %s, %s", p7, p)
	for _, k := range []string{p6, p5, p4, p3, p2} {
		g.I("VFMADD213PD %s, %s, %s", k, m, p) // p = p·r + k
	}
	g.I("VMULPD %s, %s, %s", m, m, rr)
	g.I("VFMADD213PD %s, %s, %s", m, rr, p) // r²·p + r
	g.I("VADDPD %s, %s, %s", p, e, e)
	g.I("VMOVUPD %s, (DI)", e)
	g.I("ADDQ $64, SI")
	g.I("ADDQ $64, DI")
	g.I("ADDQ $8, AX")
	g.I("SUBQ $8, CX")
	g.I("JMP loop")
	g.label("done")
	g.I("MOVQ AX, done+%d(FP)", offs["done"])
	g.I("VZEROUPPER")
	g.I("RET")
}

// max returns the largest element of x (n ≥ 1) and whether x holds a NaN;
// with scaled it returns the largest s·x and no NaN report.
func (g *gen) max(scaled bool) {
	name := "max" + g.suffix
	args := []param{{"x", 8, "*float32"}}
	results := []param{{"m", 4, "float32"}, {"nan", 1, "bool"}}
	if scaled {
		name = "maxScaled" + g.suffix
		args = append(args, param{"s", 4, "float32"})
		results = results[:1]
	}
	args = append(args, param{"n", 8, "int"})
	offs, _, total := frame(args, results)
	declare(name, fmt.Sprintf("%s is the %s max kernel", name, g.suffix), args, results)
	table(strings.TrimSuffix(name, g.suffix), g.suffix, name, args, results)
	fmt.Fprintf(g.b, "\n// func %s\nTEXT ·%s(SB), NOSPLIT, $0-%d\n", name, name, total)
	g.I("MOVQ x+%d(FP), SI", offs["x"])
	g.I("MOVQ n+%d(FP), CX", offs["n"])
	r := &regs{g: g}
	tm := ""
	if !g.wide() {
		tm = r.v()
	}
	s, acc, x, nan, ninf, tmp := r.v(), r.v(), r.v(), r.v(), r.v(), r.v()
	// Four accumulators in the main loop: one would make every vector
	// wait for the previous VMAXPS, which costs more than its load.
	accs, xs, tmps := []string{acc, r.v(), r.v(), r.v()}, []string{x, r.v(), r.v(), r.v()}, []string{tmp, r.v(), r.v(), r.v()}
	if scaled {
		g.I("VBROADCASTSS s+%d(FP), %s", offs["s"], s)
	}
	g.I("VMOVUPS %s, %s", c("cNegInf"), ninf)
	for _, a := range accs {
		g.I("VMOVAPS %s, %s", ninf, a)
	}
	if g.wide() {
		g.I("KXORW K3, K3, K3")
	} else {
		g.zero(nan)
	}
	bodyU := func(u int) {
		x, acc, tmp := xs[u], accs[u], tmps[u]
		if scaled {
			g.I("VMULPS %s, %s, %s", s, x, x)
		} else if g.wide() {
			g.cmp(unord, x, x, fmt.Sprintf("K%d", 4+u))
			g.I("KORW K%d, K3, K3", 4+u)
		} else {
			g.cmp(unord, x, x, tmp)
			g.I("VORPS %s, %s, %s", tmp, nan, nan)
		}
		g.I("VMAXPS %s, %s, %s", acc, x, acc) // a NaN in x leaves acc as is
	}
	body := func() { bodyU(0) }
	g.label("loop4")
	g.I("CMPQ CX, $%d", 4*g.lanes)
	g.I("JB loop")
	for u := range 4 {
		g.I("VMOVUPS %d(SI), %s", u*g.bytes(), xs[u])
	}
	g.interleave(4, bodyU)
	g.I("ADDQ $%d, SI", 4*g.bytes())
	g.I("SUBQ $%d, CX", 4*g.lanes)
	g.I("JMP loop4")
	g.label("loop")
	g.I("VMAXPS %s, %s, %s", accs[1], acc, acc)
	g.I("VMAXPS %s, %s, %s", accs[3], accs[2], accs[2])
	g.I("VMAXPS %s, %s, %s", accs[2], acc, acc)
	g.label("loop1")
	g.I("CMPQ CX, $%d", g.lanes)
	g.I("JB tail")
	g.I("VMOVUPS (SI), %s", x)
	body()
	g.I("ADDQ $%d, SI", g.bytes())
	g.I("SUBQ $%d, CX", g.lanes)
	g.I("JMP loop1")
	g.label("tail")
	g.I("TESTQ CX, CX")
	g.I("JZ done")
	g.tailMask(tm)
	g.loadMasked("(SI)", tm, x)
	if scaled {
		g.I("VMULPS %s, %s, %s", s, x, x)
	}
	// Lanes past the end become −Inf, which no maximum picks.
	g.blend(maskOrK1(g, tm), x, ninf, x)
	if scaled {
		g.I("VMAXPS %s, %s, %s", acc, x, acc)
	} else {
		body()
	}
	g.label("done")
	g.hmax(acc, tmp)
	g.I("VMOVSS X%s, m+%d(FP)", acc[1:], offs["m"])
	if !scaled {
		if g.wide() {
			g.I("KMOVW K3, AX")
			g.I("TESTL AX, AX")
		} else {
			g.I("VMOVMSKPS %s, AX", nan)
			g.I("TESTL AX, AX")
		}
		g.I("SETNE nan+%d(FP)", offs["nan"])
	}
	g.I("VZEROUPPER")
	g.I("RET")
}

func maskOrK1(g *gen, tm string) string {
	if g.wide() {
		return "K1"
	}
	return tm
}

// consts are the constant vectors the kernels use, as Go expressions over
// math32.go's constants and coeffs.go's tables (so that the Go and the
// assembly kernels share one source); tables hold one vector per
// coefficient, and splatTable panics if a table's length differs from the
// degree the assembly assumes.
var consts = [][2]string{
	{"cZero", "splat(0)"},
	{"cOne", "splat(1)"},
	{"cTwo", "splat(2)"},
	{"cHalf", "splat(0.5)"},
	{"cNegHalf", "splat(-0.5)"},
	{"cAbs", "splatBits(0x7fffffff)"},
	{"cSign", "splatBits(0x80000000)"},
	{"cNaN", "splatBits(0x7fc00000)"},
	{"cPosInf", "splatBits(0x7f800000)"},
	{"cNegInf", "splatBits(0xff800000)"},
	{"cLog2e", "splat(log2e)"},
	{"cLn2Hi", "splat(ln2Hi)"},
	{"cLn2Lo", "splat(ln2Lo)"},
	{"cExpLo", "splat(expLo)"},
	{"cExpHi", "splat(expHi)"},
	{"cI127", "splatBits(127)"},
	{"cExpQ", "[5][16]float32(splatTable(expQ[:], 5))"},
	{"cExpT", "[2][16]float32(splatTable(expT[:], 2))"},
	{"cExpSumLo", "splat(expSumLo)"},
	{"cMagic", "splat(0x1.8p23 + 127)"},
	{"cExp2P", "[5][16]float32(splatTable(exp2P[:], 5))"},
	{"cExp2S", "[2][16]float32(splatTable(exp2S[:], 2))"},
	{"cMinNormal", "splat(0x1p-126)"},
	{"cTwo23", "splat(0x1p23)"},
	{"c23", "splat(23)"},
	{"cSqrtHalfBits", "splatBits(0x3f3504f3)"},
	{"cLogL", "[8][16]float32(splatTable(logL[:], 8))"},
	{"cTanhSmall", "splat(tanhSmall)"},
	{"cTanhP", "[6][16]float32(splatTable(tanhP[:], 6))"},
	{"tPwGELU", "pwRows(&pwGELU)"},
	{"tPwGELUGrad", "pwRows(&pwGELUGrad)"},
	{"tPwGELUTanh", "pwRows(&pwGELUTanh)"},
	{"tPwGELUTanhGrad", "pwRows(&pwGELUTanhGrad)"},
	{"tPwGELU8", "pwRows8(&pwGELU8)"},
	{"tPwGELUGrad8", "pwRows8(&pwGELUGrad8)"},
	{"tPwGELUTanh8", "pwRows8(&pwGELUTanh8)"},
	{"tPwGELUTanhGrad8", "pwRows8(&pwGELUTanhGrad8)"},
	{"cGtMagic", "splat(gtMagic)"},
	{"tGtExp2", "gtExp2T"},
	{"tGtExp2Tau", "gtExp2Tau"},
	{"cSumMagic", "splat(sumMagic)"},
	{"tExp2S", "exp2S32"},
	{"tLog64", "log64Table()"},
}

// ---- the kernels ----

func bin(op string) func(g *gen, out string, in, s, t, m []string) {
	return func(g *gen, out string, in, s, t, m []string) { g.I("%s %s, %s, %s", op, in[1], in[0], out) }
}

func scal(op string) func(g *gen, out string, in, s, t, m []string) {
	return func(g *gen, out string, in, s, t, m []string) { g.I("%s %s, %s, %s", op, s[0], in[0], out) }
}

var maps = []mapK{
	{name: "fill", scalars: []string{"v"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { g.I("VMOVAPS %s, %s", s[0], out) }},
	{name: "add", ins: []string{"a", "b"}, unroll: 4, body: bin("VADDPS")},
	{name: "sub", ins: []string{"a", "b"}, unroll: 4, body: bin("VSUBPS")},
	{name: "mul", ins: []string{"a", "b"}, unroll: 4, body: bin("VMULPS")},
	{name: "div", ins: []string{"a", "b"}, unroll: 4, body: bin("VDIVPS")},
	{name: "addScalar", ins: []string{"a"}, scalars: []string{"s"}, unroll: 4, body: scal("VADDPS")},
	{name: "subScalar", ins: []string{"a"}, scalars: []string{"s"}, unroll: 4, body: scal("VSUBPS")},
	{name: "mulScalar", ins: []string{"a"}, scalars: []string{"s"}, unroll: 4, body: scal("VMULPS")},
	{name: "divScalar", ins: []string{"a"}, scalars: []string{"s"}, unroll: 4, body: scal("VDIVPS")},
	// y + alpha·x with two roundings, as the Go kernel (dst is y).
	{name: "axpy", ins: []string{"y", "x"}, scalars: []string{"alpha"}, temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VMULPS %s, %s, %s", s[0], in[1], t[0])
			g.I("VADDPS %s, %s, %s", t[0], in[0], out)
		}},
	{name: "exp", ins: []string{"x"}, temps: 3, temps512: 4, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VMOVAPS %s, %s", in[0], out)
			g.exp(out, t, expFull)
		}},
	{name: "log", ins: []string{"x"}, temps: 5, masks: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) { g.log(in[0], out, t, m[0]) }},
	{name: "sqrt", ins: []string{"x"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { g.I("VSQRTPS %s, %s", in[0], out) }},
	{name: "rsqrt", ins: []string{"x"}, temps: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VSQRTPS %s, %s", in[0], t[0])
			g.I("VMOVUPS %s, %s", c("cOne"), out)
			g.I("VDIVPS %s, %s, %s", t[0], out, out)
		}},
	{name: "tanh", ins: []string{"x"}, temps: 6, masks: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) { g.tanh(in[0], out, "", t, m[0]) }},
	{name: "sigmoid", ins: []string{"x"}, temps: 4, temps512: 5, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) { g.sigmoidFwd(in[0], "", out, t) }},
	{name: "silu", ins: []string{"x"}, temps: 4, temps512: 5, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) { g.sigmoidFwd(in[0], in[0], out, t) }},
	{name: "gelu", ins: []string{"x"}, tabRows: pwRows, tab: "tPwGELU", temps: 5, masks: 1, unroll: 3,
		body: func(g *gen, out string, in, s, t, m []string) { g.pwGELU(in[0], out, t, m[0], s, "·tPwGELU8") }},
	// GELU's tanh approximation x·σ(y).
	{name: "geluTanh", ins: []string{"x"}, tabRows: pwRows, tab: "tPwGELUTanh", temps: 5, masks: 1, unroll: 3,
		body: func(g *gen, out string, in, s, t, m []string) { g.pwGELU(in[0], out, t, m[0], s, "·tPwGELUTanh8") }},
	{name: "relu", ins: []string{"x"}, masks: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.cmp(nleUS, c("cZero"), in[0], m[0]) // x > 0 or NaN
			g.keep(m[0], in[0], out)
		}},
	{name: "neg", ins: []string{"x"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { g.xor(c("cSign"), in[0], out) }},
	{name: "square", ins: []string{"x"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { g.I("VMULPS %s, %s, %s", in[0], in[0], out) }},

	// Derivatives: in[0] is x, in[1] is dy.
	{name: "expGrad", ins: []string{"x", "dy"}, temps: 3, temps512: 4, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VMOVAPS %s, %s", in[0], out)
			g.exp(out, t, expFull)
			g.I("VMULPS %s, %s, %s", out, in[1], out)
		}},
	{name: "logGrad", ins: []string{"x", "dy"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { g.I("VDIVPS %s, %s, %s", in[0], in[1], out) }},
	{name: "sqrtGrad", ins: []string{"x", "dy"}, temps: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VSQRTPS %s, %s", in[0], t[0])
			g.I("VMULPS %s, %s, %s", c("cHalf"), in[1], out)
			g.I("VDIVPS %s, %s, %s", t[0], out, out)
		}},
	{name: "rsqrtGrad", ins: []string{"x", "dy"}, temps: 2, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VSQRTPS %s, %s", in[0], t[0])
			g.I("VMOVUPS %s, %s", c("cOne"), t[1])
			g.I("VDIVPS %s, %s, %s", t[0], t[1], t[1])
			g.I("VMULPS %s, %s, %s", c("cNegHalf"), in[1], out)
			g.I("VMULPS %s, %s, %s", t[1], out, out)
			g.I("VDIVPS %s, %s, %s", in[0], out, out)
		}},
	{name: "tanhGrad", ins: []string{"x", "dy"}, temps: 7, masks: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.tanh(in[0], t[6], out, t[:6], m[0])
			g.I("VMULPS %s, %s, %s", in[1], out, out)
		}},
	{name: "sigmoidGrad", ins: []string{"x", "dy"}, temps: 5, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.sigmoid(in[0], t[3], t[4], t[:3], true)
			g.I("VMULPS %s, %s, %s", t[4], t[3], out)
			g.I("VMULPS %s, %s, %s", out, in[1], out)
		}},
	{name: "siluGrad", ins: []string{"x", "dy"}, temps: 5, temps512: 6, masks: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.sigmoid(in[0], t[3], t[4], append([]string{t[0], t[1], t[2]}, t[5:]...), false)
			g.I("VMULPS %s, %s, %s", t[4], t[3], t[0]) // σ·(1−σ)
			g.sigmoidPick(in[0], t[3], t[4], out, m[0])
			g.I("VFMADD231PS %s, %s, %s", in[0], t[0], out) // x·σ(1−σ) + σ
			g.I("VMULPS %s, %s, %s", out, in[1], out)
		}},
	{name: "geluGrad", ins: []string{"x", "dy"}, tabRows: pwRows, tab: "tPwGELUGrad", temps: 4, masks: 1, masks512: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.pwGELUGrad(in[0], in[1], out, t, m, s, "·tPwGELUGrad8")
		}},
	{name: "geluTanhGrad", ins: []string{"x", "dy"}, tabRows: pwRows, tab: "tPwGELUTanhGrad", temps: 4, masks: 1, masks512: 1, unroll: 2,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.pwGELUGrad(in[0], in[1], out, t, m, s, "·tPwGELUTanhGrad8")
		}},
	{name: "reluGrad", ins: []string{"x", "dy"}, masks: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.cmp(gtOS, c("cZero"), in[0], m[0])
			g.keep(m[0], in[1], out)
		}},
	{name: "negGrad", ins: []string{"x", "dy"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { g.xor(c("cSign"), in[1], out) }},
	{name: "squareGrad", ins: []string{"x", "dy"}, temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VADDPS %s, %s, %s", in[0], in[0], t[0])
			g.I("VMULPS %s, %s, %s", in[1], t[0], out)
		}},

	// Row steps of the norms and the softmax gradient: per-element
	// float32 arithmetic with the row's float64 statistics passed as
	// float32, split into a high and a low part (mh + ml) where a
	// subtraction would expose the rounding of the high part alone.
	// The Go kernels (generic.go) do the same operations in the same
	// order; the assembly fuses the last multiply-add.
	{name: "scaleMul", ins: []string{"x", "w"}, scalars: []string{"s"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VMULPS %s, %s, %s", s[0], in[0], out)
			g.I("VMULPS %s, %s, %s", in[1], out, out)
		}},
	{name: "normalize", ins: []string{"x", "gamma"}, scalars: []string{"mh", "ml", "r"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VSUBPS %s, %s, %s", s[0], in[0], out)
			g.I("VSUBPS %s, %s, %s", s[1], out, out)
			g.I("VMULPS %s, %s, %s", s[2], out, out)
			g.I("VMULPS %s, %s, %s", in[1], out, out)
		}},
	{name: "normalizeShift", ins: []string{"x", "gamma", "beta"}, scalars: []string{"mh", "ml", "r"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VSUBPS %s, %s, %s", s[0], in[0], out)
			g.I("VSUBPS %s, %s, %s", s[1], out, out)
			g.I("VMULPS %s, %s, %s", s[2], out, out)
			g.I("VFMADD213PS %s, %s, %s", in[2], in[1], out) // ·γ + β
		}},
	{name: "softmaxGrad", ins: []string{"y", "dy"}, scalars: []string{"s", "dh", "dl"}, temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VSUBPS %s, %s, %s", s[1], in[1], t[0])
			g.I("VSUBPS %s, %s, %s", s[2], t[0], t[0])
			g.I("VMULPS %s, %s, %s", s[0], in[0], out)
			g.I("VMULPS %s, %s, %s", t[0], out, out)
		}},
	{name: "rmsNormGrad", ins: []string{"x", "w", "dy"}, scalars: []string{"rs", "c"}, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VMULPS %s, %s, %s", s[0], in[1], out)
			g.I("VMULPS %s, %s, %s", in[2], out, out)
			g.I("VFNMADD231PS %s, %s, %s", s[1], in[0], out) // − x·c
		}},
	{name: "layerNormGrad", ins: []string{"x", "w", "dy"}, scalars: []string{"mh", "ml", "r", "mg", "mgx"}, temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { layerNormGradBody(g, out, in, s, t) }},
	// rmsNormGrad that also adds dy·x·rs to acc.
	{name: "rmsNormGradAcc", ins: []string{"x", "w", "dy"}, updates: []string{"acc"}, scalars: []string{"rs", "c"},
		temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			g.I("VMULPS %s, %s, %s", s[0], in[1], out)
			g.I("VMULPS %s, %s, %s", in[2], out, out)
			g.I("VFNMADD231PS %s, %s, %s", s[1], in[0], out) // − x·c
			g.I("VMULPS %s, %s, %s", s[0], in[0], t[0])
			g.I("VFMADD231PS %s, %s, %s", in[2], t[0], in[3]) // acc += x·rs·dy
		}},
	// layerNormGrad that also adds dy·x̂ to accG and dy to accB, reusing
	// the x̂ it computes.
	{name: "layerNormGradAcc", ins: []string{"x", "w", "dy"}, updates: []string{"accG", "accB"},
		scalars: []string{"mh", "ml", "r", "mg", "mgx"}, temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) {
			layerNormGradAccBody(g, out, in, s, t)
			g.I("VADDPS %s, %s, %s", in[2], in[4], in[4]) // accB += dy
		}},
	// layerNormGradAcc without accB, for callers that sum dy in the
	// statistics' pass (layerNormGradStatsAcc).
	{name: "layerNormGradAccG", ins: []string{"x", "w", "dy"}, updates: []string{"accG"},
		scalars: []string{"mh", "ml", "r", "mg", "mgx"}, temps: 1, unroll: 4,
		body: func(g *gen, out string, in, s, t, m []string) { layerNormGradAccBody(g, out, in, s, t) }},
}

// The float64 row kernels. Bodies repeat the Go kernels' operations in the
// same order, without fusing, so that the non-reducing ones agree with Go
// bit for bit; reductions fuse (their summation order differs anyway).
var rows = []rowK{
	{name: "sum", doc: "Sum", streams: []stream{{"x", in32}}, results: []string{"s"},
		body: func(g *gen, h half) { g.I("VADDPD %s, %s, %s", h.in["x"], h.red[0], h.red[0]) }},
	{name: "sumSquares", doc: "SumSquares", streams: []stream{{"x", in32}}, results: []string{"s"},
		body: func(g *gen, h half) { g.I("VFMADD231PD %s, %s, %s", h.in["x"], h.in["x"], h.red[0]) }},
	{name: "dot", doc: "Dot", streams: []stream{{"a", in32}, {"b", in32}}, results: []string{"s"},
		body: func(g *gen, h half) { g.I("VFMADD231PD %s, %s, %s", h.in["a"], h.in["b"], h.red[0]) }},
	{name: "sumsAbout", doc: "SumsAbout", streams: []stream{{"x", in32}}, scalars: []string{"c"}, results: []string{"sd", "ssd"},
		body: func(g *gen, h half) {
			d := h.in["x"] // x's widened copy is not needed after d
			g.I("VSUBPD %s, %s, %s", h.c(0), d, d)
			g.keep64(h, d)
			g.I("VADDPD %s, %s, %s", d, h.red[0], h.red[0])
			g.I("VFMADD231PD %s, %s, %s", d, d, h.red[1])
		}},
	{name: "accumulate", doc: "Accumulate", streams: []stream{{"acc", acc64}, {"x", in32}},
		body: func(g *gen, h half) { g.I("VADDPD %s, %s, %s", h.in["x"], h.acc["acc"], h.acc["acc"]) }},
	// The product a·b in float32, as LayerNormGradStats takes w·dy: one
	// widening fewer (of the three, the costliest part).
	{name: "sumSquaresDot3", doc: "SumSquaresDot3", streams: []stream{{"x", in32}, {"a", in32}, {"b", in32}},
		ahead:   []string{"x", "b"}, // x and dy; a is the weight, in the cache
		results: []string{"ss", "dot"},
		fused:   []string{"a", "b"}, preOut: "ab",
		pre: func(g *gen, f map[string]string) { g.I("VMULPS %s, %s, %s", f["b"], f["a"], f["a"]) },
		body: func(g *gen, h half) {
			x := h.in["x"]
			g.I("VFMADD231PD %s, %s, %s", x, x, h.red[0])
			g.I("VFMADD231PD %s, %s, %s", x, h.in["ab"], h.red[1])
		}},
	{name: "layerNormGradStats", doc: "LayerNormGradStats", streams: []stream{{"x", in32}, {"w", in32}, {"dy", in32}},
		ahead:   []string{"x", "dy"},
		scalars: []string{"c"}, results: []string{"sd", "ssd", "sg", "sgd"},
		fused: []string{"w", "dy"}, preOut: "g",
		pre:  func(g *gen, f map[string]string) { g.I("VMULPS %s, %s, %s", f["dy"], f["w"], f["w"]) },
		body: layerNormGradStatsBody},
	// layerNormGradStats that also adds dy to accB in float32: the bias's
	// gradient summed in the pass that brings dy from memory, whose loads
	// leave the core time to spare, where the output pass, which runs
	// from the cache, waited on its stores (one a cycle).
	{name: "layerNormGradStatsAcc", doc: "LayerNormGradStatsAcc",
		streams: []stream{{"x", in32}, {"w", in32}, {"dy", in32}, {"accB", acc32}},
		ahead:   []string{"x", "dy"},
		scalars: []string{"c"}, results: []string{"sd", "ssd", "sg", "sgd"},
		fused: []string{"w", "dy", "accB"}, preOut: "g", wideOnly: true,
		pre: func(g *gen, f map[string]string) {
			g.I("VADDPS %s, %s, %s", f["dy"], f["accB"], f["accB"])
			g.I("VMULPS %s, %s, %s", f["dy"], f["w"], f["w"])
		},
		body: layerNormGradStatsBody},
	{name: "adamw", doc: "AdamW", streams: []stream{{"p", inout32}, {"grad", in32}, {"m", inout32}, {"v", inout32}},
		scalars: []string{"beta1", "oneMinusBeta1", "beta2", "oneMinusBeta2", "decay", "stepSize", "eps"}, temps: 2,
		body: func(g *gen, h half) {
			t, u := h.t[0], h.t[1]
			p, gr, m, v := h.in["p"], h.in["grad"], h.in["m"], h.in["v"]
			g.I("VMULPD %s, %s, %s", h.c(0), m, m)
			g.I("VMULPD %s, %s, %s", h.c(1), gr, t)
			g.I("VADDPD %s, %s, %s", t, m, m) // m
			g.I("VMULPD %s, %s, %s", h.c(2), v, v)
			g.I("VMULPD %s, %s, %s", h.c(3), gr, t)
			g.I("VMULPD %s, %s, %s", gr, t, t)
			g.I("VADDPD %s, %s, %s", t, v, v) // v
			g.I("VSQRTPD %s, %s", v, t)
			g.I("VADDPD %s, %s, %s", h.c(6), t, t)
			g.I("VMULPD %s, %s, %s", h.c(5), m, u)
			g.I("VDIVPD %s, %s, %s", t, u, u)
			g.I("VMULPD %s, %s, %s", h.c(4), p, p)
			g.I("VSUBPD %s, %s, %s", u, p, p)
		}},
}

// layerNormGradBody sets out = LayerNormGrad's dx from in = x, w, dy,
// leaving x̂ in t[0].
func layerNormGradBody(g *gen, out string, in, s, t []string) {
	g.I("VSUBPS %s, %s, %s", s[0], in[0], t[0])
	g.I("VSUBPS %s, %s, %s", s[1], t[0], t[0])
	g.I("VMULPS %s, %s, %s", s[2], t[0], t[0]) // x̂
	g.I("VMULPS %s, %s, %s", in[2], in[1], out)
	g.I("VSUBPS %s, %s, %s", s[3], out, out)
	g.I("VFNMADD231PS %s, %s, %s", s[4], t[0], out) // − x̂·mgx
	g.I("VMULPS %s, %s, %s", s[2], out, out)
}

// layerNormGradAccBody is layerNormGradBody that also adds dy·x̂ to the
// first update, in[3].
func layerNormGradAccBody(g *gen, out string, in, s, t []string) {
	layerNormGradBody(g, out, in, s, t)
	g.I("VFMADD231PS %s, %s, %s", in[2], t[0], in[3]) // accG += x̂·dy
}

// layerNormGradStatsBody is the float64 step of LayerNormGradStats and
// LayerNormGradStatsAcc: the sums of d = x − c, d², g = w·dy and d·g.
func layerNormGradStatsBody(g *gen, h half) {
	d, gw := h.in["x"], h.in["g"] // x's widened copy is not needed after d
	g.I("VSUBPD %s, %s, %s", h.c(0), d, d)
	g.keep64(h, d)
	g.I("VADDPD %s, %s, %s", d, h.red[0], h.red[0])
	g.I("VFMADD231PD %s, %s, %s", d, d, h.red[1])
	g.I("VADDPD %s, %s, %s", gw, h.red[2], h.red[2])
	g.I("VFMADD231PD %s, %s, %s", d, gw, h.red[3])
}

func main() {
	dir := flag.String("dir", ".", "directory to write kernels_amd64.s and stubs_amd64.go to")
	flag.Parse()
	var s bytes.Buffer
	// -tags noasm leaves the assembly out (kernels_other.go then builds).
	s.WriteString("// Code generated by gen_amd64.go; DO NOT EDIT.\n\n//go:build !noasm\n\n#include \"textflag.h\"\n\n")
	s.WriteString("// maskTail: loading eight dwords at maskTail+4·(8−k) gives k lanes of ones, then zeros.\n")
	for i := 0; i < 8; i++ {
		v := "$0xffffffffffffffff"
		if i >= 4 {
			v = "$0"
		}
		fmt.Fprintf(&s, "DATA maskTail<>+%d(SB)/8, %s\n", 8*i, v)
	}
	s.WriteString("GLOBL maskTail<>(SB), RODATA|NOPTR, $64\n")
	s.WriteString("\n// func sfence()\nTEXT ·sfence(SB), NOSPLIT, $0-0\n\tSFENCE\n\tRET\n")
	stubs.WriteString("// Code generated by gen_amd64.go; DO NOT EDIT.\n\n//go:build !noasm\n\npackage vec\n\n")
	stubs.WriteString("// sfence orders the non-temporal stores before it before any later store.\n//\n//go:noescape\nfunc sfence()\n\n")
	stubs.WriteString("// The constant operands of the assembly, each in sixteen lanes.\nvar (\n")
	for _, k := range consts {
		fmt.Fprintf(&stubs, "\t%s = %s\n", k[0], k[1])
	}
	stubs.WriteString(")\n\n")
	for _, target := range []isa{avx2, avx512} {
		g := &gen{isa: target, b: &s}
		for _, k := range maps {
			g.mapKernel(k, false)
			g.mapKernel(k, true)
		}
		for _, k := range rows {
			if k.wideOnly && !g.wide() {
				continue
			}
			g.rowKernel(k, false)
			if k.streaming() || g.wide() && len(k.ahead) > 0 {
				g.rowKernel(k, true)
			}
		}
		if g.wide() {
			for _, nx := range nexts {
				sk, rk := mapNamed(nx.step), rowNamed(nx.red)
				g.nextKernel(sk, rk, nx.shared, false)
				g.nextKernel(sk, rk, nx.shared, true)
			}
		}
		g.expKernel(expShiftKind)
		g.expKernel(expShiftSumKind)
		g.expKernel(expSumNextMaxKind)
		g.expKernel(expSumRowsKind)
		g.expKernel(expShiftNextMaxKind)
		if g.wide() {
			g.expKernel(softmaxStepKind)
		}
		g.max(false)
		g.max(true)
		g.prefetch()
		if g.wide() {
			g.log64()
		}
	}
	stubs.WriteString("// asmFuncs holds the entry points of one instruction set; element-wise\n// kernels have two, the second with non-temporal stores.\ntype asmFuncs struct {\n\tlanes int\n")
	// A kernel with a streaming twin is a [2] field; one that AVX2 lacks
	// (the fused Next kernels) stays nil in funcsAVX2.
	pair := func(f string) bool { return len(fieldValue[f]["AVX512"]) == 2 || len(fieldValue[f]["AVX2"]) == 2 }
	for _, f := range fieldOrder {
		typ := fieldType[f]
		if pair(f) {
			typ = "[2]" + typ
		}
		fmt.Fprintf(&stubs, "\t%s %s\n", f, typ)
	}
	stubs.WriteString("}\n\n")
	for _, target := range []isa{avx2, avx512} {
		fmt.Fprintf(&stubs, "var funcs%s = asmFuncs{\n\tlanes: %d,\n", target.suffix, target.lanes)
		for _, f := range fieldOrder {
			v := fieldValue[f][target.suffix]
			switch {
			case len(v) == 0:
				continue
			case pair(f):
				fmt.Fprintf(&stubs, "\t%s: [2]%s{%s},\n", f, fieldType[f], strings.Join(v, ", "))
			default:
				fmt.Fprintf(&stubs, "\t%s: %s,\n", f, v[0])
			}
		}
		stubs.WriteString("}\n\n")
	}
	if err := os.WriteFile(filepath.Join(*dir, "kernels_amd64.s"), s.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	src, err := format.Source(stubs.Bytes())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(filepath.Join(*dir, "stubs_amd64.go"), src, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

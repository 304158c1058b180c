//go:build !noasm

package vec

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"unsafe"
)

// wrapperCall is one call of an entry point by binWrapper: dst[lo:hi],
// entry 0 (ordinary stores) or 1 (non-temporal).
type wrapperCall struct{ lo, hi, entry int }

// TestBinWrapperParts checks how a streaming binWrapper divides an output
// between its two entry points, for AVX2's 8 lanes and AVX-512's 16, rows
// of 1..200 floats starting at each float of a cache line: split's calls
// cover the row in order, each element once; the non-temporal entry point
// starts on a vector boundary (its requirement); no 64-byte line gets
// both kinds of store, the non-temporal entry point's own masked tail
// counted as ordinary stores (an ordinary store to a line that streaming
// stores are filling waits for memory); bin, scalar and unary make
// split's calls; an output that aliases an input, or a set that does not
// stream, takes one ordinary call; an empty row none.
func TestBinWrapperParts(t *testing.T) {
	const line = lineBytes / 4
	buf := lineAligned(200 + line)
	in := make([]float32, len(buf))
	for _, tc := range []struct {
		name  string
		lanes int
	}{{"avx2", 8}, {"avx512", 16}} {
		w := binWrapper{tc.lanes, true}
		for off := range line {
			for n := 0; n <= 200; n++ {
				dst := buf[off : off+n]
				where := fmt.Sprintf("%s, row at offset %d, %d long", tc.name, off, n)
				// rec returns an entry point's stand-in that records its
				// calls in *calls, as element indices of dst.
				rec := func(calls *[]wrapperCall, entry int) func(d *float32, cnt int) {
					return func(d *float32, cnt int) {
						lo := int(uintptr(unsafe.Pointer(d))-uintptr(unsafe.Pointer(unsafe.SliceData(dst)))) / 4
						*calls = append(*calls, wrapperCall{lo, lo + cnt, entry})
					}
				}
				binCalls := func(w binWrapper, a, b []float32) []wrapperCall {
					var calls []wrapperCall
					r0, r1 := rec(&calls, 0), rec(&calls, 1)
					w.bin([2]func(*float32, *float32, *float32, int){
						func(d, _, _ *float32, n int) { r0(d, n) },
						func(d, _, _ *float32, n int) { r1(d, n) },
					})(dst, a, b)
					return calls
				}
				var scalarCalls, unaryCalls []wrapperCall
				s0, s1 := rec(&scalarCalls, 0), rec(&scalarCalls, 1)
				w.scalar([2]func(*float32, *float32, float32, int){
					func(d, _ *float32, _ float32, n int) { s0(d, n) },
					func(d, _ *float32, _ float32, n int) { s1(d, n) },
				})(dst, in[:n], 1)
				u0, u1 := rec(&unaryCalls, 0), rec(&unaryCalls, 1)
				w.unary([2]func(*float32, *float32, int){
					func(d, _ *float32, n int) { u0(d, n) },
					func(d, _ *float32, n int) { u1(d, n) },
				})(dst, in[:n])
				if n == 0 {
					if c := append(append(binCalls(w, in[:0], in[:0]), scalarCalls...), unaryCalls...); len(c) != 0 {
						t.Fatalf("%s: calls %v, want none", where, c)
					}
					continue
				}
				var calls []wrapperCall
				w.split(dst, false, func(lo, hi, e int) { calls = append(calls, wrapperCall{lo, hi, e}) })
				for name, c := range map[string][]wrapperCall{"bin": binCalls(w, in[:n], in[:n]), "scalar": scalarCalls, "unary": unaryCalls} {
					if !slices.Equal(c, calls) {
						t.Fatalf("%s: %s calls %v, split %v", where, name, c, calls)
					}
				}
				// kinds[l] has bit 0 set if line l (of buf, which starts on a line)
				// gets ordinary stores, bit 1 if non-temporal ones.
				kinds := make([]int, (off+n+line-1)/line)
				next := 0
				for _, c := range calls {
					if c.lo != next || c.hi <= c.lo || c.entry != 0 && c.entry != 1 {
						t.Fatalf("%s: calls %v do not cover the row in order, each element once", where, calls)
					}
					next = c.hi
					full := c.lo // the non-temporal stores' end
					if c.entry == 1 {
						if a := uintptr(unsafe.Pointer(&dst[c.lo])) % uintptr(4*tc.lanes); a != 0 {
							t.Fatalf("%s: calls %v: the non-temporal entry point starts at dst[%d], %d bytes past a vector boundary", where, calls, c.lo, a)
						}
						full += (c.hi - c.lo) / tc.lanes * tc.lanes
					}
					for i := c.lo; i < c.hi; i++ {
						if i < full {
							kinds[(off+i)/line] |= 2
						} else {
							kinds[(off+i)/line] |= 1
						}
					}
				}
				if next != n {
					t.Fatalf("%s: calls %v end at %d", where, calls, next)
				}
				if l := slices.Index(kinds, 3); l >= 0 {
					t.Fatalf("%s: calls %v give line %d both kinds of store", where, calls, l)
				}
				want := []wrapperCall{{0, n, 0}}
				if c := binCalls(w, dst, in[:n]); !slices.Equal(c, want) {
					t.Fatalf("%s, dst = a: calls %v, want %v", where, c, want)
				}
				if c := binCalls(w, in[:n], dst); !slices.Equal(c, want) {
					t.Fatalf("%s, dst = b: calls %v, want %v", where, c, want)
				}
				if c := binCalls(binWrapper{tc.lanes, false}, in[:n], in[:n]); !slices.Equal(c, want) {
					t.Fatalf("%s, not streaming: calls %v, want %v", where, c, want)
				}
			}
		}
	}
}

// TestStatsAheadEntries checks which entry points the norm gradients'
// statistics kernels call: the twins that prefetch their rows ahead in
// the AVX-512 streaming set, which says so with StatsAhead (the CPU
// backend then leaves out its own prefetches of the next row), the plain
// kernels elsewhere; and that only AVX-512 has LayerNormGradStatsAcc. The
// two entry points give the same results, so no other test tells them
// apart. Stand-ins replace the kernels: nothing runs the assembly.
func TestStatsAheadEntries(t *testing.T) {
	for _, set := range []struct {
		name string
		f    *asmFuncs
	}{{"avx2", &funcsAVX2}, {"avx512", &funcsAVX512}} {
		for _, nt := range []bool{false, true} {
			var calls []string
			f := *set.f
			for e := range 2 {
				rec := func(kernel string) { calls = append(calls, fmt.Sprintf("%s %d", kernel, e)) }
				if f.sumSquaresDot3[e] != nil {
					f.sumSquaresDot3[e] = func(*float32, *float32, *float32, int) (float64, float64) {
						rec("SumSquaresDot3")
						return 0, 0
					}
				}
				if f.layerNormGradStats[e] != nil {
					f.layerNormGradStats[e] = func(*float32, *float32, *float32, float64, int) (float64, float64, float64, float64) {
						rec("LayerNormGradStats")
						return 0, 0, 0, 0
					}
				}
				if f.layerNormGradStatsAcc[e] != nil {
					f.layerNormGradStatsAcc[e] = func(*float32, *float32, *float32, *float32, float64, int) (float64, float64, float64, float64) {
						rec("LayerNormGradStatsAcc")
						return 0, 0, 0, 0
					}
				}
			}
			k := buildSet(set.name, &f, nt)
			wide, ahead := set.name == "avx512", set.name == "avx512" && nt
			if k.StatsAhead != ahead {
				t.Errorf("%s nt=%v: StatsAhead %v, want %v", set.name, nt, k.StatsAhead, ahead)
			}
			if (k.LayerNormGradStatsAcc != nil) != wide {
				t.Fatalf("%s nt=%v: has LayerNormGradStatsAcc %v, want %v", set.name, nt, k.LayerNormGradStatsAcc != nil, wide)
			}
			x := make([]float32, 4)
			k.SumSquaresDot3(x, x, x)
			k.LayerNormGradStats(x, x, x, 0)
			entry := 0
			if ahead {
				entry = 1
			}
			want := []string{fmt.Sprint("SumSquaresDot3 ", entry), fmt.Sprint("LayerNormGradStats ", entry)}
			if wide {
				k.LayerNormGradStatsAcc(x, x, x, make([]float32, 4), 0)
				want = append(want, fmt.Sprint("LayerNormGradStatsAcc ", entry))
			}
			if !slices.Equal(calls, want) {
				t.Errorf("%s nt=%v: called %q, want %q", set.name, nt, calls, want)
			}
		}
	}
}

// pwModel is the amd64 sets' pwTail (gen_amd64.go) in Go: P(a) from the
// table p, 0 beyond p.max. AVX-512 (rounded false) takes the interval
// i = ⌊a·scale⌋ from a·scale + 1.5·2²³ rounded down, AVX2 (rounded true)
// truncates the product rounded to float32; both take v = a·scale − i,
// exact in float64 before its one rounding, as in the fused
// multiply-add. fma32 is the kernels' multiply-add (its float64 sum rounds
// twice, which can differ from one rounding only where the float64 result
// falls on a float32 midpoint).
func pwModel(p *pwPoly, a float32, rounded bool) float32 {
	if a > p.max {
		return 0
	}
	i := math.Floor(float64(a) * float64(p.scale))
	if rounded {
		i = math.Trunc(float64(a * p.scale))
	}
	v := float32(float64(a)*float64(p.scale) - i)
	j := int(i) % len(p.c[0]) // VPERMPS takes the index mod the entries
	last := len(p.c) - 1
	q := p.c[last][j]
	for k := last - 1; k >= 0; k-- {
		q = fma32(q, v, p.c[k][j])
	}
	return q
}

// TestPwGELU checks the amd64 sets' GELU kernels against pwModel bit for
// bit, with every length up to 70 and over 2²⁰ points across [−8, 8]
// (where the tables end, near 6, and beyond) and at every table's
// interval boundaries and max, and the tables themselves: max·scale
// below the number of intervals, exactly (AVX-512 rounds it down) and
// rounded to float32 (AVX2 truncates that), so that no a up to max
// reaches one more (whose number VPERMPS would take mod their number),
// and the rows pwRows and pwRows8 make of them.
func TestPwGELU(t *testing.T) {
	xs := sweep(-8, 8, 1<<20)
	xs = append(xs, 0, float32(math.Copysign(0, -1)))
	for _, p := range []*pwPoly{&pwGELU, &pwGELUGrad, &pwGELUTanh, &pwGELUTanhGrad,
		&pwGELU8, &pwGELUGrad8, &pwGELUTanh8, &pwGELUTanhGrad8} {
		edges := []float32{p.max}
		for i := 1; i < len(p.c[0]); i++ {
			edges = append(edges, float32(float64(i)/float64(p.scale)))
		}
		for _, e := range edges {
			for _, v := range []float32{math.Nextafter32(e, 0), e, math.Nextafter32(e, 10)} {
				xs = append(xs, v, -v)
			}
		}
	}
	dy := make([]float32, len(xs))
	for i := range dy {
		dy[i] = 1 - float32(i%7)/4
	}
	for _, set := range []struct {
		name                    string
		gelu, grad, tanh, tgrad *pwPoly
	}{
		{"avx512", &pwGELU, &pwGELUGrad, &pwGELUTanh, &pwGELUTanhGrad},
		{"avx2", &pwGELU8, &pwGELUGrad8, &pwGELUTanh8, &pwGELUTanhGrad8},
	} {
		k := Named(set.name)
		if k == nil {
			t.Logf("this CPU has no %s", set.name)
			continue
		}
		rounded := set.name == "avx2"
		fwd := func(p *pwPoly) func(x, _ float32) float32 {
			return func(x, _ float32) float32 {
				return float32(float64(max(x, 0)) - float64(abs32(x))*float64(pwModel(p, abs32(x), rounded)))
			}
		}
		grad := func(p *pwPoly) func(x, dy float32) float32 {
			return func(x, dy float32) float32 {
				d := pwModel(p, abs32(x), rounded)
				if x >= 0 {
					d = 1 - d
				}
				return dy * d
			}
		}
		cases := []struct {
			name  string
			p     *pwPoly
			model func(x, dy float32) float32
			run   func(d, x, dy []float32)
		}{
			{"GELU", set.gelu, fwd(set.gelu), func(d, x, _ []float32) { k.GELU(d, x) }},
			{"GELUGrad", set.grad, grad(set.grad), k.GELUGrad},
			{"GELUTanh", set.tanh, fwd(set.tanh), func(d, x, _ []float32) { k.GELUTanh(d, x) }},
			{"GELUTanhGrad", set.tgrad, grad(set.tgrad), k.GELUTanhGrad},
		}
		for _, c := range cases {
			n := len(c.p.c[0])
			if !(float64(c.p.max)*float64(c.p.scale) < float64(n)) || !(c.p.max*c.p.scale < float32(n)) {
				t.Errorf("%s %s: max·scale = %g (in float32 %g), want below %d", set.name, c.name,
					float64(c.p.max)*float64(c.p.scale), c.p.max*c.p.scale, n)
			}
			got := make([]float32, len(xs))
			for n := 1; n <= 70; n++ { // each length's tail
				c.run(got[:n], xs[len(xs)-n:], dy[len(xs)-n:])
				for i := range n {
					j := len(xs) - n + i
					if want := c.model(xs[j], dy[j]); math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("%s %s, %d elements: %g at x = %g, model %g", set.name, c.name, n, got[i], xs[j], want)
					}
				}
			}
			c.run(got, xs, dy)
			for i, x := range xs {
				if want := c.model(x, dy[i]); math.Float32bits(got[i]) != math.Float32bits(want) {
					t.Fatalf("%s %s(%g) = %g, model %g", set.name, c.name, x, got[i], want)
				}
			}
		}
	}
	// The rows the kernels read.
	r16, r8 := pwRows(&pwGELUTanhGrad), pwRows8(&pwGELUTanhGrad8)
	if r16[6][0] != pwGELUTanhGrad.scale || r16[7][15] != 0x1.8p23 || r16[8][3] != pwGELUTanhGrad.max || r16[5][9] != pwGELUTanhGrad.c[5][9] {
		t.Error("pwRows: rows out of place")
	}
	if r8[8][0] != pwGELUTanhGrad8.scale || r8[9][7] != pwGELUTanhGrad8.max || r8[7][2] != pwGELUTanhGrad8.c[7][2] {
		t.Error("pwRows8: rows out of place")
	}
}

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

// TestGaussTabScaling checks the arithmetic that AVX-512's e^{−x²/2}
// (gaussTab in gen_amd64.go) rests on, for every k the kernel meets up to
// geluMaxA (k/16 the multiple of 1/16 nearest −x²·log2e/2, from 0 down to
// −2011): the rounding sum m = gtMagic + k/16 holds k in its low bits;
// the entry of tGelu's last row that m's last four bits pick, plus m's
// bits shifted left by 19 (VPSLLD, VPADDD), is 2ⁿ·2^(j/16) for k = 16n + j
// exactly, a normal float32; and m·2ln2Hi − gtMagic·2ln2Hi, the fused
// multiply-add that takes (k/16)·2ln2Hi from m, is exact: the constant
// and the result are float32s. The accuracy tests cannot see a table
// entry one bit off (measured: GELU within its bound).
func TestGaussTabScaling(t *testing.T) {
	tab := tGelu[len(tGelu)-1] // the row that gaussTab permutes
	magic, c2, negC := cGtMagic[0], c2Ln2Hi[0], cNegGtMagic2Ln2Hi[0]
	if float64(negC) != -gtMagic*2*ln2Hi {
		t.Fatalf("cNegGtMagic2Ln2Hi = %g, want −gtMagic·2ln2Hi = %g exactly", negC, -gtMagic*2*ln2Hi)
	}
	// The lowest k, with room for the roundings of −x·log2e/2 and of the
	// sum (a fraction of a sixteenth at geluMaxA).
	a := float64(float32(geluMaxA))
	lo := int(math.Floor(16*(-0.5*log2e)*a*a)) - 1
	if lo < -16*126 {
		t.Fatalf("k reaches %d at geluMaxA, where 2ⁿ·2^(j/16) is below 2⁻¹²⁶", lo)
	}
	for k := lo; k <= 0; k++ {
		m := magic + float32(k)/16 // exact: m stays in gtMagic's binade
		bits := math.Float32bits(m)
		if got := int(int32(bits - math.Float32bits(magic))); got != k {
			t.Fatalf("gtMagic + %d/16 holds %d in its bits", k, got)
		}
		n, j := k>>4, k&15
		got := math.Float32frombits(math.Float32bits(tab[bits&15]) + bits<<19)
		if want := float32(math.Ldexp(float64(gtExp2T[j]), n)); got != want || got < 0x1p-126 {
			t.Fatalf("k = %d: table entry %d plus the shifted sum = %g, want 2^%d·%g = %g, normal", k, bits&15, got, n, gtExp2T[j], want)
		}
		exact := float64(k) / 16 * float64(c2)
		if got := math.FMA(float64(m), float64(c2), float64(negC)); got != exact || float64(float32(exact)) != exact {
			t.Fatalf("k = %d: m·2ln2Hi − gtMagic·2ln2Hi = %g, want (k/16)·2ln2Hi = %g, a float32", k, got, exact)
		}
	}
}

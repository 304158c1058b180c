package tokenizer

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// benchTexts are 1 MiB texts that stress different parts of the encoder:
// ordinary prose, one word of a million letters (a single pre-token for
// every pre-tokenizer, so the BPE merge loop sees a million symbols), a
// million spaces (one whitespace pre-token), and a million '<' (where
// every position starts an added-token candidate of Llama 3).
func benchTexts() map[string]string {
	const size = 1 << 20
	para := "Once upon a time, there was a little girl named Lily. She loved to play outside in the park, 1234567 times; café naïve 日本語 😀 don't I'M.\n"
	return map[string]string{
		"prose":  strings.Repeat(para, size/len(para)+1)[:size],
		"word":   strings.Repeat("supercalifragilistic", size/20+1)[:size],
		"spaces": strings.Repeat(" ", size),
		"angles": strings.Repeat("<", size),
	}
}

// realTokenizer loads a real file from SORA_TOKENIZER_DIR or skips.
func realTokenizer(b *testing.B, rel string) *Tokenizer {
	b.Helper()
	root := os.Getenv("SORA_TOKENIZER_DIR")
	if root == "" {
		b.Skip("SORA_TOKENIZER_DIR is not set (scripts/fetch-tokenizers.sh fills a folder for it)")
	}
	tok, err := Load(filepath.Join(root, rel))
	if err != nil {
		b.Skip(err)
	}
	return tok
}

// BenchmarkEncodeReal encodes 1 MiB texts with the real Llama 3.1 (byte-level
// BPE), Mistral (Llama 2's layout in tokenizer.json: the whole text is one
// word) and Llama 2 (tokenizer.model) files, and reports, besides the speed,
// how the time per byte at 1 MiB compares with that at 64 KiB of the same
// text measured in the same run: about 1 for linear time, 16 if quadratic.
func BenchmarkEncodeReal(b *testing.B) {
	texts := benchTexts()
	for _, file := range []string{"llama3.1/tokenizer.json", "mistral/tokenizer.json", "llama2-sp/tokenizer.model"} {
		for _, name := range []string{"prose", "word", "spaces", "angles"} {
			b.Run(filepath.Dir(file)+"/"+name, func(b *testing.B) {
				tok := realTokenizer(b, file)
				text := texts[name]
				small := text[:len(text)/16]
				perByte := func(s string) float64 {
					start := time.Now()
					tok.Encode(s, true, false)
					return float64(time.Since(start).Nanoseconds()) / float64(len(s))
				}
				ratio := perByte(text) / perByte(small)
				b.SetBytes(int64(len(text)))
				b.ResetTimer()
				for range b.N {
					tok.Encode(text, true, false)
				}
				b.ReportMetric(ratio, "1MiB/64KiB-ns/B")
			})
		}
	}
}

// BenchmarkLoadReal reads the real Llama 3.1 tokenizer.json (9 MB, 128 000
// tokens and 280 147 merges) and Llama 2's tokenizer.model.
func BenchmarkLoadReal(b *testing.B) {
	for _, file := range []string{"llama3.1/tokenizer.json", "llama2-sp/tokenizer.model"} {
		b.Run(filepath.Dir(file), func(b *testing.B) {
			realTokenizer(b, file)
			path := filepath.Join(os.Getenv("SORA_TOKENIZER_DIR"), file)
			b.ReportAllocs()
			b.ResetTimer() // the load above, which skips without the file, is not counted
			for range b.N {
				if _, err := Load(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// boxedRankMerge is the BPE merge loop as it was written first, with
// container/heap and boxed candidates holding the pair's ids: the baseline
// of BenchmarkRankMerge.
func boxedRankMerge(m *bpeModel, syms []int) []int {
	type cand struct{ rank, left, right, lid, rid, merged int }
	n := len(syms)
	if n < 2 {
		return syms
	}
	id := syms
	next := make([]int, n)
	prev := make([]int, n)
	alive := make([]bool, n)
	for i := range id {
		prev[i], next[i], alive[i] = i-1, i+1, true
	}
	next[n-1] = -1
	h := &boxedHeap{less: func(a, b any) bool {
		x, y := a.(cand), b.(cand)
		return x.rank < y.rank || x.rank == y.rank && x.left < y.left
	}}
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		if mg, ok := m.merges[pairKey(id[l], id[r])]; ok {
			heap.Push(h, cand{mg.rank, l, r, id[l], id[r], mg.id})
		}
	}
	for i := 0; i+1 < n; i++ {
		try(i, i+1)
	}
	for h.Len() > 0 {
		c := heap.Pop(h).(cand)
		if !alive[c.left] || !alive[c.right] || next[c.left] != c.right || id[c.left] != c.lid || id[c.right] != c.rid {
			continue
		}
		id[c.left] = c.merged
		alive[c.right] = false
		next[c.left] = next[c.right]
		if next[c.right] >= 0 {
			prev[next[c.right]] = c.left
		}
		try(prev[c.left], c.left)
		try(c.left, next[c.left])
	}
	out := syms[:0]
	for i := 0; i >= 0; i = next[i] {
		out = append(out, id[i])
	}
	return out
}

type boxedHeap struct {
	items []any
	less  func(a, b any) bool
}

func (h *boxedHeap) Len() int           { return len(h.items) }
func (h *boxedHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *boxedHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *boxedHeap) Push(x any)         { h.items = append(h.items, x) }
func (h *boxedHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// naiveRankMerge is the definition of BPE merging: while some adjacent pair
// has a merge, merge the one with the lowest rank, the leftmost on ties.
func naiveRankMerge(m *bpeModel, syms []int) []int {
	s := append([]int(nil), syms...)
	for {
		best, at := -1, -1
		var into int
		for i := 0; i+1 < len(s); i++ {
			if mg, ok := m.merges[pairKey(s[i], s[i+1])]; ok && (best < 0 || mg.rank < best) {
				best, at, into = mg.rank, i, mg.id
			}
		}
		if at < 0 {
			return s
		}
		s = append(append(s[:at:at], into), s[at+2:]...)
	}
}

// TestRankMergeMatchesNaive checks the queue-based merge against the
// definition on random words over a small vocabulary whose merges overlap
// (aa, aaa, ab, ba...), where stale candidates and ties abound.
func TestRankMergeMatchesNaive(t *testing.T) {
	m := &bpeModel{vocab: map[string]int{}, merges: map[uint64]bpeMerge{}}
	add := func(p string) int {
		if id, ok := m.vocab[p]; ok {
			return id
		}
		m.vocab[p] = len(m.vocab)
		return m.vocab[p]
	}
	for _, c := range []string{"a", "b", "c"} {
		add(c)
	}
	for rank, pair := range [][2]string{{"a", "a"}, {"a", "b"}, {"b", "a"}, {"aa", "a"}, {"ab", "c"}, {"b", "b"}, {"a", "aa"},
		{"aa", "aa"}, {"c", "a"}, {"ba", "b"}, {"bb", "c"}, {"ca", "ab"}, {"aaa", "b"}, {"c", "c"}} {
		l, r := add(pair[0]), add(pair[1])
		m.merges[pairKey(l, r)] = bpeMerge{rank: rank, id: add(pair[0] + pair[1])}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		syms := make([]int, 1+rng.IntN(40))
		for i := range syms {
			syms[i] = rng.IntN(3)
		}
		want := naiveRankMerge(m, syms)
		if got := m.merge(append([]int(nil), syms...)); !reflect.DeepEqual(got, want) {
			t.Fatalf("merge(%v) = %v, want %v", syms, got, want)
		}
	}
}

// TestScorePriority checks that priorities order scores from the highest,
// with -0 and +0 equal.
func TestScorePriority(t *testing.T) {
	scores := []float32{float32(math.Inf(1)), 1e30, 3.5, 1, 1e-40, 0, -1e-40, -1, -3.5, -1e30, float32(math.Inf(-1))}
	for i := 1; i < len(scores); i++ {
		if scorePriority(scores[i-1]) >= scorePriority(scores[i]) {
			t.Errorf("score %g does not come before %g", scores[i-1], scores[i])
		}
	}
	if negZero := float32(math.Copysign(0, -1)); scorePriority(negZero) != scorePriority(0) {
		t.Error("-0 and +0 differ")
	}
}

// BenchmarkRankMerge merges the symbols of 1 MiB of prose as one word (as
// a tokenizer.json of Llama 2's layout sees a text: no pre-tokenizer) with
// sp-tok512's merges, with the queue of packed keys and with the first
// container/heap version, and reports the speed-up measured in this run.
func BenchmarkRankMerge(b *testing.B) {
	tok, err := LoadHF(filepath.Join("testdata", "sp-tok512", "tokenizer.json"))
	if err != nil {
		b.Fatal(err)
	}
	m := &tok.hf.bpe
	var syms []int
	for _, r := range strings.ReplaceAll("▁"+benchTexts()["prose"], " ", "▁") {
		if id, ok := m.vocab[string(r)]; ok {
			syms = append(syms, id)
		}
	}
	work := make([]int, len(syms))
	var ns [2]float64
	for i, f := range []func(*bpeModel, []int) []int{(*bpeModel).merge, boxedRankMerge} {
		b.Run([]string{"queue", "boxed"}[i], func(b *testing.B) {
			for range b.N {
				copy(work, syms)
				f(m, work)
			}
			ns[i] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
	}
	if ns[0] > 0 && ns[1] > 0 {
		b.Logf("%d symbols: queue %.0f ms, container/heap %.0f ms, speed-up %.1fx", len(syms), ns[0]/1e6, ns[1]/1e6, ns[1]/ns[0])
	}
}

// naiveNext is the definition of the added-token search: the leftmost
// position where a pattern starts, the longest pattern there (the first
// listed among equal ones).
func naiveNext(pats []addedPattern, s string, i int) (int, addedPattern, bool) {
	for ; i < len(s); i++ {
		best := -1
		for k, p := range pats {
			if strings.HasPrefix(s[i:], p.text) && (best < 0 || len(p.text) > len(pats[best].text)) {
				best = k
			}
		}
		if best >= 0 {
			return i, pats[best], true
		}
	}
	return 0, addedPattern{}, false
}

// TestAddedMatcherNaive checks the trie search against the definition on
// random texts over patterns that are prefixes of one another and share
// prefixes, including a repeated pattern.
func TestAddedMatcherNaive(t *testing.T) {
	var toks []*hfAddedToken
	for i, c := range []string{"<", "<|", "<|a|>", "<|ab|>", "<|ab", "ab", "b", "|>", "<|a|>", "ba|"} {
		toks = append(toks, &hfAddedToken{ID: i, Content: c})
	}
	m := newAddedMatcher(toks, nil)
	var pats []addedPattern
	for _, a := range toks {
		pats = append(pats, addedPattern{a.Content, a})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		b := make([]byte, rng.IntN(16))
		for i := range b {
			b[i] = "<|ab>x"[rng.IntN(6)]
		}
		s := string(b)
		for i := 0; i <= len(s); i++ {
			gs, gp, gok := m.next(s, i)
			ws, wp, wok := naiveNext(pats, s, i)
			if gs != ws || gp != wp || gok != wok {
				t.Fatalf("next(%q, %d) = %d %q (id %v) %v, want %d %q (id %v) %v", s, i, gs, gp.text, gp.token, gok, ws, wp.text, wp.token, wok)
			}
		}
	}
}

// byFirstNext is the first added-token search: the patterns listed by
// their first byte, longest first, each tried at every position where
// that byte is. It is the baseline of BenchmarkAddedMatcher.
func byFirstNext(pats []addedPattern) func(s string, i int) (int, addedPattern, bool) {
	var byFirst [256][]addedPattern
	for _, p := range pats {
		byFirst[p.text[0]] = append(byFirst[p.text[0]], p)
	}
	for _, l := range byFirst {
		sort.SliceStable(l, func(a, b int) bool { return len(l[a].text) > len(l[b].text) })
	}
	return func(s string, i int) (int, addedPattern, bool) {
		for ; i < len(s); i++ {
			for _, q := range byFirst[s[i]] {
				if strings.HasPrefix(s[i:], q.text) {
					return i, q, true
				}
			}
		}
		return 0, addedPattern{}, false
	}
}

// BenchmarkAddedMatcher splits 1 MiB of "<" (every byte starts a candidate
// of Llama 3's special tokens) and of prose with Llama 3's 256 special
// tokens, with the trie and with the first search (byFirstNext), and
// reports the speed-up measured in this run.
func BenchmarkAddedMatcher(b *testing.B) {
	var toks []*hfAddedToken
	for _, c := range []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"} {
		toks = append(toks, &hfAddedToken{ID: len(toks), Content: c})
	}
	for len(toks) < 256 {
		toks = append(toks, &hfAddedToken{ID: len(toks), Content: fmt.Sprintf("<|reserved_special_token_%d|>", len(toks))})
	}
	m := newAddedMatcher(toks, nil)
	var pats []addedPattern
	for _, a := range toks {
		pats = append(pats, addedPattern{a.Content, a})
	}
	for _, name := range []string{"angles", "prose"} {
		text := benchTexts()[name]
		var ns [2]float64
		for i, next := range []func(string, int) (int, addedPattern, bool){m.next, byFirstNext(pats)} {
			b.Run(name+"/"+[]string{"trie", "by-first-byte"}[i], func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				for range b.N {
					for j := 0; j < len(text); {
						start, p, ok := next(text, j)
						if !ok {
							break
						}
						j = start + len(p.text)
					}
				}
				ns[i] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			})
		}
		if ns[0] > 0 && ns[1] > 0 {
			b.Logf("%s: trie %.1f ms, by first byte %.1f ms, speed-up %.1fx", name, ns[0]/1e6, ns[1]/1e6, ns[1]/ns[0])
		}
	}
}

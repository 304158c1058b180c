package tokenizer

import (
	"container/heap"
	"fmt"
	"unicode/utf8"
)

// bpeModel is the model of a tokenizer.json of type BPE: Hugging Face's
// rank-based byte-pair encoding of one pre-tokenized word.
type bpeModel struct {
	vocab  map[string]int
	merges map[uint64]bpeMerge // pairKey(left id, right id) → its merge
	// unk is the unknown token's id, -1 without one (unknown characters
	// are then dropped, as Hugging Face drops them).
	unk          int
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
}

// bpeMerge is one merge rule: its rank (lower merges first) and the id of
// the token it makes.
type bpeMerge struct {
	rank, id int
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// tokenize appends the ids of word to out, following the BPE model of
// Hugging Face tokenizers: with ignore_merges a word that is itself in the
// vocabulary is one token; otherwise each character becomes its token, or
// its bytes' "<0xXX>" tokens with byte_fallback (when all exist), or the
// unknown token (consecutive ones fused into one with fuse_unk); then the
// adjacent pair whose merge has the lowest rank is merged, the leftmost on
// ties, until no pair has a merge. A byte that is not valid UTF-8 counts as
// a character of its own.
func (m *bpeModel) tokenize(word string, out []int) []int {
	if word == "" {
		return out
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(out, id)
		}
	}
	syms := make([]int, 0, len(word))
	pendingUnk := false // an unknown token not yet added (Hugging Face adds it late)
	for i := 0; i < len(word); {
		_, size := utf8.DecodeRuneInString(word[i:])
		c := word[i : i+size]
		i += size
		if id, ok := m.vocab[c]; ok {
			if pendingUnk {
				syms = append(syms, m.unk)
				pendingUnk = false
			}
			syms = append(syms, id)
			continue
		}
		if m.byteFallback {
			if n, ok := m.appendBytes(syms, c); ok {
				// As in Hugging Face, a pending unknown token is not
				// added before the bytes: it comes after them.
				syms = n
				continue
			}
		}
		if m.unk < 0 {
			continue
		}
		if pendingUnk && !m.fuseUnk {
			syms = append(syms, m.unk)
		}
		pendingUnk = true
	}
	if pendingUnk {
		syms = append(syms, m.unk)
	}
	return append(out, m.merge(syms)...)
}

// appendBytes appends the byte-fallback tokens of c's bytes, or reports
// false if one of them is missing from the vocabulary.
func (m *bpeModel) appendBytes(syms []int, c string) ([]int, bool) {
	n := len(syms)
	for j := 0; j < len(c); j++ {
		id, ok := m.vocab[bytePieceName(c[j])]
		if !ok {
			return syms[:n], false
		}
		syms = append(syms, id)
	}
	return syms, true
}

// bytePieceName is the byte-fallback piece of b, "<0xXX>" in upper case.
func bytePieceName(b byte) string { return fmt.Sprintf("<0x%02X>", b) }

// rankCandidate is a possible merge of the pair starting at node left.
type rankCandidate struct {
	rank        int
	left, right int // node indices, which keep sequence order
	lid, rid    int // token ids of the pair when pushed, to detect stale entries
	merged      int
}

type rankCandidates []rankCandidate

func (h rankCandidates) Len() int { return len(h) }
func (h rankCandidates) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].left < h[j].left
}
func (h rankCandidates) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *rankCandidates) Push(x any)   { *h = append(*h, x.(rankCandidate)) }
func (h *rankCandidates) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// merge applies the merges to syms in place of a rescan per merge: a heap
// of candidate pairs ordered by rank then position, and a linked list of
// the symbols left.
func (m *bpeModel) merge(syms []int) []int {
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
	var h rankCandidates
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		if mg, ok := m.merges[pairKey(id[l], id[r])]; ok {
			heap.Push(&h, rankCandidate{rank: mg.rank, left: l, right: r, lid: id[l], rid: id[r], merged: mg.id})
		}
	}
	for i := 0; i+1 < n; i++ {
		try(i, i+1)
	}
	for h.Len() > 0 {
		c := heap.Pop(&h).(rankCandidate)
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

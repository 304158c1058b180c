package tokenizer

import (
	"fmt"
	"math"
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
		id, ok := m.vocab[bytePieceNames[c[j]]]
		if !ok {
			return syms[:n], false
		}
		syms = append(syms, id)
	}
	return syms, true
}

// bytePieceNames holds the byte-fallback piece of each byte, "<0xXX>" in
// upper case, made once rather than formatted per byte while encoding.
var bytePieceNames = func() (names [256]string) {
	for b := range names {
		names[b] = fmt.Sprintf("<0x%02X>", b)
	}
	return names
}()

// mergeQueue is a min-heap of merge candidates, each packed into a uint64
// key: its priority in the high 32 bits (lower first) and the index of its
// left symbol in the low 32 bits, so that ties go to the leftmost pair, as
// every merge loop here wants. Nothing else is stored: a popped candidate
// is checked against the symbols as they are then, and is stale unless the
// pair now at its position has the same priority. Such a pair may differ
// from the one pushed (another pair with an equal score), but then it was
// pushed with the same key itself, so taking it now merges what its own
// entry would have. Keys of 8 bytes with integer comparisons keep the heap
// small: container/heap's boxed entries took two thirds of the time of
// encoding a long word. Symbol indices must be below 2^32.
type mergeQueue []uint64

func mergeKey(priority uint32, left int) uint64 { return uint64(priority)<<32 | uint64(uint32(left)) }

func (q *mergeQueue) push(k uint64) {
	h := append(*q, k)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	*q = h
}

// pop removes and returns the smallest key and the left index and priority
// packed in it.
func (q *mergeQueue) pop() (left int, priority uint32) {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h[r] < h[c] {
			c = r
		}
		if h[i] <= h[c] {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	*q = h
	return int(uint32(top)), uint32(top >> 32)
}

// scorePriority maps a merge score to a mergeQueue priority: higher scores
// first, equal scores (-0 and +0 included) equal. Scores are never NaN.
func scorePriority(s float32) uint32 {
	if s == 0 {
		s = 0 // -0 becomes +0
	}
	b := math.Float32bits(s)
	if b&(1<<31) != 0 {
		b = ^b // negative: larger magnitudes lower
	} else {
		b |= 1 << 31
	}
	return ^b // b increases with s; the queue pops the lowest first
}

// symbolList is a doubly linked list over the symbols of a word being
// merged: a merge keeps the left node and unlinks the right one.
type symbolList struct {
	prev, next []int
	alive      []bool
}

func newSymbolList(n int) symbolList {
	l := symbolList{make([]int, n), make([]int, n), make([]bool, n)}
	for i := range n {
		l.prev[i], l.next[i], l.alive[i] = i-1, i+1, true
	}
	l.next[n-1] = -1
	return l
}

// unlink removes node r, which follows a live node.
func (l symbolList) unlink(r int) {
	left := l.prev[r]
	l.alive[r] = false
	l.next[left] = l.next[r]
	if l.next[r] >= 0 {
		l.prev[l.next[r]] = left
	}
}

// merge applies the merges to syms with a queue of candidate pairs ordered
// by rank then position and a linked list of the symbols left, in place of
// a rescan per merge.
func (m *bpeModel) merge(syms []int) []int {
	n := len(syms)
	if n < 2 {
		return syms
	}
	id := syms
	list := newSymbolList(n)
	var q mergeQueue
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		if mg, ok := m.merges[pairKey(id[l], id[r])]; ok {
			q.push(mergeKey(uint32(mg.rank), l))
		}
	}
	for i := 0; i+1 < n; i++ {
		try(i, i+1)
	}
	for len(q) > 0 {
		l, rank := q.pop()
		r := list.next[l]
		if !list.alive[l] || r < 0 {
			continue
		}
		mg, ok := m.merges[pairKey(id[l], id[r])]
		if !ok || uint32(mg.rank) != rank {
			continue // stale: the pair at l has changed since
		}
		id[l] = mg.id
		list.unlink(r)
		try(list.prev[l], l)
		try(l, list.next[l])
	}
	out := syms[:0]
	for i := 0; i >= 0; i = list.next[i] {
		out = append(out, id[i])
	}
	return out
}

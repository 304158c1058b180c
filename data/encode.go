package data

import (
	"fmt"
	"slices"
)

// Encoder turns text into token ids, optionally with BOS first and EOS
// last: the method of models/tokenizer's Tokenizer.
type Encoder interface {
	Encode(text string, bos, eos bool) []int
}

// Sequence is one tokenized training or evaluation example.
type Sequence struct {
	// Tokens starts with BOS.
	Tokens []int32
	// PromptLen is the number of leading tokens (BOS included) that are
	// prompt: a causal LM is trained to predict only the tokens after them.
	// 0 trains every next token. With Trained set, no token before
	// PromptLen is trained, but not every token after it is.
	PromptLen int
	// Trained, when not nil, says which tokens the loss trains, one entry
	// per token: Trained[t] for token t, predicted from the tokens before
	// it (Trained[0] is never true: nothing predicts the first token).
	// nil trains the tokens from max(PromptLen, 1) to the end. The
	// encoders set it only where PromptLen cannot say what is trained: a
	// conversation with several assistant turns, or with text after its
	// last trained span.
	Trained []bool
	// Label is the class of a classification example (0 for LM examples).
	Label int
	// Row is the example's 0-based index in its data set.
	Row int
}

// EncodeStats reports what encoding had to do: to fit the length limit,
// and where a merge crossed the start or end of a trained span.
type EncodeStats struct {
	// Truncated counts sequences cut to the length limit (their EOS, or
	// for classification their end, lost).
	Truncated int
	// Dropped counts LM examples left with no token to train within the
	// length limit (the prompt alone fills it); they are left out.
	Dropped int
	// Tokens is the number of tokens kept, and Trained the number of target
	// tokens the loss counts (LM) or sequences (classification).
	Tokens, Trained int
	// Split counts LM sequences in which a boundary between untrained and
	// trained text falls inside a token of the whole text's encoding (a
	// merge across it). EncodeLM and [Set.Encode] train that token.
	Split int
}

// EncodeLM tokenizes instruction examples for causal LM training as
// LLM-Adapters' finetune.py does with train_on_inputs off: BOS, the
// prompt, the output and EOS, cut to maxLen tokens (EOS is only added
// when it fits), with the prompt's tokens excluded from the loss.
// (finetune.py's default, train_on_inputs on, which its published
// commands keep, trains the prompt's tokens too.) The prompt length is the
// length of the prompt encoded alone (with BOS), or of the common prefix
// of the two encodings when a merge crosses the boundary.
func EncodeLM(enc Encoder, rows []Example, maxLen int) ([]Sequence, EncodeStats, error) {
	var st EncodeStats
	if maxLen < 2 {
		return nil, st, fmt.Errorf("data: maximum length %d; want at least 2 tokens", maxLen)
	}
	out := make([]Sequence, 0, len(rows))
	for i, r := range rows {
		prompt := enc.Encode(r.Prompt(), true, false)
		full := enc.Encode(r.Text(), true, true)
		pl := commonPrefix(prompt, full)
		if pl < len(prompt) {
			st.Split++
		}
		if len(full) > maxLen {
			full = full[:maxLen]
			st.Truncated++
		}
		if pl >= len(full) {
			st.Dropped++
			continue
		}
		seq := Sequence{Tokens: toInt32(full), PromptLen: pl, Row: i}
		st.Tokens += len(full)
		st.Trained += len(full) - pl
		out = append(out, seq)
	}
	return out, st, nil
}

// EncodePrompts tokenizes the prompts of rows (BOS first where the
// tokenizer adds one), for generation by a model with maxLen positions. A
// prompt that fills them (maxLen tokens or more) keeps its BOS and its
// last tokens, maxLen−1 in all, so that one token can still be generated;
// st.Truncated counts such prompts and st.Tokens the tokens kept. maxLen
// must be at least 2: there is no value that means "no limit".
func EncodePrompts(enc Encoder, rows []Example, maxLen int) (prompts [][]int, st EncodeStats, err error) {
	if maxLen < 2 {
		return nil, st, fmt.Errorf("data: maximum prompt length %d; want at least 2 tokens (BOS and one more, leaving room for one generated token)", maxLen)
	}
	bos := bosPrefix(enc)
	prompts = make([][]int, len(rows))
	for i, r := range rows {
		prompts[i] = cutPrompt(enc.Encode(r.Prompt(), true, false), maxLen, bos, &st)
	}
	return prompts, st, nil
}

// bosPrefix returns what enc puts before every text asked to start with
// BOS: the BOS token, or nothing for a tokenizer that adds none (GPT-2's,
// SmolLM2's).
func bosPrefix(enc Encoder) []int { return enc.Encode("", true, false) }

// cutPrompt cuts a prompt p that fills maxLen positions to its last
// maxLen−1 tokens, keeping the bos prefix in front where p starts with it,
// and counts it in st.
func cutPrompt(p []int, maxLen int, bos []int, st *EncodeStats) []int {
	if len(p) >= maxLen {
		keep := 0
		if len(bos) <= maxLen-1 && len(p) >= len(bos) && slices.Equal(p[:len(bos)], bos) {
			keep = len(bos)
		}
		p = append(slices.Clone(p[:keep]), p[len(p)-(maxLen-1-keep):]...)
		st.Truncated++
	}
	st.Tokens += len(p)
	return p
}

// EncodeClassify tokenizes classification texts: BOS and the text, cut to
// maxLen tokens (the head reads the last token, so a long text keeps its
// beginning and loses its end).
func EncodeClassify(enc Encoder, set *ClassifySet, maxLen int) ([]Sequence, EncodeStats, error) {
	var st EncodeStats
	if maxLen < 2 {
		return nil, st, fmt.Errorf("data: maximum length %d; want at least 2 tokens", maxLen)
	}
	out := make([]Sequence, 0, len(set.Examples))
	for i, e := range set.Examples {
		if e.Label < 0 || e.Label >= len(set.Classes) {
			return nil, st, fmt.Errorf("data: example %d has label %d; want 0 to %d", i+1, e.Label, len(set.Classes)-1)
		}
		t := enc.Encode(e.Text, true, false)
		if len(t) == 0 {
			// Only an empty text with a tokenizer that has no BOS: there
			// is no last token for the head to read.
			return nil, st, fmt.Errorf("data: example %d has no tokens (an empty text, and the tokenizer adds no BOS)", i+1)
		}
		if len(t) > maxLen {
			t = t[:maxLen]
			st.Truncated++
		}
		st.Tokens += len(t)
		st.Trained++
		out = append(out, Sequence{Tokens: toInt32(t), Label: e.Label, Row: i})
	}
	return out, st, nil
}

// Batch is a set of sequences padded on the right to one length, in the
// layout of models/llama's Batch: one sequence per row ([MakeBatch]), or
// several ([MakePackedBatch]: sequence packing).
type Batch struct {
	// Tokens holds Size·Len ids, row-major; padding is id 0.
	Tokens []int32
	// Size is the number of rows, Len the longest one's length.
	Size, Len int
	// Lengths are the rows' real lengths. PromptLens the prompt lengths and
	// Labels the classes, one per sequence, of a batch of one sequence per
	// row (nil in a packed batch, whose Docs hold them).
	Lengths, PromptLens []int
	Labels              []int32
	// Trained holds each sequence's Trained mask (see [Sequence]); an
	// entry is nil where PromptLens says what is trained.
	Trained [][]bool
	// Segments and Docs are those of a packed batch (nil otherwise):
	// Segments numbers each position's sequence within its row, Size·Len
	// of them, the padding after a row's sequences numbered after them
	// (models/llama's Batch.Segments); Docs lists each row's sequences in
	// order.
	Segments []int32
	Docs     [][]Doc
}

// MakeBatch pads seqs[idx[0]], seqs[idx[1]], … into one batch.
func MakeBatch(seqs []Sequence, idx []int) (Batch, error) {
	if len(idx) == 0 {
		return Batch{}, fmt.Errorf("data: empty batch")
	}
	b := Batch{Size: len(idx)}
	for _, i := range idx {
		if i < 0 || i >= len(seqs) {
			return Batch{}, fmt.Errorf("data: batch index %d outside %d sequences", i, len(seqs))
		}
		if len(seqs[i].Tokens) == 0 {
			return Batch{}, fmt.Errorf("data: sequence %d is empty", i)
		}
		if m := seqs[i].Trained; m != nil && len(m) != len(seqs[i].Tokens) {
			return Batch{}, fmt.Errorf("data: sequence %d has %d tokens but a mask of %d; want one mask entry per token", i, len(seqs[i].Tokens), len(m))
		}
		b.Len = max(b.Len, len(seqs[i].Tokens))
	}
	b.Tokens = make([]int32, b.Size*b.Len)
	for r, i := range idx {
		s := seqs[i]
		copy(b.Tokens[r*b.Len:], s.Tokens)
		b.Lengths = append(b.Lengths, len(s.Tokens))
		b.PromptLens = append(b.PromptLens, s.PromptLen)
		b.Labels = append(b.Labels, int32(s.Label))
		b.Trained = append(b.Trained, s.Trained)
	}
	return b, nil
}

// LossPositions returns, for an LM batch, the flat positions (row·Len + t)
// whose logits predict a trained token, and those tokens: position t−1
// with target token t for every trained token t of each sequence (from
// Trained where a sequence has a mask, else from max(PromptLen, 1) to its
// end). In a packed batch these are each sequence's own, so the last
// position of a sequence, which would predict the next one's first token,
// is never among them.
func (b Batch) LossPositions() (positions, targets []int32) {
	if b.Docs != nil {
		for r, docs := range b.Docs {
			row := b.Tokens[r*b.Len : (r+1)*b.Len]
			for _, d := range docs {
				for next := 1; next < d.Len; next++ {
					if trainedAt(d.PromptLen, d.Trained, next) {
						positions = append(positions, int32(r*b.Len+d.Start+next-1))
						targets = append(targets, row[d.Start+next])
					}
				}
			}
		}
		return positions, targets
	}
	for r := 0; r < b.Size; r++ {
		n := b.Lengths[r]
		var mask []bool
		if r < len(b.Trained) {
			mask = b.Trained[r]
		}
		row := b.Tokens[r*b.Len : (r+1)*b.Len]
		for next := 1; next < n; next++ {
			if trainedAt(b.PromptLens[r], mask, next) {
				positions = append(positions, int32(r*b.Len+next-1))
				targets = append(targets, row[next])
			}
		}
	}
	return positions, targets
}

// trainedAt reports whether token t (t ≥ 1) of a sequence with prompt
// length promptLen and mask (nil for none) is trained.
func trainedAt(promptLen int, mask []bool, t int) bool {
	if mask != nil {
		return t < len(mask) && mask[t]
	}
	return t >= promptLen
}

// Targets returns the number of loss terms of the sequences idx: trained
// tokens for LM sequences (those after the prompt, or those their Trained
// mask marks), or one per sequence for classification.
func Targets(seqs []Sequence, idx []int, classify bool) int {
	if classify {
		return len(idx)
	}
	n := 0
	for _, i := range idx {
		s := seqs[i]
		if s.Trained == nil {
			n += max(0, len(s.Tokens)-max(s.PromptLen, 1))
			continue
		}
		for t := 1; t < len(s.Tokens); t++ {
			if trainedAt(s.PromptLen, s.Trained, t) {
				n++
			}
		}
	}
	return n
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func toInt32(t []int) []int32 {
	o := make([]int32, len(t))
	for i, v := range t {
		o[i] = int32(v)
	}
	return o
}

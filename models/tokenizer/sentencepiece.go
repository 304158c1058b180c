package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"unicode/utf8"
)

// SentencePiece piece types (ModelProto.SentencePiece.Type).
const (
	spNormal      = 1
	spUnknown     = 2
	spControl     = 3
	spUserDefined = 4
	spUnused      = 5
	spByte        = 6
)

var spTypeNames = map[int]string{spNormal: "NORMAL", spUnknown: "UNKNOWN", spControl: "CONTROL",
	spUserDefined: "USER_DEFINED", spUnused: "UNUSED", spByte: "BYTE"}

// spModel is what a tokenizer.model adds to a Tokenizer.
type spModel struct {
	pieces  []string // as in the file, "▁" for spaces
	types   []int
	normal  map[string]int // pieces that text may merge into: NORMAL and USER_DEFINED
	special *addedMatcher  // UNKNOWN, CONTROL and USER_DEFINED pieces, split out of text first
	unk     int
	bytes   [256]int // byte-fallback token of each byte, -1 without byte fallback

	byteFallback     bool
	addDummyPrefix   bool
	removeExtraSpace bool
	escapeSpaces     bool
}

// LoadSentencePiece reads a SentencePiece tokenizer.model (the protobuf
// ModelProto) of BPE type, as Llama 2, TinyLlama and Mistral ship. It
// encodes as Hugging Face's LlamaTokenizer does: the UNKNOWN, CONTROL and
// USER_DEFINED pieces ("<unk>", "<s>", "</s>") are split out of the text
// first, as special tokens; each piece of text between them is then
// encoded by SentencePiece's BPE: spaces become "▁", one "▁" is prepended
// (add_dummy_prefix), and adjacent symbols are merged best score first
// (leftmost on ties), characters left unknown falling back to their bytes'
// tokens. BOS and EOS are trainer_spec's bos_id and eos_id.
func LoadSentencePiece(path string) (*Tokenizer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return ParseSentencePiece(b, path)
}

// pbReader reads protobuf wire format.
type pbReader struct {
	b   []byte
	off int
}

func (r *pbReader) varint() (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		if r.off >= len(r.b) {
			return 0, fmt.Errorf("truncated varint at byte %d", r.off)
		}
		c := r.b[r.off]
		r.off++
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("varint longer than 10 bytes at byte %d", r.off)
}

// field reads the next field: its number, wire type, and value (the varint
// or fixed value in v, the bytes of a length-delimited one in data).
func (r *pbReader) field() (num int, wire int, v uint64, data []byte, err error) {
	start := r.off
	tag, err := r.varint()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	num, wire = int(tag>>3), int(tag&7)
	if num == 0 || tag>>3 > 1<<29 {
		return 0, 0, 0, nil, fmt.Errorf("bad field number %d at byte %d", tag>>3, start)
	}
	switch wire {
	case 0:
		v, err = r.varint()
	case 1:
		if len(r.b)-r.off < 8 {
			return 0, 0, 0, nil, fmt.Errorf("truncated 64-bit field %d at byte %d", num, start)
		}
		v = binary.LittleEndian.Uint64(r.b[r.off:])
		r.off += 8
	case 5:
		if len(r.b)-r.off < 4 {
			return 0, 0, 0, nil, fmt.Errorf("truncated 32-bit field %d at byte %d", num, start)
		}
		v = uint64(binary.LittleEndian.Uint32(r.b[r.off:]))
		r.off += 4
	case 2:
		var n uint64
		if n, err = r.varint(); err != nil {
			return
		}
		if n > uint64(len(r.b)-r.off) {
			return 0, 0, 0, nil, fmt.Errorf("field %d at byte %d is %d bytes long, past the end (%d bytes left)", num, start, n, len(r.b)-r.off)
		}
		data = r.b[r.off : r.off+int(n)]
		r.off += int(n)
	default:
		return 0, 0, 0, nil, fmt.Errorf("field %d at byte %d has wire type %d; expected 0, 1, 2 or 5", num, start, wire)
	}
	return num, wire, v, data, err
}

// eachField calls f for every field of message b.
func eachField(b []byte, f func(num, wire int, v uint64, data []byte) error) error {
	r := &pbReader{b: b}
	for r.off < len(r.b) {
		num, wire, v, data, err := r.field()
		if err != nil {
			return err
		}
		if err := f(num, wire, v, data); err != nil {
			return err
		}
	}
	return nil
}

// wantWire checks a field's wire type.
func wantWire(msg string, num, wire, want int) error {
	if wire != want {
		return fmt.Errorf("%s field %d has wire type %d; expected %d", msg, num, wire, want)
	}
	return nil
}

// ParseSentencePiece decodes the contents of a tokenizer.model; name is
// used in error messages. See LoadSentencePiece.
func ParseSentencePiece(b []byte, name string) (*Tokenizer, error) {
	sp := &spModel{normal: map[string]int{}, addDummyPrefix: true, escapeSpaces: true, removeExtraSpace: true}
	var scores []float32
	modelType := 1 // UNIGRAM, the proto's default
	bos, eos, unkID := 1, 2, 0
	haveTrainer, haveNormalizer := false, false
	err := eachField(b, func(num, wire int, v uint64, data []byte) error {
		switch num {
		case 1: // pieces
			if err := wantWire("ModelProto", num, wire, 2); err != nil {
				return err
			}
			id := len(sp.pieces)
			piece, score, typ, err := parsePiece(data)
			if err != nil {
				return fmt.Errorf("pieces[%d]: %v", id, err)
			}
			sp.pieces = append(sp.pieces, piece)
			scores = append(scores, score)
			sp.types = append(sp.types, typ)
		case 2: // trainer_spec
			if err := wantWire("ModelProto", num, wire, 2); err != nil {
				return err
			}
			haveTrainer = true
			return eachField(data, func(num, wire int, v uint64, _ []byte) error {
				i32 := int(int32(v))
				switch num {
				case 3:
					modelType = i32
				case 24:
					if v != 0 {
						return fmt.Errorf("trainer_spec.treat_whitespace_as_suffix is true; not supported")
					}
				case 35:
					sp.byteFallback = v != 0
				case 40:
					unkID = i32
				case 41:
					bos = i32
				case 42:
					eos = i32
				default:
					return nil
				}
				return wantWire("trainer_spec", num, wire, 0)
			})
		case 3: // normalizer_spec
			if err := wantWire("ModelProto", num, wire, 2); err != nil {
				return err
			}
			haveNormalizer = true
			return parseNormalizerSpec(data, sp)
		case 5: // denormalizer_spec
			return eachField(data, func(num, wire int, v uint64, data []byte) error {
				if num == 2 && len(data) > 0 {
					return fmt.Errorf("denormalizer_spec has a precompiled_charsmap; not supported")
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: not a valid SentencePiece model: %v", name, err)
	}
	if !haveTrainer {
		return nil, fieldError(name, "trainer_spec", "missing; expected a SentencePiece model of type BPE")
	}
	if modelType != 2 {
		names := map[int]string{1: "UNIGRAM", 3: "WORD", 4: "CHAR"}
		typ := names[modelType]
		if typ == "" {
			typ = fmt.Sprint(modelType)
		}
		return nil, fieldError(name, "trainer_spec.model_type", "%s is not supported; only BPE (2) is", typ)
	}
	_ = haveNormalizer // defaults apply without one
	n := len(sp.pieces)
	if n == 0 {
		return nil, fieldError(name, "pieces", "none; expected a vocabulary")
	}
	for _, c := range []struct {
		field string
		id    *int
		opt   bool
	}{{"trainer_spec.unk_id", &unkID, false}, {"trainer_spec.bos_id", &bos, true}, {"trainer_spec.eos_id", &eos, true}} {
		if *c.id == -1 && c.opt {
			continue
		}
		if *c.id < 0 || *c.id >= n {
			return nil, fieldError(name, c.field, "is %d, outside the vocabulary of %d pieces", *c.id, n)
		}
	}
	if sp.types[unkID] != spUnknown {
		return nil, fieldError(name, "trainer_spec.unk_id", "piece %d %q has type %s; expected UNKNOWN", unkID, sp.pieces[unkID], spTypeNames[sp.types[unkID]])
	}
	sp.unk = unkID
	for i := range sp.bytes {
		sp.bytes[i] = -1
	}
	var special []*hfAddedToken
	t := &Tokenizer{name: name, kind: kindSentencePiece, sp: sp, bos: bos, eos: eos, ids: map[string]int{},
		pieces: sp.pieces, scores: scores, decoded: make([]string, n), skip: make([]bool, n)}
	for id, p := range sp.pieces {
		typ := sp.types[id]
		if p == "" {
			return nil, fieldError(name, fmt.Sprintf("pieces[%d].piece", id), "is empty")
		}
		if _, dup := t.ids[p]; dup {
			return nil, fieldError(name, fmt.Sprintf("pieces[%d].piece", id), "%q repeats piece %d", p, t.ids[p])
		}
		t.ids[p] = id
		t.maxLen = max(t.maxLen, len(p))
		t.decoded[id] = strings.ReplaceAll(p, "▁", " ")
		switch typ {
		case spNormal:
			sp.normal[p] = id
		case spUserDefined:
			sp.normal[p] = id
			special = append(special, &hfAddedToken{ID: id, Content: p})
		case spUnknown, spControl:
			special = append(special, &hfAddedToken{ID: id, Content: p, Special: true})
			t.skip[id] = true
		case spByte:
			v, ok := bytePiece(p)
			if !ok {
				return nil, fieldError(name, fmt.Sprintf("pieces[%d]", id), "%q has type BYTE; expected a piece \"<0xXX>\"", p)
			}
			sp.bytes[v] = id
			t.decoded[id] = string([]byte{v})
		case spUnused:
			return nil, fieldError(name, fmt.Sprintf("pieces[%d].type", id), "%q is UNUSED; UNUSED pieces are not supported", p)
		default:
			return nil, fieldError(name, fmt.Sprintf("pieces[%d].type", id), "%d; expected 1 to 6", typ)
		}
	}
	if sp.byteFallback {
		for v, id := range sp.bytes {
			if id < 0 {
				return nil, fieldError(name, "pieces", "trainer_spec.byte_fallback is true but there is no BYTE piece <0x%02X>", v)
			}
		}
	} else {
		for i := range sp.bytes {
			sp.bytes[i] = -1
		}
	}
	sp.special = newAddedMatcher(special, nil)
	return t, nil
}

// parsePiece reads one ModelProto.SentencePiece.
func parsePiece(b []byte) (piece string, score float32, typ int, err error) {
	typ = spNormal
	err = eachField(b, func(num, wire int, v uint64, data []byte) error {
		switch num {
		case 1:
			if err := wantWire("piece", num, wire, 2); err != nil {
				return err
			}
			piece = string(data)
		case 2:
			if err := wantWire("piece", num, wire, 5); err != nil {
				return err
			}
			score = math.Float32frombits(uint32(v))
			if math.IsNaN(float64(score)) {
				return fmt.Errorf("score is NaN")
			}
		case 3:
			if err := wantWire("piece", num, wire, 0); err != nil {
				return err
			}
			typ = int(int32(v))
		}
		return nil
	})
	return piece, score, typ, err
}

// parseNormalizerSpec reads normalizer_spec: only identity normalization
// (no precompiled character map or rules) is supported.
func parseNormalizerSpec(b []byte, sp *spModel) error {
	nm := ""
	return eachField(b, func(num, wire int, v uint64, data []byte) error {
		switch num {
		case 1:
			nm = string(data)
		case 2:
			if len(data) > 0 {
				return fmt.Errorf("normalizer_spec %q has a precompiled_charsmap; only identity normalization is supported", nm)
			}
		case 3:
			sp.addDummyPrefix = v != 0
		case 4:
			sp.removeExtraSpace = v != 0
		case 5:
			sp.escapeSpaces = v != 0
		case 6:
			if len(data) > 0 {
				return fmt.Errorf("normalizer_spec has normalization_rule_tsv; only identity normalization is supported")
			}
		default:
			return nil
		}
		if num >= 3 && num <= 5 {
			return wantWire("normalizer_spec", num, wire, 0)
		}
		return wantWire("normalizer_spec", num, wire, 2)
	})
}

// encode appends the ids of text to out (see LoadSentencePiece).
func (sp *spModel) encode(t *Tokenizer, text string, out []int) []int {
	for _, sec := range sp.special.split(text) {
		if sec.token != nil {
			out = append(out, sec.token.ID)
			continue
		}
		out = sp.encodeChunk(t, sec.text, out)
	}
	return out
}

// normalize applies the normalizer_spec to text.
func (sp *spModel) normalize(text string) string {
	if sp.removeExtraSpace {
		fields := strings.FieldsFunc(text, func(r rune) bool { return r == ' ' })
		text = strings.Join(fields, " ")
	}
	if text == "" {
		return ""
	}
	if sp.addDummyPrefix {
		text = " " + text
	}
	if sp.escapeSpaces {
		text = strings.ReplaceAll(text, " ", "▁")
	}
	return text
}

// encodeChunk is SentencePiece's BPE on one piece of text. Symbols are
// spans of the normalized text, so a merge is a lookup of the span the two
// cover.
func (sp *spModel) encodeChunk(t *Tokenizer, text string, out []int) []int {
	s := sp.normalize(text)
	if s == "" {
		return out
	}
	var start, end []int // symbol i covers s[start[i]:end[i]]
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		start = append(start, i)
		end = append(end, i+size)
		i += size
	}
	n := len(start)
	list := newSymbolList(n)
	var q mergeQueue
	try := func(l, r int) {
		if l < 0 || r < 0 {
			return
		}
		if id, ok := sp.normal[s[start[l]:end[r]]]; ok {
			q.push(mergeKey(scorePriority(t.scores[id]), l))
		}
	}
	for i := 0; i+1 < n; i++ {
		try(i, i+1)
	}
	for len(q) > 0 {
		l, prio := q.pop()
		r := list.next[l]
		if !list.alive[l] || r < 0 {
			continue
		}
		if id, ok := sp.normal[s[start[l]:end[r]]]; !ok || scorePriority(t.scores[id]) != prio {
			continue // stale: the pair at l has changed since
		}
		end[l] = end[r]
		list.unlink(r)
		try(list.prev[l], l)
		try(l, list.next[l])
	}
	lastUnk := false
	for i := 0; i >= 0; i = list.next[i] {
		sym := s[start[i]:end[i]]
		if id, ok := sp.normal[sym]; ok {
			out = append(out, id)
			lastUnk = false
			continue
		}
		if sp.byteFallback {
			for j := 0; j < len(sym); j++ {
				out = append(out, sp.bytes[sym[j]])
			}
			lastUnk = false
			continue
		}
		// SentencePiece emits one unknown token for a run of unknown
		// symbols.
		if !lastUnk {
			out = append(out, sp.unk)
		}
		lastUnk = true
	}
	return out
}

// decodeToken returns the text of token id: "▁" as a space, a byte piece
// as its byte; first drops the leading space that add_dummy_prefix put at
// the start of the text.
func (sp *spModel) decodeToken(t *Tokenizer, id int, first bool) string {
	if id < 0 || id >= len(t.decoded) {
		return ""
	}
	s := t.decoded[id]
	if first && sp.addDummyPrefix && sp.types[id] != spByte && strings.HasPrefix(s, " ") {
		s = s[1:]
	}
	return s
}

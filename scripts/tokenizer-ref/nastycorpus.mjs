// nastycorpus.mjs writes the corpus of hostile texts (testdata/corpus-nasty.json)
// in gen.mjs's corpus format: very long words and digit runs, 10 000-character
// whitespace runs, NUL and other control characters, U+FFFD, mixed scripts,
// texts that are only special tokens, special tokens glued to words (and the
// near misses of "<|eot_id|>"), and "▁" written in the text.
//
//   node scripts/tokenizer-ref/nastycorpus.mjs > models/tokenizer/testdata/corpus-nasty.json
//
// Lone surrogates are left out on purpose: Rust strings (what the
// tokenizers crate receives) cannot hold them, and Go's encoding/json reads
// one as U+FFFD, so the U+FFFD texts stand for them. Invalid UTF-8 cannot be
// written in JSON at all; the Go tests cover it by hand.
const rep = (s, n) => s.repeat(n);
const texts = [
  // Long runs: BPE over one long pre-token, and the pre-tokenizers' runs.
  ["long word 4000 letters", rep("a", 4000)],
  ["long word repeated syllables", rep("supercalifragilistic", 150)],
  ["long mixed-case word", rep("aBcDeFgHiJ", 300)],
  ["long digit run 5000", rep("1234567890", 500)],
  ["long digit run with word", "x" + rep("9", 3001) + "y"],
  ["long punctuation run", rep("!?.,;:", 500)],
  ["long CJK run", rep("日本語中文한국어", 300)],
  ["long emoji run", rep("😀👍🏽🇫🇷", 300)],
  ["10k spaces then word", rep(" ", 10000) + "x"],
  ["word then 10k spaces", "x" + rep(" ", 10000)],
  ["10k spaces alone", rep(" ", 10000)],
  ["10k tabs between words", "a" + rep("\t", 10000) + "b"],
  ["10k newlines", rep("\n", 10000)],
  ["10k mixed whitespace", rep(" \t\n\r\u00a0\u3000", 1666) + "end"],
  ["10k crlf", rep("\r\n", 5000) + "z"],
  ["space newline alternation", rep(" \n", 3000) + "w"],
  // Control characters, NUL and U+FFFD.
  ["NUL alone", "\u0000"],
  ["NUL inside word", "ab\u0000cd"],
  ["NUL run", rep("\u0000", 50) + "x" + rep("\u0000", 3)],
  ["C0 controls", "a\u0001\u0002\u0007\u0008\u000b\u000c\u001b[31mred\u001b[0m\u007fz"],
  ["C1 controls", "a\u0080\u0085\u009f b"],
  ["replacement char", "bad \ufffd byte \ufffd\ufffd"],
  ["BOM inside", "\ufeffstart \ufeff mid"],
  ["zero width", "a\u200bb\u200cc\u200dd\u2060e"],
  ["bidi marks", "abc \u202eevil\u202c \u200fرسالة\u200e"],
  // Mixed scripts and combining marks.
  ["mixed scripts", "Hello世界Привет مرحبا שלום नमस्ते 안녕하세요 ありがとう สวัสดี Γειά"],
  ["scripts glued", "abcЖжж日本123한글٣٤٥xyz"],
  ["combining marks", "e\u0301 a\u0308\u0304 Z\u0335\u0321\u0327a\u036f\u0367l\u0363g\u0350o"],
  ["devanagari conjuncts", "क्षत्रिय श्री ज्ञान"],
  ["thai no spaces", "ภาษาไทยไม่มีช่องว่างระหว่างคำ"],
  ["emoji sequences", "👨‍👩‍👧‍👦 🏳️‍🌈 1️⃣ ✋🏿 🇯🇵🇺🇸 ❤️‍🔥"],
  ["math and symbols", "∀x∈ℝ: x²≥0 ∑ᵢ aᵢ ≈ π ≠ ∞ ½ ⅞ №"],
  ["fullwidth", "ＡＢＣ１２３！？ ｈｅｌｌｏ"],
  // Special tokens: alone, adjacent to words, and near misses.
  ["only special llama3", "<|begin_of_text|><|eot_id|>"],
  ["only special llama3 spaced", " <|begin_of_text|> <|end_of_text|> "],
  ["only special llama2", "<s></s><unk>"],
  ["only special gpt2", "<|endoftext|>"],
  ["special run", rep("<|eot_id|>", 20)],
  ["special glued to words", "Hello<|eot_id|>world<|end_of_text|>again"],
  ["special between spaces", "a <|eot_id|> b  <|eot_id|>  c"],
  ["special after newline", "line\n<|eot_id|>\nnext"],
  ["chat template llama3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"],
  ["eot near misses", "<|eot_id| <|EOT_ID|> <| eot_id |> <|eot_id>  <|eot_id|>> <<|eot_id|> |eot_id|> ＜|eot_id|＞"],
  ["eot prefixes", "<|eot <|eot_i <| < <|"],
  ["llama2 specials in words", "a<s>b</s>c<unk>d <s> </s>"],
  ["llama2 near misses", "<s <s/> </ s> <S> < s>"],
  ["gpt2 special glued", "text<|endoftext|>more<|endoftext|><|endoftext|>"],
  ["angle bracket run", rep("<", 200) + rep("|", 50) + rep(">", 10)],
  ["reserved special", "<|reserved_special_token_0|>x<|reserved_special_token_250|>"],
  // Whitespace beside added tokens that the strip fixtures (bl-strip-mini,
  // sp-strip) give lstrip and rstrip.
  ["strip spaces around", "x  <|start_header_id|>  y <|end_header_id|>\t\tz<|eot_id|>   w"],
  ["strip at ends", "   <|start_header_id|><|end_header_id|>   "],
  ["strip newlines", "a\n\n<|end_header_id|>\n\nb\u3000<|eot_id|>\u00a0c"],
  ["strip only whitespace between", "<|eot_id|>   <|start_header_id|>"],
  ["inst tags", "[INST]  hi  [/INST] ok [INST]x[/INST]"],
  ["inst at ends", "  [INST]\n\n"],
  ["tool tags", "<tool>x a <tool> b a<tool> <tool>"],
  // "▁" in the text, which SentencePiece-style vocabularies use for spaces.
  ["metaspace char alone", "▁"],
  ["metaspace chars", "▁▁hello ▁world▁"],
  ["metaspace glued", "a▁b▁▁c"],
  ["metaspace and special", "▁<s>▁</s>▁"],
  // Leading/trailing combinations.
  ["leading newline word", "\nHello"],
  ["trailing newline", "Hello\n"],
  ["space before special at start", " <|eot_id|>x"],
  ["contractions odd", "'s 's's ''' 'LL'll 'ſ rock'n'roll"],
  ["url and code", "https://example.com/a_b?c=1&d=%20#x\nfunc main() { fmt.Println(\"hi\\n\") }\n\tif x != nil {\n\t\treturn\n\t}"],
  ["long line of words", rep("the quick brown fox jumps over the lazy dog ", 200)],
];
const out = texts.map(([name, text]) => ({ name, text }));
const names = new Set();
for (const { name } of out) {
  if (names.has(name)) throw new Error(`duplicate name ${name}`);
  names.add(name);
}
process.stdout.write("[\n" + out.map((c) => " " + JSON.stringify(c)).join(",\n") + "\n]\n");

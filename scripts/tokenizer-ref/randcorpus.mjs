// randcorpus.mjs writes a deterministic corpus of random texts, built from
// fragments that stress pre-tokenizers and BPE (whitespace runs and kinds,
// newlines, contractions in both cases, digits of several scripts, marks,
// emoji, special-token strings...), in gen.mjs's corpus format:
//
//   node scripts/tokenizer-ref/randcorpus.mjs [count] [seed] > corpus-random.json
//
// The same count and seed always give the same file.
const count = Number(process.argv[2] ?? 300);
let seed = Number(process.argv[3] ?? 1) >>> 0;

// mulberry32: a small seeded generator, so that no library is needed.
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(random() * a.length)];

const words = ["the", "Hello", "world", "don", "I", "WE", "caf", "na", "x", "ab", "A", "tokenizer", "ll", "s", "re"];
const fragments = [
  () => pick(words),
  () => pick(words),
  () => pick(words),
  () => " ",
  () => " ",
  () => "  ",
  () => "   ",
  () => "\t",
  () => "\n",
  () => "\n\n",
  () => "\r\n",
  () => "\r",
  () => " \n",
  () => "\u00a0",
  () => "\u3000",
  () => "\u0085",
  () => "\ufeff",
  () => "\u000b",
  () => "\u200b",
  () => "\u200d",
  () => pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "'", "''", "'x"]),
  () => String(Math.floor(random() * 100000)),
  () => pick(["0", "7", "42", "123", "1234", "٣٤٥", "½", "²", "Ⅻ", "１２"]),
  () => pick(["!", "?", ".", ",", "...", "!!", "-", "--", "(", ")", "\"", "#", "@", "_", "/", "\\", "&"]),
  () => pick(["é", "e\u0301", "ñ", "Å", "ß", "Ω", "Жж"]),
  () => pick(["न", "म", "स्", "ते", "ा"]),
  () => pick(["日", "本語", "中文", "한", "、", "。", "，"]),
  () => pick(["🤗", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🐚"]),
  () => pick(["<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|endoftext|>", "<|im_start|>", "<|end_of_text", "Ġ", "▁", "<0x41>"]),
];

const out = [];
for (let i = 0; i < count; i++) {
  const n = 1 + Math.floor(random() * 12);
  let text = "";
  for (let k = 0; k < n; k++) text += pick(fragments)();
  out.push({ name: `random ${i}`, text });
}
process.stdout.write("[\n" + out.map((c) => JSON.stringify(c)).join(",\n") + "\n]\n");

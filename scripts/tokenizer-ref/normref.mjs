// normref.mjs writes reference Unicode normalizations computed by the
// JavaScript engine's String.prototype.normalize (ICU in node), for the
// tests of models/tokenizer's NFC, NFD, NFKC and NFKD:
//
//   node scripts/tokenizer-ref/normref.mjs [count] [seed] | gzip -9n > models/tokenizer/testdata/norm/unicode.txt.gz
//
// Each line is "source;NFC;NFD;NFKC;NFKD", every field code points in hex
// separated by spaces (the layout of Unicode's NormalizationTest.txt).
// First every single character (no surrogates) that some form changes,
// except the Hangul syllables, which are computed and of which only every
// 97th is written; then [count] random sequences (default 3000) drawn
// from characters that test the composition: marks of many classes,
// starters that combine backward, Hangul jamo, supplementary-plane
// characters, composition exclusions.
//
// The engine's Unicode version is newer than the Rust tokenizers crate's
// (9.0). The Go test reads only lines whose characters are all assigned in
// Unicode 9.0, whose normalization the stability policy keeps unchanged.
const count = Number(process.argv[2] ?? 3000);
let seed = Number(process.argv[3] ?? 1) >>> 0;

// mulberry32, as in randcorpus.mjs.
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const hex = (s) => [...s].map((c) => c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")).join(" ");
const line = (s) => [s, s.normalize("NFC"), s.normalize("NFD"), s.normalize("NFKC"), s.normalize("NFKD")].map(hex).join(";");

const out = [];
for (let cp = 0; cp <= 0x10ffff; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  if (cp >= 0xac00 && cp <= 0xd7a3 && (cp - 0xac00) % 97 !== 0) continue;
  const s = String.fromCodePoint(cp);
  if (["NFC", "NFD", "NFKC", "NFKD"].some((f) => s.normalize(f) !== s)) out.push(line(s));
}

const pool = [
  // starters that compose, and others
  "a", "e", "o", "u", "A", "E", "I", "O", "U", "s", "q", "x", " ",
  "\u00e9", "\u00e2", "\u00dc", "\u1ea1", "\u01d6", "\u03b1", "\u03b9", "\u03c5", "\u0391", "\u1f00", "\u0418", "\u0435",
  // marks of many combining classes
  "\u0300", "\u0301", "\u0302", "\u0303", "\u0304", "\u0306", "\u0307", "\u0308", "\u030a", "\u030c",
  "\u0313", "\u0314", "\u031b", "\u0316", "\u0323", "\u0327", "\u0328", "\u0331", "\u0334", "\u0345",
  "\u0342", "\u0344", "\u0340", "\u0341", "\u034f", "\u05b0", "\u05bc", "\u05c1", "\u064e", "\u0651",
  "\u093c", "\u094d", "\u0e38", "\u0e48", "\u0f71", "\u0f72", "\u0f74", "\u0f80", "\u1dce", "\u20d2", "\u3099", "\u309a",
  // starters that combine backward
  "\u09be", "\u09d7", "\u0b3e", "\u0b56", "\u0bbe", "\u0cc2", "\u0cd5", "\u0d3e", "\u0dcf", "\u0ddf", "\u102e", "\u1b35",
  // bases they compose with
  "\u09c7", "\u0b47", "\u0bc6", "\u0cbf", "\u0cc6", "\u0d46", "\u0dd9", "\u1025", "\u1b05",
  // Hangul
  "\u1100", "\u1112", "\u1161", "\u1173", "\u11a8", "\u11af", "\u11c2", "\uac00", "\ud55c", "\ub3c4", "\u3131", "\u314f",
  // Japanese voicing
  "\u304b", "\u30cf", "\uff76",
  // compatibility and exclusions
  "\ufb01", "\uff21", "\u00bd", "\u212b", "\u2126", "\u0958", "\ufb2a", "\u0344", "\u2000", "\u1f71", "\u00a8",
  // outside the BMP: Linear B, Kaithi (composes), Grantha, musical symbols (excluded)
  "\u{10041}", "\u{10042}", "\u{11099}", "\u{110ba}", "\u{1109a}", "\u{11347}", "\u{1133e}", "\u{11357}",
  "\u{1d157}", "\u{1d165}", "\u{1d16e}", "\u{1d15e}",
  // Hebrew letters whose low 16 bits collide with nothing, and one that x/text mistook
  "\u05d2", "\u05da",
];
const pick = () => pool[Math.floor(random() * pool.length)];
for (let i = 0; i < count; i++) {
  let s = "";
  const n = 2 + Math.floor(random() * 7);
  for (let k = 0; k < n; k++) s += pick();
  out.push(line(s));
}
process.stdout.write(out.join("\n") + "\n");

// truncate.mjs derives a small BPE tokenizer.json from a real one, for
// fixtures small enough to commit:
//
//   node scripts/tokenizer-ref/truncate.mjs <tokenizer.json> <merges> [options] > tokenizer.json
//
// It keeps the first <merges> merges and a vocabulary of the tokens that
// are one character long (for a byte-level BPE: its 256 byte characters),
// every token that a kept merge joins or makes, and added tokens.
// Ids are renumbered densely in the original order, added tokens last.
// Everything else (normalizer, pre_tokenizer, post_processor, decoder,
// model options) is copied unchanged unless an option replaces it.
//
// Options:
//   --added REGEX          keep only added tokens whose content matches REGEX
//                          (default: all); the post_processor's special
//                          tokens are renumbered to match
//   --pre-tokenizer JSON   replace pre_tokenizer with JSON
//   --normalizer JSON      replace normalizer with JSON
import fs from "node:fs";

function fail(msg) {
  console.error(`truncate.mjs: ${msg}`);
  console.error("usage: node truncate.mjs <tokenizer.json> <merges> [--added REGEX] [--pre-tokenizer JSON] [--normalizer JSON]");
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 2) fail("too few arguments");
const [file, countArg, ...rest] = args;
const count = Number(countArg);
if (!Number.isInteger(count) || count < 0) fail(`merges ${countArg} is not a count`);
let addedRe = null;
let preTokenizer;
let normalizer;
for (let i = 0; i < rest.length; i += 2) {
  if (i + 1 >= rest.length) fail(`${rest[i]} needs a value`);
  if (rest[i] === "--added") addedRe = new RegExp(rest[i + 1]);
  else if (rest[i] === "--pre-tokenizer") preTokenizer = JSON.parse(rest[i + 1]);
  else if (rest[i] === "--normalizer") normalizer = JSON.parse(rest[i + 1]);
  else fail(`unknown option ${rest[i]}`);
}

const tok = JSON.parse(fs.readFileSync(file, "utf8"));
const model = tok.model;
if (model?.type !== "BPE") fail(`${file}: model.type is ${model?.type}, want BPE`);
const pair = (m) => (Array.isArray(m) ? m : m.split(" "));
const merges = model.merges.slice(0, count);

const keep = new Set();
for (const [t] of Object.entries(model.vocab)) {
  if ([...t].length === 1) keep.add(t);
}
for (const m of merges) {
  const [a, b] = pair(m);
  keep.add(a);
  keep.add(b);
  keep.add(a + b);
}
for (const t of keep) {
  if (!(t in model.vocab)) fail(`${file}: merge part or result ${JSON.stringify(t)} is not in the vocabulary`);
}
const ordered = [...keep].sort((x, y) => model.vocab[x] - model.vocab[y]);
const vocab = {};
ordered.forEach((t, i) => (vocab[t] = i));

const added = (tok.added_tokens ?? []).filter((a) => addedRe === null || addedRe.test(a.content));
const newId = new Map();
let next = ordered.length;
const addedOut = added.map((a) => {
  let id = vocab[a.content];
  if (id === undefined) id = next++;
  newId.set(a.id, id);
  return { ...a, id };
});

// TemplateProcessing names its special tokens with ids; renumber them.
function renumber(pp) {
  if (pp === null || typeof pp !== "object") return pp;
  if (pp.type === "Sequence") return { ...pp, processors: pp.processors.map(renumber) };
  if (pp.type !== "TemplateProcessing") return pp;
  const special = {};
  for (const [k, v] of Object.entries(pp.special_tokens ?? {})) {
    special[k] = {
      ...v,
      ids: v.ids.map((id) => {
        if (!newId.has(id)) fail(`post_processor special token ${k} (id ${id}) is not kept; widen --added`);
        return newId.get(id);
      }),
    };
  }
  return { ...pp, special_tokens: special };
}

const out = {
  ...tok,
  added_tokens: addedOut,
  post_processor: renumber(tok.post_processor),
  model: { ...model, vocab, merges },
};
if (preTokenizer !== undefined) out.pre_tokenizer = preTokenizer;
if (normalizer !== undefined) out.normalizer = normalizer;
process.stdout.write(JSON.stringify(out) + "\n");

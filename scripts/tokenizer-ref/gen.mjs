// gen.mjs writes reference tokenizations of a corpus as JSON, computed by an
// implementation independent of ours, for the tests in models/tokenizer.
//
//   cd scripts/tokenizer-ref && npm install --ignore-scripts   # once; no install scripts needed
//   node scripts/tokenizer-ref/gen.mjs [--engine hf|sp] [--compact [--keep FIELD]...] <tokenizer folder> <corpus.json> > out.json
//
// --compact keeps only the name, the ids and the decodings of each result
// (no text, tokens, pretokens, normalized or pieces): the texts are the
// corpus's, and for long texts the other fields are most of the size.
// --keep FIELD keeps one of those fields all the same (normalized, say).
//
// Engines (default: hf when the folder has tokenizer.json, else sp):
//   hf  Hugging Face's JS tokenizers (@huggingface/tokenizers) over
//       tokenizer.json and, if present, tokenizer_config.json.
//   sp  Google's SentencePiece compiled to WebAssembly (@sctg/sentencepiece-js)
//       over tokenizer.model.
// Only local files are read; nothing is fetched at run time.
//
// corpus.json is an array of {"name": string, "text": string}. The output is
//   {"engine": "...", "generator": "<package>@<version>", "tokenizer": "<folder name>",
//    "results": [{"name", "text", ...fields}]}
// with, for engine hf:
//   ids                   encode(text, add_special_tokens=true).ids
//   ids_no_special        encode(text, add_special_tokens=false).ids
//   tokens                the token strings of ids
//   pretokens             the pre-tokenizer alone applied to the raw text (no
//                         added-token splitting, no normalizer; as the first
//                         section, section_index 0); null without a pre-tokenizer
//   normalized            the normalizer alone applied to the raw text; null without one
//   decoded               decode(ids, skip_special_tokens=false)
//   decoded_skip_special  decode(ids, skip_special_tokens=true)
// and for engine sp (SentencePiece adds no BOS/EOS itself):
//   ids_no_special, pieces, decoded (DecodeIds of ids_no_special).
// decode never applies clean_up_tokenization_spaces (the Rust library's decode
// does not either).
//
// Known differences of the hf engine from the Rust `tokenizers` crate are
// listed in README.md beside this file.
import fs from "node:fs";
import path from "node:path";

function usage(msg) {
  if (msg) console.error(`gen.mjs: ${msg}`);
  console.error("usage: node gen.mjs [--engine hf|sp] [--compact [--keep FIELD]...] <tokenizer folder> <corpus.json>");
  process.exit(2);
}

function readJSON(file) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    usage(`cannot read ${file}: ${e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    usage(`${file} is not valid JSON: ${e.message}`);
  }
}

// version reads the installed version from node_modules directly: the
// packages' "exports" maps do not export their package.json.
function version(pkg) {
  const file = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

const args = process.argv.slice(2);
let engine = null;
let compact = false;
const keep = [];
for (;;) {
  if (args[0] === "--engine") {
    engine = args[1];
    args.splice(0, 2);
  } else if (args[0] === "--compact") {
    compact = true;
    args.splice(0, 1);
  } else if (args[0] === "--keep") {
    if (args.length < 2) usage("--keep needs a field");
    keep.push(args[1]);
    args.splice(0, 2);
  } else {
    break;
  }
}
if (args.length !== 2) usage();
const [dir, corpusFile] = args;
const corpus = readJSON(corpusFile);
if (!Array.isArray(corpus) || corpus.some((c) => typeof c?.name !== "string" || typeof c?.text !== "string")) {
  usage(`${corpusFile}: want an array of {"name": string, "text": string}`);
}
const has = (f) => fs.existsSync(path.join(dir, f));
engine ??= has("tokenizer.json") ? "hf" : has("tokenizer.model") ? "sp" : null;
if (engine === null) usage(`${dir} has neither tokenizer.json nor tokenizer.model`);

let out;
if (engine === "hf") {
  out = await runHF();
} else if (engine === "sp") {
  out = await runSP();
} else {
  usage(`unknown engine ${JSON.stringify(engine)}`);
}
// One result per line keeps the committed outputs readable and their diffs small.
const { results: full, ...head } = out;
const dropped = ["text", "tokens", "pretokens", "normalized", "pieces"].filter((f) => !keep.includes(f));
const results = compact ? full.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !dropped.includes(k)))) : full;
const lines = results.map((r) => JSON.stringify(r));
process.stdout.write(JSON.stringify(head).slice(0, -1) + ',"results":[\n' + lines.join(",\n") + "\n]}\n");

async function runHF() {
  const pkg = "@huggingface/tokenizers";
  const { Tokenizer } = await import(pkg);
  const json = readJSON(path.join(dir, "tokenizer.json"));
  const config = has("tokenizer_config.json") ? readJSON(path.join(dir, "tokenizer_config.json")) : {};
  const tok = new Tokenizer(json, config);
  // decode throws on an empty id list; the empty decoding is "".
  const decode = (ids, skip) =>
    ids.length === 0 ? "" : tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
  const results = corpus.map(({ name, text }) => {
    const enc = tok.encode(text, { add_special_tokens: true });
    const plain = tok.encode(text, { add_special_tokens: false });
    return {
      name,
      text,
      ids: enc.ids,
      ids_no_special: plain.ids,
      tokens: enc.tokens,
      pretokens: tok.pre_tokenizer ? tok.pre_tokenizer.pre_tokenize(text, { section_index: 0 }) : null,
      normalized: tok.normalizer ? tok.normalizer.normalize(text) : null,
      decoded: decode(enc.ids, false),
      decoded_skip_special: decode(enc.ids, true),
    };
  });
  return { engine: "hf", generator: `${pkg}@${version(pkg)}`, tokenizer: path.basename(path.resolve(dir)), results };
}

async function runSP() {
  const pkg = "@sctg/sentencepiece-js";
  const { SentencePieceProcessor } = await import(pkg);
  const model = path.join(dir, "tokenizer.model");
  let bytes;
  try {
    bytes = fs.readFileSync(model);
  } catch (e) {
    usage(`cannot read ${model}: ${e.message}`);
  }
  const spp = new SentencePieceProcessor();
  await spp.loadFromB64StringModel(bytes.toString("base64"));
  const results = corpus.map(({ name, text }) => {
    const ids = Array.from(spp.encodeIds(text));
    return {
      name,
      text,
      ids_no_special: ids,
      pieces: spp.encodePieces(text),
      decoded: ids.length === 0 ? "" : spp.decodeIds(ids),
    };
  });
  return { engine: "sp", generator: `${pkg}@${version(pkg)}`, tokenizer: path.basename(path.resolve(dir)), results };
}

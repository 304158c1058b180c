// addedtokens.mjs rewrites the added_tokens of a tokenizer.json: it changes
// the flags of tokens already there and appends new ones after the highest
// id, for fixtures that exercise lstrip, rstrip, normalized and special.
//
//   node scripts/tokenizer-ref/addedtokens.mjs <tokenizer.json> '<edits>' > out/tokenizer.json
//
// <edits> is a JSON array of {"content": ..., flags...}: an entry naming an
// existing added token's content sets the flags given (lstrip, rstrip,
// normalized, special, single_word); any other entry is a new added token
// with those flags (false where not given). The rest of the file is kept.
import fs from "node:fs";

const [file, editsJSON] = process.argv.slice(2);
if (!file || !editsJSON) {
  console.error("usage: node addedtokens.mjs <tokenizer.json> '<edits>'");
  process.exit(2);
}
const tok = JSON.parse(fs.readFileSync(file, "utf8"));
const edits = JSON.parse(editsJSON);
const flags = ["single_word", "lstrip", "rstrip", "normalized", "special"];
let next = Math.max(...Object.values(tok.model.vocab), ...tok.added_tokens.map((a) => a.id)) + 1;
for (const e of edits) {
  let a = tok.added_tokens.find((x) => x.content === e.content);
  if (!a) {
    a = { id: next++, content: e.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false };
    tok.added_tokens.push(a);
  }
  for (const f of flags) {
    if (f in e) a[f] = e[f];
  }
}
process.stdout.write(JSON.stringify(tok) + "\n");

// jsref.mjs renders cases with @huggingface/jinja (the Jinja of
// transformers.js) and prints, for each case in order, {"name", "js"} (the
// text) or {"name", "js_error"}; pyref.py --js merges them into its output
// (JSON numbers must not pass through JavaScript, which writes 1.0 as 1):
//
//   node scripts/chat-ref/jsref.mjs CASES.json [TEMPLATES_DIR] > JS.json
//
// Cases are those of pyref.py (see there). Chat cases get their variables as
// transformers.js's apply_chat_template makes them: the special tokens, the
// extra kwargs, then messages, tools, documents and add_generation_prompt.
// strftime_now is @huggingface/jinja's own, which reads the real clock (a
// render variable cannot replace it), so templates that print the date
// differ from pyref.py's fixed clock. Setup, once:
//
//   cd scripts/chat-ref && npm install --ignore-scripts
import { readFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const dir = process.argv[3] ?? ".";
const out = [];
for (const c of cases) {
	const r = { name: c.name };
	out.push(r);
	let vars;
	if (c.vars) {
		vars = { ...c.vars };
	} else {
		vars = { ...(c.special ?? {}), ...(c.kwargs ?? {}), messages: c.messages, tools: c.tools, documents: c.documents ?? null, add_generation_prompt: c.add_generation_prompt ?? false };
	}
	try {
		const src = c.template ?? readFileSync(`${dir}/${c.template_name}.jinja`, "utf8");
		r.js = new Template(src).render(vars);
	} catch (e) {
		r.js_error = String(e?.message ?? e);
	}
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");

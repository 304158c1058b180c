// e2e-templates.mjs prints the chat templates (and their example inputs) of
// huggingface.js's packages/jinja/test/e2e.test.js as JSON:
//
//   node scripts/chat-ref/e2e-templates.mjs path/to/e2e.test.js > templates.json
//
// The test file is a local copy (e.g. from a checkout of
// github.com/huggingface/huggingface.js); it is evaluated with stand-ins for
// its test framework and its own imports, and the objects it declares
// (TEST_DEFAULT_TEMPLATES, TEST_CUSTOM_TEMPLATES) are printed: for each
// name, chat_template, data (the variables) and target (the expected text).
import { readFileSync } from "node:fs";

const src = readFileSync(process.argv[2], "utf8")
	.replace(/^import .*$/gm, "")
	.replace(/^describe\(/m, "const __unused = () => describe(");
const body = `${src}\nreturn { ...TEST_DEFAULT_TEMPLATES, ...TEST_CUSTOM_TEMPLATES };`;
const templates = new Function("describe", "it", "expect", "Template", body)(() => {}, () => {}, () => {}, null);
process.stdout.write(JSON.stringify(templates, null, 1) + "\n");

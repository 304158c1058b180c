// automap-templates.mjs prints the chat templates of huggingface.js's
// packages/ollama-utils/src/chat-template-automap.ts as JSON, one entry per
// model: {"model": "library/NAME:TAG", "template": "..."}. The "gguf"
// field of each entry is the Hugging Face chat template found in that
// model's GGUF file (tokenizer.chat_template), which is the template of its
// tokenizer_config.json.
//
//   node scripts/chat-ref/automap-templates.mjs path/to/chat-template-automap.ts > automap.json
import { readFileSync } from "node:fs";

const src = readFileSync(process.argv[2], "utf8")
	.replace(/^import .*$/gm, "")
	.replace(/export const OLLAMA_CHAT_TEMPLATE_MAPPING: \w+\[\] =/, "return");
const entries = new Function(src)();
process.stdout.write(JSON.stringify(entries.map((e) => ({ model: e.model, template: e.gguf })), null, 1) + "\n");

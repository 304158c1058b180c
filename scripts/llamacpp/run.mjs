// run.mjs loads a GGUF model in llama.cpp (through node-llama-cpp's prebuilt
// CPU binaries, installed by scripts/fetch-llamacpp.sh) and prints, as one
// JSON object on stdout, what llama.cpp makes of it:
//
//   SORA_LLAMACPP_DIR=DEST node scripts/llamacpp/run.mjs REQUEST.json
//   SORA_LLAMACPP_DIR=DEST node scripts/llamacpp/run.mjs --info
//
// (An ES module ignores NODE_PATH, so the package is imported from DEST's
// node_modules by path.)
//
// REQUEST.json (a path, or "-" for stdin) holds
//
//   {"model": "m.gguf",             the file to load
//    "contextSize": 512,            optional; default 512
//    "kvCacheType": "F32",          optional; default "F32": the key/value cache's ggml type
//                                   (llama.cpp's own default, F16, rounds keys and values)
//    "threads": 1,                  optional; default 1 (ggml's threads spin while they wait,
//                                   which on a small or busy machine costs far more than it saves)
//    "tokenize": ["text", ...],     texts to tokenize: no BOS added, special tokens in the
//                                   text recognised (as Hugging Face's tokenizers do)
//    "parseSpecial": true,          optional; false spells special tokens out (llama2.c)
//    "generate": [{"tokens": [1, 2], "max": 100}, {"text": "Once upon", "max": 20}, ...],
//                                   greedy continuations of token-id prompts, or of a text
//                                   (tokenized by llama.cpp, BOS first where the model adds
//                                   it): temperature 0, no top-k/top-p/min-p, no repeat
//                                   penalty; the end-of-generation token, if one comes, is
//                                   included
//    "next": [{"tokens": [1, 2], "top": 20}, ...]}
//                                   the next-token distribution after each prompt: the
//                                   "top" most likely ids with their probabilities (the
//                                   softmax of llama.cpp's logits over the whole vocabulary)
//
// and the answer is {"tokenize": [[ids], ...], "generate": [{"tokens": [...],
// "text": "the continuation, detokenized", "eog": bool}, ...], "next": [{"ids": [...], "probs": [...]}, ...],
// "bos": id, "eos": id, "addBos": bool, "architecture": ..., "chatTemplate": ...}
// (the last two as node-llama-cpp's own GGUF reader reads the file). --info prints the
// binaries' description and exits. Errors go to stderr with exit status 1.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

function fail(msg) {
	process.stderr.write(`run.mjs: ${msg}\n`);
	process.exit(1);
}

const dir = process.env.SORA_LLAMACPP_DIR;
if (!dir) {
	fail("SORA_LLAMACPP_DIR is not set (the folder scripts/fetch-llamacpp.sh installed node-llama-cpp into)");
}
const pkgDir = join(dir, "node_modules", "node-llama-cpp");
let entry;
try {
	entry = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).main;
} catch (e) {
	fail(`no node-llama-cpp in ${dir}: ${e.message} (run scripts/fetch-llamacpp.sh ${dir})`);
}
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(join(pkgDir, entry)).href);

const arg = process.argv[2];
if (arg === undefined) {
	fail("usage: run.mjs REQUEST.json | - | --info");
}

const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false});
if (arg === "--info") {
	process.stdout.write(JSON.stringify({gpu: llama.gpu, cpuMathCores: llama.cpuMathCores, systemInfo: llama.systemInfo}) + "\n", () => process.exit(0));
	await new Promise(() => {});
}

let req;
try {
	req = JSON.parse(readFileSync(arg === "-" ? 0 : arg, "utf8"));
} catch (e) {
	fail(`reading the request ${arg}: ${e.message}`);
}
if (typeof req.model !== "string") {
	fail("the request has no \"model\" path");
}

const model = await llama.loadModel({modelPath: req.model, gpuLayers: 0});
const out = {
	// What node-llama-cpp's own GGUF reader finds (a second reader of the file).
	architecture: model.fileInfo.metadata.general?.architecture ?? null,
	chatTemplate: model.fileInfo.metadata.tokenizer?.chat_template ?? null,
	bos: model.tokens.bos,
	eos: model.tokens.eos,
	addBos: model.tokens.shouldPrependBosToken,
	tokenize: [],
	generate: [],
	next: [],
};
for (const text of req.tokenize ?? []) {
	out.tokenize.push(Array.from(model.tokenize(text, req.parseSpecial ?? true)));
}

// Sampling that leaves llama.cpp's logits alone: greedy (temperature 0),
// every token a candidate, no penalties.
const greedy = {temperature: 0, topK: 0, topP: 1, minP: 0, repeatPenalty: false, yieldEogToken: true};

const jobs = [...(req.generate ?? []), ...(req.next ?? [])];
let longest = 16;
for (const j of jobs) {
	// A text's tokens are at most its bytes, and BOS.
	const n = j.tokens?.length ?? (typeof j.text === "string" ? Buffer.byteLength(j.text) + 1 : 0);
	longest = Math.max(longest, n + (j.max ?? 1) + 1);
}
const kvType = req.kvCacheType ?? "F32";
const context = await model.createContext({
	contextSize: Math.max(req.contextSize ?? 512, longest),
	sequences: 1,
	threads: req.threads ?? 1,
	flashAttention: false,
	experimentalKvCacheKeyType: kvType,
	experimentalKvCacheValueType: kvType,
});
const sequence = context.getSequence();

for (const g of req.generate ?? []) {
	await sequence.clearHistory();
	if (g.tokens === undefined && typeof g.text === "string") {
		g.tokens = [...(model.tokens.shouldPrependBosToken && model.tokens.bos != null ? [model.tokens.bos] : []), ...model.tokenize(g.text, true)];
	}
	if (!Array.isArray(g.tokens) || g.tokens.length === 0) {
		fail("a generate job needs \"tokens\" or a non-empty \"text\"");
	}
	const tokens = [];
	let eog = false;
	for await (const t of sequence.evaluate(g.tokens, greedy)) {
		tokens.push(t);
		if (model.isEogToken(t)) {
			eog = true;
			break;
		}
		if (tokens.length >= (g.max ?? 100)) {
			break;
		}
	}
	out.generate.push({tokens, text: model.detokenize(tokens), eog});
}

for (const n of req.next ?? []) {
	await sequence.clearHistory();
	const gen = sequence.evaluateWithMetadata(n.tokens, {probabilities: true}, greedy);
	const first = await gen.next();
	await gen.return();
	if (first.done) {
		fail("no next-token distribution came back");
	}
	const ids = [], probs = [];
	for (const [id, p] of first.value.probabilities) {
		if (ids.length >= (n.top ?? 20)) {
			break;
		}
		ids.push(id);
		probs.push(p);
	}
	out.next.push({ids, probs});
}

await context.dispose();
await model.dispose();
// Exit only once the answer is written: process.exit would cut a large
// answer short on a pipe.
process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0));

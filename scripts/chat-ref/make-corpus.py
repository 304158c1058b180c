#!/usr/bin/env python3
"""make-corpus.py writes the real chat templates the Go tests use, and the
chat cases (conversations x options) to render with each, from the JSON
that e2e-templates.mjs and automap-templates.mjs print and from the
tokenizer_config.json files of scripts/fetch-tokenizers.sh:

    python3 scripts/chat-ref/make-corpus.py E2E.json AUTOMAP.json TOKENIZERS_DIR OUT_DIR

writes OUT_DIR/templates/<name>.jinja, OUT_DIR/templates/index.json (for each
name: where the template comes from and the special tokens its tokenizer
passes) and OUT_DIR/cases.in.json (the chat cases, for pyref.py and
jsref.mjs), and prints the e2e examples as template cases on stdout.
"""

import json
import os
import sys

E2E = "huggingface.js packages/jinja/test/e2e.test.js"
AUTOMAP = "huggingface.js packages/ollama-utils/src/chat-template-automap.ts (the GGUF file's tokenizer.chat_template)"

# name: (source kind, key, special tokens as the model's tokenizer passes them)
CURATED = {
    "llama3": ("tokenizers", "llama3", None),
    "llama3.1": ("tokenizers", "llama3.1", None),
    "qwen3": ("tokenizers", "qwen3", None),
    "llama3.1-tools": ("e2e", "meta-llama/Llama-3.1-8B-Instruct", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    # The GGUF file's and the e2e entry's templates of these three are the
    # same text as their tokenizer_config.json's.
    "llama3.2": ("tokenizers", "llama3.2", None),
    "qwen2.5": ("tokenizers", "qwen2.5", None),
    "smollm2": ("automap", "library/smollm2:135m", {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}),
    "tinyllama": ("automap", "library/tinyllama:1.1b", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}),
    "mistral-v0.3": ("e2e", "mistralai/Mistral-7B-Instruct-v0.3 (JSON Schema)", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "mistral-nemo": ("tokenizers", "mistral-nemo", None),
    "mixtral": ("e2e", "mistralai/Mixtral-8x7B-Instruct-v0.1", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    "phi3": ("automap", "library/phi3:3.8b", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    "phi3.5": ("automap", "library/phi3.5:3.8b", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>", "pad_token": "<|endoftext|>"}),
    "phi4": ("automap", "library/phi4:14b", {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|dummy_85|>"}),
    "gemma2": ("automap", "library/gemma2:2b", {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"}),
    "gemma3": ("automap", "library/gemma3:1b", {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"}),
    "gemma3-270m": ("automap", "library/gemma3:270m", {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"}),
    "deepseek-r1": ("e2e", "deepseek-ai/DeepSeek-R1", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "deepseek-r1-distill-llama": ("automap", "library/deepseek-r1:8b", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
    "hermes2-pro": ("e2e", "NousResearch/Hermes-2-Pro-Llama-3-8B (JSON Schema)", {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>"}),
    "smollm3": ("e2e", "HuggingFaceTB/SmolLM3-3B", {"eos_token": "<|im_end|>", "pad_token": "<|im_end|>"}),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_temperature",
        "description": "Get the current temperature at a location.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The location, as \"City, Country\"."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit."},
            },
            "required": ["location", "unit"],
        },
        "return": {"type": "number", "description": "The temperature."},
    },
}

TOOL_CALL = {"type": "function", "id": "call_9Kx2", "function": {"name": "get_current_temperature", "arguments": {"location": "Paris, France", "unit": "celsius"}}}

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello, how are you?"}],
    "system-user": [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Name a prime."}],
    "user-assistant": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    "system-multiturn": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. What can I do?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Why?"},
    ],
    "empty-content": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}, {"role": "user", "content": "ok"}],
    "unicode": [
        {"role": "user", "content": "  Ünïcödé: 日本語, emoji 😀, quotes \"'` and\ttabs\nnew lines  "},
        {"role": "assistant", "content": "Réponse: ß→SS? «oui» — \\n is not a newline\n"},
        {"role": "user", "content": "{{ not a template }} {% neither %} <|im_end|>"},
    ],
    "tool-call": [
        {"role": "user", "content": "What is the temperature in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "name": "get_current_temperature", "tool_call_id": "call_9Kx2", "content": "22.0"},
        {"role": "assistant", "content": "It is 22 degrees Celsius in Paris."},
    ],
    "content-parts": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "text", "text": "the sky."}]},
    ],
    "reasoning": [
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "content": "<think>\n7 has no divisors but 1 and 7.\n</think>\n\nYes.", "reasoning_content": "7 has no divisors but 1 and 7."},
        {"role": "user", "content": "And 9?"},
    ],
}

# Extra options for some templates: (case suffix, kwargs, with tools)
VARIANTS = {
    "qwen3": [("thinking-off", {"enable_thinking": False})],
    "smollm3": [("no-think", {"enable_thinking": False})],
}

TOOL_TEMPLATES = {"llama3.1-tools", "llama3.2", "qwen2.5", "qwen3", "mistral-v0.3", "mistral-nemo", "hermes2-pro", "smollm3"}


def main():
    e2e_path, automap_path, tokdir, out = sys.argv[1:5]
    e2e = json.load(open(e2e_path, encoding="utf-8"))
    automap = {e["model"]: e["template"] for e in json.load(open(automap_path, encoding="utf-8"))}
    os.makedirs(os.path.join(out, "templates"), exist_ok=True)
    index = {}
    cases = []
    for name, (kind, key, special) in CURATED.items():
        if kind == "e2e":
            text, source = e2e[key]["chat_template"], f"{E2E}, entry {key!r}"
        elif kind == "automap":
            text, source = automap[key], f"{AUTOMAP}, entry {key!r}"
        else:
            cfg = json.load(open(os.path.join(tokdir, key, "tokenizer_config.json"), encoding="utf-8"))
            with open(os.path.join(tokdir, key, "SOURCE"), encoding="utf-8") as f:
                pkg = f.read().strip()
            text, source = cfg["chat_template"], f"{pkg} tokenizer_config.json"
            special = {k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if cfg.get(k)}
            special = {k: (v["content"] if isinstance(v, dict) else v) for k, v in special.items()}
        with open(os.path.join(out, "templates", name + ".jinja"), "w", encoding="utf-8") as f:
            f.write(text)
        index[name] = {"source": source, "special": special}
        variants = [("", {})] + VARIANTS.get(name, [])
        for conv_name, messages in CONVERSATIONS.items():
            for suffix, kwargs in variants:
                for agp in (False, True):
                    tools = [WEATHER_TOOL] if conv_name == "tool-call" and name in TOOL_TEMPLATES else None
                    cname = f"{name}/{conv_name}" + (f"/{suffix}" if suffix else "") + ("/gen" if agp else "")
                    cases.append({"name": cname, "template_name": name, "special": special, "messages": messages,
                                  "tools": tools, "add_generation_prompt": agp, "kwargs": kwargs})
    with open(os.path.join(out, "templates", "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(out, "cases.in.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    examples = [{"name": k, "template": v["chat_template"], "vars": v["data"], "target": v.get("target")} for k, v in e2e.items()]
    json.dump(examples, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

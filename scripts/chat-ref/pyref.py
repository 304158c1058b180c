#!/usr/bin/env python3
"""pyref.py renders template cases with Python's Jinja2 in the environment
transformers builds for chat templates, and writes the outputs as JSON.

    python3 scripts/chat-ref/pyref.py CASES.json [TEMPLATES_DIR] [--js JS.json] > OUT.json

CASES.json is a list of objects, each either
  {"name", "template", "vars"}                       a template and its variables, or
  {"name", "template", "special", "messages", "tools", "documents",
   "add_generation_prompt", "kwargs"}                a chat case,
(a chat case may name its template with "template_name" instead: the file
TEMPLATES_DIR/<template_name>.jinja), where a chat case's variables are made as transformers' apply_chat_template
makes them: {**special, **kwargs} plus messages, tools, documents and
add_generation_prompt. Each case comes back with "python" (the rendered text)
and "python_generation" (the [start, end) UTF-8 byte spans of its
{% generation %} blocks), or "python_error" ("ExceptionType: message");
with --js, also the "js" or "js_error" that jsref.mjs printed for it.

The environment mirrors transformers' _compile_jinja_template
(src/transformers/utils/chat_template_utils.py): ImmutableSandboxedEnvironment
with trim_blocks and lstrip_blocks, the loopcontrols extension and a
{% generation %} tag; tojson replaced by json.dumps with ensure_ascii=False
(and indent, separators, sort_keys); the globals raise_exception and
strftime_now. strftime_now reads a fixed clock, CLOCK below, so that the
outputs are reproducible; the Go tests use the same instant. Only Jinja2
is needed (not transformers or torch): `pip install jinja2==3.1.6`, or
Debian's python3-jinja2.
"""

import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The instant strftime_now renders (naive local time, as datetime.now() gives).
CLOCK = datetime.datetime(2024, 7, 26, 14, 5, 9)


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders its body and records
    where the body landed in the output, as transformers' AssistantTracker."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self.chunks = None
        self.spans = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_track"), [], [], body).set_lineno(lineno)

    def _track(self, caller):
        text = caller()
        if self.chunks is not None:
            start = len("".join(self.chunks))
            self.spans.append((start, start + len(text)))
        return text


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return CLOCK.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def byte_offset(text, i):
    return len(text[:i].encode("utf-8"))


def render(env, case, templates_dir):
    if "vars" in case:
        variables = dict(case["vars"])
    else:
        variables = dict(case.get("special") or {})
        variables.update(case.get("kwargs") or {})
        variables.update(messages=case["messages"], tools=case.get("tools"),
                         documents=case.get("documents"),
                         add_generation_prompt=case.get("add_generation_prompt", False))
    source = case.get("template")
    if source is None:
        with open(f"{templates_dir}/{case['template_name']}.jinja", encoding="utf-8") as f:
            source = f.read()
    tmpl = env.from_string(source)
    tracker = next(e for e in env.extensions.values() if isinstance(e, GenerationTag))
    chunks, spans = [], []
    tracker.chunks, tracker.spans = chunks, spans
    try:
        for chunk in tmpl.generate(**variables):
            chunks.append(chunk)
    finally:
        tracker.chunks, tracker.spans = None, None
    text = "".join(chunks)
    return text, [[byte_offset(text, a), byte_offset(text, b)] for a, b in spans]


def main():
    args = sys.argv[1:]
    js = None
    if "--js" in args:
        i = args.index("--js")
        with open(args[i + 1], encoding="utf-8") as f:
            js = json.load(f)
        del args[i:i + 2]
    with open(args[0], encoding="utf-8") as f:
        cases = json.load(f)
    templates_dir = args[1] if len(args) > 1 else "."
    env = make_env()
    for n, case in enumerate(cases):
        if js is not None:
            assert js[n]["name"] == case["name"], (js[n]["name"], case["name"])
            for k in ("js", "js_error"):
                case.pop(k, None)
                if k in js[n]:
                    case[k] = js[n][k]
        for k in ("python", "python_error", "python_generation"):
            case.pop(k, None)
        try:
            text, spans = render(env, case, templates_dir)
            case["python"] = text
            if spans:
                case["python_generation"] = spans
        except Exception as e:  # every failure is a result to record
            case["python_error"] = f"{type(e).__name__}: {e}"
    json.dump(cases, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    print(f"jinja2 {jinja2.__version__}", file=sys.stderr)
    main()

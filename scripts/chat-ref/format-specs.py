#!/usr/bin/env python3
"""format-specs.py writes what Python's Jinja2 makes of str.format with
each of a set of format specs applied to each of a set of values, for the
Go test TestFormatSpecs (models/chat/internal/jinja):

    python3 scripts/chat-ref/format-specs.py > models/chat/internal/jinja/testdata/format_specs.json

Each row is [spec, value, text], text being the rendering of
{{ ('{:SPEC}').format(v) }} in transformers' sandboxed environment, or null
where it raised. Only Jinja2 is needed (jinja2 3.1.6 made the committed
file).
"""

import json
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

VALUES = [3, -42, 0, 3.14159, -0.05, 1e20, 100.0, 0.000012345, 1234567.891, -0.0,
          True, "ab", "abcdef", "é", None, [1]]
SPECS = ["", "5", "05", "<05", ">5", "^7", "*^7", "é>4", "=8", "+", " ", "+05", "-5",
         "08.3f", ".3", ".5", ".0", "10.3s", ".2s", "s", "d", "+d", "05d", "x", "#x", "X",
         "#X", "#o", "b", "#010b", "c", "f", ".2f", "F", "e", ".2E", "g", ".3g", "G", "#g",
         "%", ".1%", "=+10.2f", ",", "_", ",d", "_b", ",x", ".2,f", ",.3g", "n", "#.0f",
         "0=5", "0<5", " 8.1e", "+.0%", "12,", "^+9.2f"]


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    rows = []
    for spec in SPECS:
        tmpl = env.from_string("{{ ('{:" + spec.replace("'", "\\'") + "}').format(v) }}")
        for v in VALUES:
            try:
                out = tmpl.render(v=v)
            except Exception:  # an error is a result to record
                out = None
            rows.append([spec, v, out])
    sys.stdout.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")


if __name__ == "__main__":
    print(f"jinja2 {jinja2.__version__}", file=sys.stderr)
    main()

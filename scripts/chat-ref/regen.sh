#!/usr/bin/env bash
# regen.sh rewrites the reference files of models/chat's tests. See README.md.
#   scripts/chat-ref/regen.sh E2E_TEST_JS AUTOMAP_TS
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
e2e_js=$1 automap_ts=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
R=scripts/chat-ref
T=models/chat/testdata
J=models/chat/internal/jinja/testdata
node $R/e2e-templates.mjs "$e2e_js" > "$work/e2e-templates.json"
node $R/automap-templates.mjs "$automap_ts" > "$work/automap.json"
python3 $R/make-corpus.py "$work/e2e-templates.json" "$work/automap.json" .tokenizers $T > "$work/e2e-cases.json"
mv $T/cases.in.json "$work/cases.in.json"
# ref IN OUT [TEMPLATES_DIR]: Python's rendering with @huggingface/jinja's merged in.
ref() {
	node $R/jsref.mjs "$1" ${3:-} > "$work/js.json"
	python3 $R/pyref.py "$1" ${3:-} --js "$work/js.json" > "$2"
}
ref "$work/cases.in.json" $T/cases.json $T/templates
ref "$work/e2e-cases.json" $J/e2e.json
ref $R/constructs.json $J/constructs.json
python3 $R/format-specs.py > $J/format_specs.json

#!/usr/bin/env bash
# Lints infra/template.yaml with a pinned cfn-lint (own venv, outside the clone), then checks what
# cfn-lint cannot know: each queue's visibility timeout is >= 6x its consumer's timeout, and all
# seven functions get the same configuration variables (besides the browser's and the sweeper's own),
# and the sweeper's solve timeout outlasts every solve function. Exits non-zero on any finding.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CFN_LINT_VERSION=1.58.0
venv="${CFN_LINT_HOME:-$HOME/.cache/captcha-cfn-lint}/venv-$CFN_LINT_VERSION"
if [ ! -x "$venv/bin/cfn-lint" ]; then
    echo "lint: installing cfn-lint==$CFN_LINT_VERSION into $venv"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install -q "cfn-lint==$CFN_LINT_VERSION"
fi
template="$here/template.yaml"
"$venv/bin/cfn-lint" --regions us-east-1 eu-west-1 -- "$template"
"$venv/bin/python" - "$template" <<'PY'
import sys
from cfnlint.decode import decode
tpl, errs = decode(sys.argv[1])
if errs:
    sys.exit(f"lint: cannot parse: {errs}")
res = tpl["Resources"]
bad = []
for name, r in res.items():
    if r["Type"] != "AWS::Lambda::EventSourceMapping":
        continue
    p = r["Properties"]
    queue = p["EventSourceArn"]["Fn::GetAtt"][0]
    fn = p["FunctionName"]["Ref"]
    vis = int(res[queue]["Properties"]["VisibilityTimeout"])
    timeout = int(res[fn]["Properties"]["Timeout"])
    if vis < 6 * timeout:
        bad.append(f"{queue}: VisibilityTimeout {vis} < 6 x {fn}.Timeout {timeout}")
    if p.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        bad.append(f"{name}: FunctionResponseTypes must be [ReportBatchItemFailures]")
for name, r in res.items():
    if r["Type"] == "AWS::SQS::Queue" and not name.endswith("Dlq"):
        if "RedrivePolicy" not in r["Properties"]:
            bad.append(f"{name}: no RedrivePolicy")
fns = {n: r for n, r in res.items() if r["Type"] == "AWS::Lambda::Function"}
if len(fns) != 7:
    bad.append(f"{len(fns)} functions, expected 7")
# Function-specific variables: the browser function's Chromium, the sweeper's clocks.
OWN = ("CAPTCHA_CHROMIUM_", "CAPTCHA_BROWSER_PAGES", "CAPTCHA_BROWSER_DEADLINE_", "CAPTCHA_SOLVE_TIMEOUT_", "CAPTCHA_TASK_DEADLINE_")
solve_min = int(tpl["Parameters"]["SolveTimeoutSecs"]["MinValue"])
for n, r in fns.items():
    if n.startswith("Solve") and int(r["Properties"]["Timeout"]) >= solve_min:
        bad.append(f"{n}: Timeout {r['Properties']['Timeout']} >= SolveTimeoutSecs.MinValue {solve_min} (the sweeper would retry live solves)")
base = None
for n, r in sorted(fns.items()):
    env = {k: v for k, v in r["Properties"]["Environment"]["Variables"].items() if not k.startswith(OWN)}
    if base is None:
        base = (n, env)
    elif env != base[1]:
        bad.append(f"{n}: environment differs from {base[0]}'s")
for b in bad:
    print(f"lint: {b}")
if bad:
    sys.exit(1)
PY
echo "lint: template clean (cfn-lint $CFN_LINT_VERSION + queue/function checks)"

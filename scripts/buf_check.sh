#!/usr/bin/env bash
# The contract gate: the gRPC contract in proto/ is a public API. `make lint` runs this script and
# tests/ops/test_contract_gate.py runs its parts under `make test`.
#
#   scripts/buf_check.sh [all]   buf lint, then buf breaking against the released contract (proto/baseline.binpb)
#                                and against the previous commit (HEAD~1)
#   scripts/buf_check.sh lint | baseline | previous    one of those
#   scripts/buf_check.sh buf     install if needed and print the path of the pinned buf CLI
#
# buf comes pinned from npm (@bufbuild/buf in package.json / package-lock.json), installed with `npm ci` into
# node_modules/ when package-lock.json is newer than node_modules/.installed. Never fails on set-up: without npm,
# or when the install fails (no registry), it says why and exits 0, as does the HEAD~1 half when there is no
# HEAD~1 (first commit, shallow clone) or no git. A lint error or a breaking change exits non-zero.
#
# After a release, record the released contract (deliberately, in its own commit):
#   node_modules/.bin/buf build proto -o proto/baseline.binpb
#
# Environment: BUF_CHECK_SKIP_EXIT (exit code when skipped, default 0; the tests use 77), BUF_PROTO_DIR (the
# module to check, default proto), BUF_AGAINST_REF (default HEAD~1; e.g. origin/main in a pull request),
# BUF_BIN (a buf to use instead of the pinned one), BUF_NPM (the npm command, default npm).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

PROTO=${BUF_PROTO_DIR:-proto}
BASELINE=proto/baseline.binpb
AGAINST_REF=${BUF_AGAINST_REF:-HEAD~1}
SKIP_EXIT=${BUF_CHECK_SKIP_EXIT:-0}
NPM=${BUF_NPM:-npm}
BUF=${BUF_BIN:-node_modules/.bin/buf}
STAMP=node_modules/.installed
SKIPPED=3 # internal: a part returns this when it could not run

# Names that broke a STANDARD rule before the gate existed. buf.yaml exempts their files from that rule
# (ignore_only); this list keeps anything else in those files under the rule. Messages as buf 1.75 words them.
GRANDFATHERED_RULES='{"version":"v2","lint":{"use":["ENUM_VALUE_PREFIX","SERVICE_SUFFIX"]}}'
GRANDFATHERED='Enum value name "AMOUNT_OFF" should be prefixed with "REWARD_TYPE_".
Enum value name "BONUS_POINTS" should be prefixed with "REWARD_TYPE_".
Enum value name "PERCENT_OFF" should be prefixed with "REWARD_TYPE_".
Enum value name "POINTS_MULTIPLIER" should be prefixed with "REWARD_TYPE_".
Service name "OfferAdmin" should be suffixed with "Service".'

note() { echo "buf_check: $*" >&2; }

with_timeout() { # seconds, command...
    if command -v timeout >/dev/null 2>&1; then
        timeout "$@"
    else
        shift
        "$@"
    fi
}

# Sets up the pinned buf, or returns SKIPPED having said why.
ensure_buf() {
    if [ -n "${BUF_BIN:-}" ]; then
        "$BUF" --version >/dev/null 2>&1 && return 0
        note "SKIPPED: BUF_BIN=$BUF_BIN does not run"
        return "$SKIPPED"
    fi
    if [ -x "$BUF" ] && [ -f "$STAMP" ] && [ ! package-lock.json -nt "$STAMP" ]; then
        return 0
    fi
    if ! command -v "$NPM" >/dev/null 2>&1; then
        note "SKIPPED: $NPM not found, so the pinned buf CLI cannot be installed (install Node.js with npm to" \
            "run the contract gate)"
        return "$SKIPPED"
    fi
    if command -v flock >/dev/null 2>&1; then # `make -j lint test` on a fresh clone: one npm ci at a time
        exec 9>"${TMPDIR:-/tmp}/pos-offers-buf-install.$(id -u).lock"
        flock 9
        if [ -x "$BUF" ] && [ -f "$STAMP" ] && [ ! package-lock.json -nt "$STAMP" ]; then
            exec 9>&-
            return 0
        fi
    fi
    note "installing the pinned buf CLI: npm ci (package-lock.json)"
    # --ignore-scripts: the package's postinstall only swaps its node launcher for the native binary.
    if ! with_timeout 300 "$NPM" ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2; then
        exec 9>&-
        note "SKIPPED: npm ci failed (is the npm registry reachable?), so the contract gate did not run"
        return "$SKIPPED"
    fi
    exec 9>&-
    if ! "$BUF" --version >/dev/null 2>&1; then
        note "SKIPPED: the buf CLI installed by npm does not run on this machine"
        return "$SKIPPED"
    fi
    touch "$STAMP" || true
}

run_lint() {
    note "buf lint $PROTO"
    local failed=0 found
    "$BUF" lint "$PROTO" || failed=1
    found=$(cd "$PROTO" && "$BUF" lint --config "$GRANDFATHERED_RULES" 2>&1 | sed -E 's/^[^:]*:[0-9]+:[0-9]+://' | sort)
    if [ "$found" != "$GRANDFATHERED" ]; then
        note "new names must follow ENUM_VALUE_PREFIX and SERVICE_SUFFIX (only the names listed in" \
            "scripts/buf_check.sh are exempt); buf reports:"
        diff <(echo "$GRANDFATHERED") <(echo "$found") | sed -n -e 's/^> /  new: /p' -e 's/^< /  no longer reported: /p' >&2
        failed=1
    fi
    return "$failed"
}

run_baseline() {
    note "buf breaking $PROTO --against $BASELINE"
    "$BUF" breaking "$PROTO" --against "$BASELINE"
}

run_previous() {
    if ! command -v git >/dev/null 2>&1; then
        note "SKIPPED breaking against $AGAINST_REF: git is not installed"
        return "$SKIPPED"
    fi
    local top prefix
    if ! top=$(git rev-parse --show-toplevel 2>/dev/null) || ! prefix=$(git rev-parse --show-prefix 2>/dev/null); then
        note "SKIPPED breaking against $AGAINST_REF: not a git checkout"
        return "$SKIPPED"
    fi
    if ! git rev-parse --verify --quiet "$AGAINST_REF^{commit}" >/dev/null; then
        note "SKIPPED breaking against $AGAINST_REF: no such commit here (the first commit, or a shallow clone:" \
            "git fetch --deepen=1)"
        return "$SKIPPED"
    fi
    if ! git cat-file -e "$AGAINST_REF:./proto" 2>/dev/null; then
        note "SKIPPED breaking against $AGAINST_REF: it has no proto/"
        return "$SKIPPED"
    fi
    note "buf breaking $PROTO --against $AGAINST_REF (git)"
    "$BUF" breaking "$PROTO" --against "$top/.git#ref=$AGAINST_REF,subdir=${prefix}proto"
}

# Runs one part: 0 passed, 1 failed, SKIPPED could not run (said why).
part() {
    "$@"
    local rc=$?
    case $rc in
    0 | "$SKIPPED") return "$rc" ;;
    *) return 1 ;;
    esac
}

finish() { # rc of the part(s)
    case $1 in
    0) exit 0 ;;
    "$SKIPPED") exit "$SKIP_EXIT" ;;
    *)
        note "FAILED: $PROTO breaks the contract rules (buf reports above; README.md, The contract, says how to change proto/)"
        exit 1
        ;;
    esac
}

command=${1:-all}
case $command in
all | lint | baseline | previous | buf) ;;
*)
    echo "usage: scripts/buf_check.sh [all|lint|baseline|previous|buf]" >&2
    exit 2
    ;;
esac

part ensure_buf
rc=$?
[ "$rc" = 0 ] || finish "$rc"
if [ -z "${BUF_BIN:-}" ]; then
    # The platform's native binary (the optional dependency npm installed), without the node launcher's start-up.
    for native in node_modules/@bufbuild/buf-*/bin/buf; do
        if [ -x "$native" ] && "$native" --version >/dev/null 2>&1; then
            BUF=$native
            break
        fi
    done
fi
if [[ $BUF == */* ]]; then
    BUF="$(cd "$(dirname "$BUF")" && pwd)/$(basename "$BUF")"
fi

case $command in
buf) command -v "$BUF" ;;
lint) part run_lint || finish $? ;;
baseline) part run_baseline || finish $? ;;
previous) part run_previous || finish $? ;;
all)
    failed=0
    part run_lint || { [ $? = "$SKIPPED" ] || failed=1; }
    part run_baseline || { [ $? = "$SKIPPED" ] || failed=1; }
    part run_previous || { [ $? = "$SKIPPED" ] || failed=1; }
    [ "$failed" = 0 ] || finish 1
    note "contract gate passed ($("$BUF" --version))"
    ;;
esac
exit 0

# Shared by the stand-in agent CLIs (sourced, busybox sh): read the prompt,
# make the edits a real run would, replay a recorded output.
#
# HAFLOW_STANDIN_CASE picks the recording (<cli>-<case>.stdout/.stderr, or
# <cli>-<case>.json): "fake" (default) is a successful run that edits files;
# any other case replays a failure and edits nothing.
# HAFLOW_STANDIN_EXIT overrides the exit code.
# HAFLOW_STANDIN_ECHO=NAME prints NAME=<its value> on both streams first, as
# a careless agent might (the daemon must redact secret values).

STANDIN_CASE=${HAFLOW_STANDIN_CASE:-fake}
RECORDINGS=${HAFLOW_RECORDINGS:-/usr/share/haflow-recordings}

usage_error() {
    echo "$STANDIN_NAME: $*" >&2
    exit 2
}

# need VALUE WANTED FLAG: a flag's value must be exactly what the adapter passes.
need() {
    [ "$1" = "$2" ] || usage_error "$3 must be $2, not '$1'"
}

# act PROMPT: what the recorded run did, done for real.
act() {
    [ -n "$1" ] || usage_error "empty prompt (it is read from stdin)"
    if [ -n "${HAFLOW_STANDIN_ECHO:-}" ]; then
        eval "leaked=\${$HAFLOW_STANDIN_ECHO:-}"
        printf '%s=%s\n' "$HAFLOW_STANDIN_ECHO" "$leaked"
        printf '%s=%s\n' "$HAFLOW_STANDIN_ECHO" "$leaked" >&2
    fi
    [ "$STANDIN_CASE" = fake ] || return 0
    if [ -d /workspace ] && [ -w /workspace ]; then
        printf 'hello from %s\n' "$STANDIN_NAME" > /workspace/hello.txt
    fi
    out=$(printf '%s\n' "$1" | sed -n 's/^Output file: //p' | head -n 1)
    if [ -n "$out" ]; then
        {
            printf '# Written by the %s stand-in\n\n' "$STANDIN_NAME"
            printf '%s\n' "$1" | sed -n '/^<input>$/,/^<\/input>$/p' | sed '1d;$d'
        } > "$out"
    fi
}

# replay CLI DEFAULT_EXIT: print the recording, exit as the real CLI did.
replay() {
    base=$RECORDINGS/$1-$STANDIN_CASE
    if [ -f "$base.stdout" ]; then
        cat "$base.stdout"
        if [ -f "$base.stderr" ]; then cat "$base.stderr" >&2; fi
    elif [ -f "$base.json" ]; then
        cat "$base.json"
    else
        usage_error "no recording $1-$STANDIN_CASE in $RECORDINGS"
    fi
    exit "${HAFLOW_STANDIN_EXIT:-$2}"
}

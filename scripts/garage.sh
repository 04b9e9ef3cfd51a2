#!/usr/bin/env bash
# A throwaway Garage cluster on 127.0.0.1 for anthill's S3 tests.
#
#   scripts/garage.sh install      cargo-installs Garage 2.5.0 unless that version is there
#   scripts/garage.sh start [N]    starts N nodes (1 or 3, default 3; replication factor N),
#                                  creates the bucket and a key, prints `export` lines
#   scripts/garage.sh stop         stops the nodes (by PID) and removes the state folder
#
#   eval "$(scripts/garage.sh start 3)"   # then run the tests, then: scripts/garage.sh stop
#
# Settings (environment): GARAGE_STATE_DIR (default /tmp/anthill-garage-$UID) holds
# every node's config, metadata, data and log, the PIDs and the env file;
# GARAGE_BASE_PORT (default 3900): node i (0-based) listens on base+10*i (S3),
# +1 (RPC) and +3 (admin); GARAGE_BIN picks the binary. Progress goes to stderr,
# the exports alone to stdout.
set -euo pipefail

readonly GARAGE_VERSION=2.5.0
readonly BUCKET=anthill-test
readonly KEY_NAME=anthill-test-key
readonly REGION=garage
readonly STATE_DIR=${GARAGE_STATE_DIR:-/tmp/anthill-garage-$(id -u)}
readonly BASE_PORT=${GARAGE_BASE_PORT:-3900}
# Marks a folder as ours, so `stop` never removes anything else.
readonly MARKER=.anthill-garage

say() { printf 'garage.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

garage_bin() {
    if [[ -n ${GARAGE_BIN:-} ]]; then
        echo "$GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x $HOME/.cargo/bin/garage ]]; then
        echo "$HOME/.cargo/bin/garage"
    else
        return 1
    fi
}

installed_version() {
    local bin
    bin=$(garage_bin) || return 1
    # "garage cargo:2.5.0 [features: ...]"
    "$bin" --version 2>/dev/null | sed -n 's/^garage [a-z]*:\{0,1\}v\{0,1\}\([0-9][0-9.]*\).*/\1/p'
}

cmd_install() {
    local version
    version=$(installed_version || true)
    if [[ $version == "$GARAGE_VERSION" ]]; then
        say "Garage $GARAGE_VERSION is already installed ($(garage_bin))"
        return 0
    fi
    say "installing Garage $GARAGE_VERSION with cargo (about 9 minutes on 2 cores)${version:+; found $version}"
    cargo install garage --locked --version "$GARAGE_VERSION"
}

# Runs "$@" until it succeeds, at most $1 times, 0.5 s apart; the last failure's
# output goes to stderr. Usage: retry TRIES command...
retry() {
    local tries=$1 attempt output
    shift
    for ((attempt = 1; attempt <= tries; attempt++)); do
        if output=$("$@" 2>&1); then
            printf '%s' "$output"
            return 0
        fi
        sleep 0.5
    done
    say "gave up after $tries tries: $*"
    printf '%s\n' "$output" >&2
    return 1
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Fails when a node process died (and shows the end of its log).
check_alive() {
    local i=$1 pid=$2
    if ! kill -0 "$pid" 2>/dev/null; then
        say "node $i (PID $pid) exited; end of $STATE_DIR/node$i/garage.log:"
        tail -n 20 "$STATE_DIR/node$i/garage.log" >&2 || true
        return 1
    fi
}

write_config() {
    local i=$1 nodes=$2 secret=$3
    local dir=$STATE_DIR/node$i port=$((BASE_PORT + 10 * i))
    mkdir -p "$dir/meta" "$dir/data"
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = $nodes
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$((port + 3))"
EOF
    chmod 600 "$dir/garage.toml"
}

# A signed S3 request with curl (Garage wants x-amz-content-sha256).
s3_request() {
    local method=$1 url=$2
    shift 2
    curl --silent --show-error --fail --max-time 5 -X "$method" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$KEY_ID:$SECRET_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$url"
}

# Every node serves a put, get and delete (layout and bucket known everywhere).
s3_round_trip() {
    local endpoint=$1 object
    object="$endpoint/$BUCKET/.garage-ready-$RANDOM"
    s3_request PUT "$object" --data-binary "ready" >/dev/null &&
        [[ $(s3_request GET "$object") == ready ]] &&
        s3_request DELETE "$object" >/dev/null
}

cmd_start() {
    local nodes=${1:-3}
    [[ $nodes == 1 || $nodes == 3 ]] || die "start takes 1 or 3 nodes, not $nodes"
    local bin
    bin=$(garage_bin) || die "garage is not installed; run: $0 install"
    local version
    version=$(installed_version || true)
    [[ $version == "$GARAGE_VERSION" ]] ||
        say "warning: $bin is Garage ${version:-of unknown version}, not $GARAGE_VERSION"
    command -v curl >/dev/null || die "curl is needed to check the S3 endpoints"

    if [[ -f $STATE_DIR/pids ]]; then
        die "a cluster is already running from $STATE_DIR; run: $0 stop"
    fi
    local i
    for ((i = 0; i < nodes; i++)); do
        local port=$((BASE_PORT + 10 * i))
        for p in "$port" $((port + 1)) $((port + 3)); do
            ! port_in_use "$p" || die "port $p on 127.0.0.1 is in use; set GARAGE_BASE_PORT"
        done
    done

    if [[ -d $STATE_DIR && ! -f $STATE_DIR/$MARKER ]] && [[ -n $(ls -A "$STATE_DIR") ]]; then
        die "$STATE_DIR exists and is not a garage.sh state folder; set GARAGE_STATE_DIR"
    fi
    rm -rf "$STATE_DIR"
    mkdir -p "$STATE_DIR"
    chmod 700 "$STATE_DIR"
    touch "$STATE_DIR/$MARKER"
    local secret
    secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

    local -a pids=() endpoints=() ids=()
    for ((i = 0; i < nodes; i++)); do
        write_config "$i" "$nodes" "$secret"
        RUST_LOG=${RUST_LOG:-garage=info} nohup "$bin" -c "$STATE_DIR/node$i/garage.toml" server \
            >"$STATE_DIR/node$i/garage.log" 2>&1 </dev/null &
        pids+=("$!")
        echo "$!" >>"$STATE_DIR/pids"
        endpoints+=("http://127.0.0.1:$((BASE_PORT + 10 * i))")
    done
    say "started $nodes node(s): PIDs ${pids[*]}"

    # If anything below fails, leave no server running.
    trap 'say "start failed; stopping the nodes"; cmd_stop' EXIT

    for ((i = 0; i < nodes; i++)); do
        local cfg=$STATE_DIR/node$i/garage.toml id=""
        local attempt
        for ((attempt = 1; attempt <= 60; attempt++)); do
            check_alive "$i" "${pids[i]}"
            if id=$("$bin" -c "$cfg" node id -q 2>/dev/null); then
                break
            fi
            sleep 0.5
        done
        [[ -n $id ]] || die "node $i did not answer within 30 s"
        ids+=("${id%@*}")
    done

    local cfg0=$STATE_DIR/node0/garage.toml
    for ((i = 1; i < nodes; i++)); do
        retry 40 "$bin" -c "$cfg0" node connect \
            "${ids[i]}@127.0.0.1:$((BASE_PORT + 10 * i + 1))" >/dev/null
    done
    for ((i = 0; i < nodes; i++)); do
        retry 40 "$bin" -c "$cfg0" layout assign -z "dc$((i + 1))" -c 1G "${ids[i]}" >/dev/null
    done
    retry 40 "$bin" -c "$cfg0" layout apply --version 1 >/dev/null
    say "layout applied: $nodes node(s), replication factor $nodes"

    retry 60 "$bin" -c "$cfg0" bucket create "$BUCKET" >/dev/null
    retry 20 "$bin" -c "$cfg0" key create "$KEY_NAME" >/dev/null
    retry 20 "$bin" -c "$cfg0" bucket allow --read --write --owner "$BUCKET" --key "$KEY_NAME" >/dev/null
    local info
    info=$(retry 20 "$bin" -c "$cfg0" key info "$KEY_NAME" --show-secret)
    KEY_ID=$(awk -F': *' '/^Key ID:/ {print $2; exit}' <<<"$info")
    SECRET_KEY=$(awk -F': *' '/^Secret key:/ {print $2; exit}' <<<"$info")
    [[ -n $KEY_ID && -n $SECRET_KEY ]] || die "could not read the key from: $info"

    for endpoint in "${endpoints[@]}"; do
        retry 60 s3_round_trip "$endpoint" >/dev/null
    done
    trap - EXIT
    say "S3 answers on ${endpoints[*]} (bucket $BUCKET)"

    local run
    run="run-$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')"
    local url="s3://$BUCKET/$run?endpoint=${endpoints[0]}&region=$REGION&allow_http=true"
    {
        echo "export ANTHILL_TEST_S3_URL='$url'"
        echo "export AWS_ACCESS_KEY_ID='$KEY_ID'"
        echo "export AWS_SECRET_ACCESS_KEY='$SECRET_KEY'"
        echo "export AWS_DEFAULT_REGION='$REGION'"
        echo "export AWS_ENDPOINT_URL='${endpoints[0]}'"
        echo "export ANTHILL_TEST_S3_ENDPOINTS='${endpoints[*]}'"
        echo "export GARAGE_PIDS='${pids[*]}'"
        echo "export GARAGE_STATE_DIR='$STATE_DIR'"
    } >"$STATE_DIR/env"
    cat "$STATE_DIR/env"
}

# Is $1 a Garage server of this state folder (and not a recycled PID)?
is_our_node() {
    local pid=$1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$STATE_DIR/node[0-9]*/garage.toml server"
}

cmd_stop() {
    if [[ ! -d $STATE_DIR ]]; then
        say "nothing to stop ($STATE_DIR does not exist)"
        return 0
    fi
    [[ -f $STATE_DIR/$MARKER ]] || die "$STATE_DIR is not a garage.sh state folder; not touching it"
    local -a pids=()
    if [[ -f $STATE_DIR/pids ]]; then
        mapfile -t pids <"$STATE_DIR/pids"
    fi
    local pid alive=()
    for pid in "${pids[@]}"; do
        if is_our_node "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            alive+=("$pid")
        fi
    done
    local attempt
    for ((attempt = 0; attempt < 50 && ${#alive[@]} > 0; attempt++)); do
        local still=()
        for pid in "${alive[@]}"; do
            if is_our_node "$pid"; then still+=("$pid"); fi
        done
        alive=("${still[@]+"${still[@]}"}")
        ((${#alive[@]} == 0)) || sleep 0.2
    done
    for pid in "${alive[@]+"${alive[@]}"}"; do
        say "PID $pid ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done
    for ((attempt = 0; attempt < 25; attempt++)); do
        local left=0
        for pid in "${alive[@]+"${alive[@]}"}"; do
            if is_our_node "$pid"; then left=1; fi
        done
        ((left == 0)) && break
        sleep 0.2
    done
    rm -rf "$STATE_DIR"
    say "stopped ${#pids[@]} node(s) and removed $STATE_DIR"
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start "${2:-3}" ;;
stop) cmd_stop ;;
*)
    echo "usage: $0 install | start [1|3] | stop" >&2
    exit 2
    ;;
esac

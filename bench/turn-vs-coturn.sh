#!/usr/bin/env bash
# Side by side: Vienna's TURN relay and coturn, one relay thread each, under the same load from coturn's
# own client (turnutils_uclient, ChannelData to an echo peer, turnutils_peer). Everything on loopback,
# every run bounded by message count and a timeout; the servers are stopped on exit.
#
# Prints a Markdown table: messages sent/received, loss, server CPU seconds (utime+stime from /proc), and
# server CPU per relayed datagram. Each message crosses the relay twice (client->peer, peer->client).
#
# Usage: bash bench/turn-vs-coturn.sh            (needs coturn: bash tools/install-deps.sh)
#        LOADS="-m 50 -z 1 -n 2000|-m 50 -z 0 -n 10000" bash bench/turn-vs-coturn.sh
set -euo pipefail
cd "$(dirname "$0")/.."

LOADS=${LOADS:-"-m 50 -z 5 -n 1000|-m 50 -z 1 -n 4000|-m 50 -z 0 -n 10000"}
SIZE=${SIZE:-172}
PEER_PORT=3581
COTURN_PORT=3578
VIENNA_PORT=3678

cargo build --release --locked --bin vienna >&2
VIENNA=target/release/vienna
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/turnserver.conf" <<CONF
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=$COTURN_PORT
min-port=40000
max-port=44999
lt-cred-mech
user=alice:secret
realm=localhost
no-tls
no-dtls
no-cli
allow-loopback-peers
userdb=$work/turndb.sqlite
pidfile=$work/turnserver.pid
log-file=$work/turn.log
simple-log
no-stdout-log
CONF
turnserver -c "$work/turnserver.conf" --relay-threads=1 >/dev/null 2>&1 &
pids+=($!)
coturn_pid=$!

echo secret | "$VIENNA" user add alice --password-stdin --data-dir "$work/vienna" >/dev/null
"$VIENNA" serve --data-dir "$work/vienna" --set admin.enabled=false --set turn.workers=1 \
  --set turn.udp_port=$VIENNA_PORT --set turn.tcp=false --set turn.tls=false \
  --set turn.min_port=45000 --set turn.max_port=49999 --set turn.user_quota=0 \
  --set 'turn.allowed_peers=["127.0.0.0/8"]' --set log.level=warn >"$work/vienna.log" 2>&1 &
pids+=($!)
vienna_pid=$!

turnutils_peer -L 127.0.0.1 -p $PEER_PORT >/dev/null 2>&1 &
pids+=($!)
sleep 2

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

echo "| server | load (uclient) | sent | received | loss | server CPU s | server µs per relayed datagram |"
echo "|---|---|---|---|---|---|---|"
IFS='|' read -ra loads <<< "$LOADS"
for load in "${loads[@]}"; do
  for server in coturn vienna; do
    if [ $server = coturn ]; then pid=$coturn_pid; port=$COTURN_PORT; else pid=$vienna_pid; port=$VIENNA_PORT; fi
    before=$(cpu "$pid")
    # shellcheck disable=SC2086
    out=$(timeout 300 turnutils_uclient -u alice -w secret -p $port -e 127.0.0.1 -r $PEER_PORT -l "$SIZE" -c $load 127.0.0.1 2>&1 || true)
    after=$(cpu "$pid")
    sent=$(grep -o 'tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' <<< "$out" | tail -1 | sed 's/tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\)/\1 \2/')
    read -r s r <<< "${sent:-0 0}"
    secs=$(echo "scale=2; ($after - $before) / $ticks" | bc)
    loss=$(echo "scale=1; if ($s > 0) 100 * ($s - $r) / $s else 0" | bc)
    # Datagrams the relay forwarded: every sent message client->peer, every received one peer->client.
    per=$(echo "scale=2; if ($s + $r > 0) 1000000 * $secs / ($s + $r) else 0" | bc)
    echo "| $server | \`$load -l $SIZE\` | $s | $r | $loss % | $secs | $per |"
  done
done

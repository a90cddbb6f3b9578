#!/usr/bin/env bash
# nats-demo.sh: a local mles cluster over NATS JetStream, on loopback.
#
# Builds nats-server (the version go.mod requires, from the module proxy)
# and mles from this repository, starts three nats-server nodes (one per
# port of DEMO_NATS_PORTS) routed as one JetStream cluster, then three mles
# servers, each using a different NATS node with streams replicated on all
# three, prints how to connect, and stops everything it started on Ctrl-C
# or exit. With DEMO_DIR set, a second run finds the JetStream stores (and
# the history in them) of the first.
#
# Usage: deploy/nats-demo.sh [--check] [--nats-only] [-- MLES_FLAGS...]
#
#   --check      start everything, wait until it is ready, print "ready",
#                stop everything and exit 0 (for tests; 1 if anything
#                failed to start, with the tail of its log)
#   --nats-only  start the NATS cluster only (run mles yourself against it)
#   -- FLAGS     more flags for every mles server (e.g. -- --plain)
#
# Environment (lists are separated by spaces, one port per node):
#   DEMO_NATS_PORTS     NATS client ports         (default "4222 4223 4224")
#   DEMO_ROUTE_PORTS    NATS cluster route ports  (default "6222 6223 6224")
#   DEMO_MONITOR_PORTS  NATS monitoring ports     (default "8222 8223 8224")
#   DEMO_MLES_PORTS     mles ports                (default "8443 8444 8445")
#   DEMO_DIR            where binaries, configs, stores and logs go
#                       (default: a new temporary directory, removed on exit)
#   DEMO_KEEP=1         keep DEMO_DIR on exit (logs, JetStream stores)
#   DEMO_TIMEOUT        seconds to wait for readiness (default 60)
#   DEMO_NATS_BIN, DEMO_MLES_BIN, DEMO_MLESCAT_BIN
#                       use these binaries instead of building them
#
# The variables are named DEMO_*, not MLES_*: mles reads every MLES_<FLAG>
# from its environment as a flag. MLES_KEY passes through to the servers.

# SC2317 (unreachable command) misreads the functions that only the trap
# and wait_for call.
# shellcheck disable=SC2317
set -euo pipefail

check=0 nats_only=0
mles_extra=()
while (($#)); do
	case $1 in
	--check) check=1 ;;
	--nats-only) nats_only=1 ;;
	--) shift; mles_extra=("$@"); break ;;
	-h | --help) sed -n '2,/^$/{/^$/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "nats-demo: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
	esac
	shift
done

read -ra nats_ports <<<"${DEMO_NATS_PORTS:-4222 4223 4224}"
read -ra route_ports <<<"${DEMO_ROUTE_PORTS:-6222 6223 6224}"
read -ra monitor_ports <<<"${DEMO_MONITOR_PORTS:-8222 8223 8224}"
read -ra mles_ports <<<"${DEMO_MLES_PORTS:-8443 8444 8445}"
timeout=${DEMO_TIMEOUT:-60}
n=${#nats_ports[@]}
for list in route_ports monitor_ports mles_ports; do
	declare -n l=$list
	if ((${#l[@]} != n)); then
		echo "nats-demo: $list has ${#l[@]} ports, DEMO_NATS_PORTS $n: one per node" >&2
		exit 2
	fi
done

repo=$(cd "$(dirname "$0")/.." && pwd)
made_dir=0
if [[ -n ${DEMO_DIR:-} ]]; then
	dir=$DEMO_DIR
	mkdir -p "$dir"
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/mles-nats-demo.XXXXXX")
	made_dir=1
fi

nats_pids=() mles_pids=()

# stop ends the processes of pids with signal sig and waits for them,
# SIGKILL after 10 s.
stop() {
	local sig=$1 pid i
	shift
	for pid; do kill "-$sig" "$pid" 2>/dev/null || true; done
	for pid; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# mles first, while NATS still runs. SIGINT: mles closes at once
	# (SIGTERM would spread the closes over --drain-time).
	if ((${#mles_pids[@]})); then stop INT "${mles_pids[@]}"; fi
	if ((${#nats_pids[@]})); then stop TERM "${nats_pids[@]}"; fi
	if ((made_dir)) && [[ ${DEMO_KEEP:-} != 1 ]]; then
		rm -rf "$dir"
	elif ((${#nats_pids[@]})); then
		echo "nats-demo: logs and stores kept in $dir" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fail prints why, with the tail of log if given, and exits 1.
fail() {
	echo "nats-demo: $1" >&2
	if [[ -n ${2:-} && -f $2 ]]; then
		echo "--- tail of $2" >&2
		tail -n 30 "$2" >&2
	fi
	exit 1
}

# accepts reports whether something accepts TCP connections on port.
accepts() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# healthy reports whether nats-server's monitoring on port answers
# /healthz with 200: in a cluster, JetStream is running and has contact
# with a meta leader.
healthy() {
	local status
	status=$({
		exec 3<>"/dev/tcp/127.0.0.1/$1" &&
			printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
			head -n 1 <&3
	} 2>/dev/null) || return 1
	[[ $status == *" 200 "* ]]
}

# wait_for polls "$@" until it succeeds, failing after $timeout seconds or
# as soon as process pid (with log log) has exited.
wait_for() {
	local what=$1 pid=$2 log=$3 deadline=$((SECONDS + timeout))
	shift 3
	until "$@"; do
		kill -0 "$pid" 2>/dev/null || fail "$what exited" "$log"
		((SECONDS < deadline)) || fail "$what not ready within ${timeout}s" "$log"
		sleep 0.1
	done
}

for p in "${nats_ports[@]}" "${route_ports[@]}" "${monitor_ports[@]}"; do
	accepts "$p" && fail "port $p is in use (set DEMO_*_PORTS)"
done
if ((!nats_only)); then
	for p in "${mles_ports[@]}"; do
		accepts "$p" && fail "port $p is in use (set DEMO_MLES_PORTS)"
	done
fi

# Build. GOFLAGS from the caller (-race, say) stay as they are.
cd "$repo"
nats_bin=${DEMO_NATS_BIN:-$dir/nats-server}
mles_bin=${DEMO_MLES_BIN:-$dir/mles}
mlescat_bin=${DEMO_MLESCAT_BIN:-$dir/mlescat}
if [[ -z ${DEMO_NATS_BIN:-} ]]; then
	echo "building nats-server (go.mod's version) into $dir" >&2
	go build -o "$nats_bin" github.com/nats-io/nats-server/v2
fi
if ((!nats_only)); then
	if [[ -z ${DEMO_MLES_BIN:-} ]]; then
		echo "building mles into $dir" >&2
		go build -o "$mles_bin" ./cmd/mles
	fi
	if [[ -z ${DEMO_MLESCAT_BIN:-} ]]; then
		go build -o "$mlescat_bin" ./cmd/mlescat
	fi
fi

# Job control puts each server in a process group of its own: Ctrl-C
# reaches this script only, whose trap stops mles before NATS. (Sent to
# them too, it would also have bash's wait take a child's own exit on
# SIGINT for a crash, and skip the trap.)
set -m

# NATS: node i listens on nats_ports[i], routes to the others.
for ((i = 0; i < n; i++)); do
	mkdir -p "$dir/n$i"
	{
		echo "server_name: n$i"
		echo "listen: \"127.0.0.1:${nats_ports[i]}\""
		echo "http: \"127.0.0.1:${monitor_ports[i]}\""
		echo "jetstream { store_dir: \"$dir/n$i/store\" }"
		if ((n > 1)); then
			echo "cluster {"
			echo "  name: mles-demo"
			echo "  listen: \"127.0.0.1:${route_ports[i]}\""
			echo "  routes: ["
			for ((j = 0; j < n; j++)); do
				((j == i)) || echo "    \"nats-route://127.0.0.1:${route_ports[j]}\""
			done
			echo "  ]"
			echo "}"
		fi
	} >"$dir/n$i/nats.conf"
	"$nats_bin" -c "$dir/n$i/nats.conf" >"$dir/nats-$i.log" 2>&1 &
	nats_pids+=($!)
done
# All nodes run before any wait: none has a meta leader until a quorum does.
for ((i = 0; i < n; i++)); do
	wait_for "nats-server n$i" "${nats_pids[i]}" "$dir/nats-$i.log" accepts "${nats_ports[i]}"
	wait_for "nats-server n$i (JetStream meta leader)" "${nats_pids[i]}" "$dir/nats-$i.log" healthy "${monitor_ports[i]}"
done

# mles: server i uses NATS node i, streams replicated on every node.
if ((!nats_only)); then
	for ((i = 0; i < n; i++)); do
		"$mles_bin" --addr 127.0.0.1 -p "${mles_ports[i]}" \
			--nats "nats://127.0.0.1:${nats_ports[i]}" --nats-replicas "$n" \
			${mles_extra[@]+"${mles_extra[@]}"} >"$dir/mles-$i.log" 2>&1 &
		mles_pids+=($!)
	done
	for ((i = 0; i < n; i++)); do
		wait_for "mles $i" "${mles_pids[i]}" "$dir/mles-$i.log" accepts "${mles_ports[i]}"
	done
fi

if ((check)); then
	echo ready
	exit 0
fi

scheme=wss k=" -k"
for f in ${mles_extra[@]+"${mles_extra[@]}"}; do
	if [[ $f == --plain ]]; then scheme=ws k=; fi
done
nats_urls=() mles_urls=()
for ((i = 0; i < n; i++)); do
	nats_urls+=("nats://127.0.0.1:${nats_ports[i]}")
	mles_urls+=("$scheme://localhost:${mles_ports[i]}")
done
echo
echo "NATS JetStream cluster ($n nodes): ${nats_urls[*]}"
echo "  monitoring: http://127.0.0.1:${monitor_ports[0]}/jsz (and the other monitoring ports)"
if ((!nats_only)); then
	echo "mles servers: ${mles_urls[*]}"
	if [[ $scheme == wss ]]; then
		echo "  TLS with a self-signed certificate for localhost: clients skip verification"
		echo "  (mlescat -k; node ws: rejectUnauthorized: false)"
	fi
	echo
	echo "Listen on the first server, then say hello through the last one:"
	echo "  $mlescat_bin$k -listen ${mles_urls[0]} -uid bob -channel demo"
	echo "  echo hello | $mlescat_bin$k ${mles_urls[n - 1]} -uid alice -channel demo"
fi
echo
echo "Logs: $dir/*.log. Ctrl-C stops everything."
# Until Ctrl-C, or until one of the processes exits by itself.
set +e
wait -n "${nats_pids[@]}" ${mles_pids[@]+"${mles_pids[@]}"}
echo "nats-demo: a process exited; stopping the others (logs: $dir)" >&2
for ((i = 0; i < n; i++)); do
	kill -0 "${nats_pids[i]}" 2>/dev/null || fail "nats-server n$i exited" "$dir/nats-$i.log"
	if ((!nats_only)); then
		kill -0 "${mles_pids[i]}" 2>/dev/null || fail "mles $i exited" "$dir/mles-$i.log"
	fi
done
exit 1

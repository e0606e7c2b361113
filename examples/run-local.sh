#!/usr/bin/env bash
# Starts a master (registry 127.0.0.1:3000, gateway 127.0.0.1:3001) and 3 nodes, in the
# foreground. Ctrl-C stops them all (the nodes leave the master gracefully).
set -euo pipefail
demo=${1:-target/release/distribution-demo}
nodes=${NODES:-3}
pids=()
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT
"$demo" master --registry 127.0.0.1:3000 --gateway 127.0.0.1:3001 &
pids+=($!)
for _ in $(seq 1 200); do
  curl -fs 127.0.0.1:3000/health >/dev/null 2>&1 && break
  sleep 0.05
done
for _ in $(seq 1 "$nodes"); do
  "$demo" node --master 127.0.0.1:3000 --listen 127.0.0.1:0 &
  pids+=($!)
done
echo
echo "master on 127.0.0.1:3000, gateway on 127.0.0.1:3001, $nodes nodes. Try:"
echo "  curl 127.0.0.1:3001/sum"
echo "  curl '127.0.0.1:3001/palindrom?n=1000000'"
echo "  curl 127.0.0.1:3000/v1/nodes"
echo "Ctrl-C stops everything."
wait

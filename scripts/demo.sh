#!/usr/bin/env bash
# Try regent on one machine: an embedded single-node etcd and one replica
# supervising a sample worker on queue "demo". Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
go build -o bin/regent ./cmd/regent
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin/regent dev --listen-client "http://127.0.0.1:${port}" &
dev=$!
trap 'kill $dev 2>/dev/null; wait $dev 2>/dev/null' EXIT
for _ in $(seq 100); do
  bin/regent status --etcd-endpoints "127.0.0.1:${port}" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "status from another terminal: bin/regent status --etcd-endpoints 127.0.0.1:${port}"
exec_args=(run --etcd-endpoints "127.0.0.1:${port}" --queue demo --http-addr "" --
  sh -c 'while :; do echo "demo worker: queue=$REGENT_QUEUE term=$REGENT_TERM worker=$REGENT_WORKER"; sleep 2; done')
bin/regent "${exec_args[@]}"

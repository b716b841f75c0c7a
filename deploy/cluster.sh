#!/usr/bin/env bash
# The local cluster of docker-compose.yml, behind the make targets:
#
#   deploy/cluster.sh up       build the images (cached), start regent-1..3 and
#                              the backend ($BACKEND: etcd or postgres), wait
#                              until every replica is healthy, show the status
#   deploy/cluster.sh status   the leader of each queue, its term and config,
#                              the followers, /leader of each replica, and the
#                              last lines of the observer log
#   deploy/cluster.sh down     remove the project: containers, networks, volumes
#   deploy/cluster.sh test     the end-to-end test (deploy/clustertest) on both
#                              backends, under a unique project name; whatever
#                              happens, nothing of it is left behind
#
# Environment: BACKEND (etcd), REGENT_PROJECT (regent: the compose project of
# up/status/down), REGENT_IMAGE / ETCD_IMAGE / POSTGRES_IMAGE (default: the
# images built here; set ETCD_IMAGE or POSTGRES_IMAGE to use another, e.g.
# the public one), COMPOSE (the compose command; default `docker compose`
# when the plugin is there, else docker-compose).
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=${BACKEND:-etcd}
PROJECT=${REGENT_PROJECT:-regent}
QUEUES=(emails reports)
REPLICAS=(regent-1 regent-2 regent-3)

if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE="docker-compose"; fi
fi
# shellcheck disable=SC2206
compose_cmd=($COMPOSE)

say() { echo "cluster: $*" >&2; }

# compose PROJECT ARGS...: compose on docker-compose.yml for that project.
compose() {
  local p=$1
  shift
  "${compose_cmd[@]}" -f docker-compose.yml -p "$p" "$@"
}

# images WHAT...: build (or find cached) images and export their names; a
# name already set in the environment is kept.
images() {
  local out line var
  out=$(bash deploy/images.sh "$@")
  while IFS= read -r line; do
    var=${line%%=*}
    if [ -z "${!var:-}" ]; then export "$line"; fi
  done <<<"$out"
}

backend_ok() {
  case $BACKEND in
    etcd | postgres) ;;
    *)
      say "BACKEND must be etcd or postgres, not $BACKEND"
      exit 2
      ;;
  esac
}

cid() { compose "$PROJECT" ps -q "$1" 2>/dev/null; }

cmd_up() {
  backend_ok
  local want=(regent)
  if [ "$BACKEND" = etcd ] && [ -z "${ETCD_IMAGE:-}" ]; then want+=(etcd); fi
  if [ "$BACKEND" = postgres ] && [ -z "${POSTGRES_IMAGE:-}" ]; then want+=(postgres); fi
  images "${want[@]}"
  say "starting project $PROJECT on $BACKEND (regent image $REGENT_IMAGE)"
  COMPOSE_PROFILES=$BACKEND REGENT_BACKEND=$BACKEND compose "$PROJECT" up -d
  local s id health deadline=$((SECONDS + 180))
  for s in "${REPLICAS[@]}"; do
    while :; do
      id=$(cid "$s")
      health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null || true)
      [ "$health" = healthy ] && break
      if [ $SECONDS -ge $deadline ]; then
        say "$s is not healthy ($health); its last log lines:"
        compose "$PROJECT" logs --tail=30 "$s" >&2
        exit 1
      fi
      sleep 1
    done
  done
  say "regent-1..3 are healthy"
  cmd_status
}

cmd_status() {
  local id s q code port
  id=$(cid regent-1)
  if [ -z "$id" ]; then
    say "project $PROJECT is not running (make cluster-up)"
    exit 1
  fi
  compose "$PROJECT" ps
  echo
  # Inside a replica: its environment names the backend.
  docker exec "$id" regent status || true
  echo
  docker exec "$id" regent status --check || true
  echo
  for s in "${REPLICAS[@]}"; do
    id=$(cid "$s")
    if [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" != true ]; then
      echo "$s  not running"
      continue
    fi
    port=$(docker port "$id" 9464/tcp 2>/dev/null | head -n1 || true)
    for q in "${QUEUES[@]}"; do
      if docker exec "$id" httpcheck "http://127.0.0.1:9464/leader?queue=$q" >/dev/null 2>&1; then code=200; else code=503; fi
      echo "$s  GET http://${port:-?}/leader?queue=$q -> $code"
    done
  done
  echo
  echo "last lines of the observer log (queue node term pid unix-nanos):"
  docker cp "$(cid regent-1):/var/lib/regent/workers.log" - 2>/dev/null | tar -xO | tail -n 6 || true
}

# remove_project P: compose down with both profiles, then sweep anything
# that still carries the project's label.
remove_project() {
  local p=$1 label
  COMPOSE_PROFILES=etcd,postgres compose "$p" down -v --remove-orphans -t 10 >/dev/null 2>&1 || true
  label="label=com.docker.compose.project=$p"
  docker ps -aq --filter "$label" | xargs -r docker rm -fv >/dev/null 2>&1 || true
  docker network ls -q --filter "$label" | xargs -r docker network rm >/dev/null 2>&1 || true
  docker volume ls -q --filter "$label" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
}

# leftovers P: what the engine still holds of project P.
leftovers() {
  local label="label=com.docker.compose.project=$1"
  { docker ps -aq --filter "$label"; docker network ls -q --filter "$label"; docker volume ls -q --filter "$label"; } | wc -l
}

cmd_down() {
  say "removing project $PROJECT (containers, networks, volumes)"
  remove_project "$PROJECT"
  [ "$(leftovers "$PROJECT")" -eq 0 ] || {
    say "something of $PROJECT is left"
    exit 1
  }
}

# sweep removes the test's projects. The test tears them down itself; this
# covers a test binary that died (timeout, signal) before its cleanups ran.
sweep() {
  local b
  [ -n "${CLUSTERTEST_PROJECT:-}" ] || return 0
  for b in etcd postgres; do remove_project "$CLUSTERTEST_PROJECT-$b"; done
  for b in etcd postgres; do
    if [ "$(leftovers "$CLUSTERTEST_PROJECT-$b")" -ne 0 ]; then say "WARNING: $CLUSTERTEST_PROJECT-$b left resources behind"; fi
  done
}

cmd_test() {
  local t0=$SECONDS t1 rc
  images regent etcd postgres
  t1=$SECONDS
  say "images ready in $((t1 - t0)) s: $REGENT_IMAGE $ETCD_IMAGE $POSTGRES_IMAGE"
  export CLUSTERTEST_PROJECT="regent-ct-$(date +%s)-$$" CLUSTERTEST_COMPOSE="$COMPOSE"
  trap sweep EXIT
  trap 'exit 130' INT TERM
  rc=0
  "${GO:-go}" test -tags clustertest -count=1 -v -timeout 20m ./deploy/clustertest/ || rc=$?
  say "cluster-test: images $((t1 - t0)) s, tests $((SECONDS - t1)) s, total $((SECONDS - t0)) s"
  return $rc
}

case ${1:-} in
  up) cmd_up ;;
  status) cmd_status ;;
  down) cmd_down ;;
  test) cmd_test ;;
  *)
    echo "usage: $0 up|status|down|test" >&2
    exit 2
    ;;
esac

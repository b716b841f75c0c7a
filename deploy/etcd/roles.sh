#!/bin/sh
# regent's etcd users and roles for one cluster (regent --cluster), least
# privilege. Every key of a cluster is under /regent/<cluster>/; regent
# uses the KV, lease and watch APIs only. Three audiences:
#
#   regent          the replicas (regent run): read-write on the prefix
#                   (leader, term, member, heartbeat, history, deployment
#                   keys; leases, which need no permission of their own)
#   regent-operator step-down, pause, drain, restart (regent step-down and
#                   the operator commands): read on the prefix, read-write
#                   on the step-down requests, the operator records and
#                   the operator log
#   regent-monitor  regent status and status --check: read on the prefix
#                   (the deployment id must exist: a replica creates it at
#                   its first start)
#
# Run it with etcdctl's connection flags in ETCDCTL_* variables, as a user
# that may manage auth (root, before `auth enable`):
#
#   export ETCDCTL_ENDPOINTS=https://etcd-1:2379 ETCDCTL_CACERT=ca.crt \
#          ETCDCTL_CERT=admin.crt ETCDCTL_KEY=admin.key
#   CLUSTER=prod sh deploy/etcd/roles.sh
#
# etcdctl asks for each new user's password. With client certificate
# authentication (--client-cert-auth) etcd takes the certificate's CN as
# the user when a request carries no password: give the replicas'
# certificates a CN that names no user, or the user they should be.
#
# integration/tls_test.go runs these same lines, through etcd's Go client,
# against an etcd that requires client certificates: keep them to the
# commands below (user add, role add, role grant-permission, user
# grant-role, auth enable), one per line.
set -eu
: "${CLUSTER:?set CLUSTER to regent's --cluster}"

etcdctl user add root
etcdctl user grant-role root root
etcdctl role add regent-runner
etcdctl role grant-permission regent-runner --prefix=true readwrite "/regent/$CLUSTER/"
etcdctl user add regent
etcdctl user grant-role regent regent-runner
etcdctl role add regent-operator
etcdctl role grant-permission regent-operator --prefix=true read "/regent/$CLUSTER/"
etcdctl role grant-permission regent-operator --prefix=true readwrite "/regent/$CLUSTER/stepdown/"
etcdctl role grant-permission regent-operator --prefix=true readwrite "/regent/$CLUSTER/control/"
etcdctl role grant-permission regent-operator --prefix=true readwrite "/regent/$CLUSTER/actions/"
etcdctl user add operator
etcdctl user grant-role operator regent-operator
etcdctl role add regent-monitor
etcdctl role grant-permission regent-monitor --prefix=true read "/regent/$CLUSTER/"
etcdctl user add monitor
etcdctl user grant-role monitor regent-monitor
etcdctl auth enable

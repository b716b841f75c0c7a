// Command etcd is the etcd member of regent's local-cluster image
// (deploy/etcd/Dockerfile): etcd's own server packages (embed) behind the
// command line of the real etcd binary, so that docker-compose.yml runs
// unchanged with this image or with the public etcd image.
//
// It exists because the machines that build regent's images reach no
// container registry: the image is built here, FROM scratch, around this
// static binary.
//
// Invariants:
//
//   - Flags and ETCD_* environment variables are etcd's own (embed.Config
//     registers them); as in etcd, setting both a flag and its variable is
//     an error. Only --initial-cluster-state and --version are added here,
//     as etcd's main adds them.
//   - The process runs one member and exits: 0 after SIGTERM or SIGINT once
//     the member has stopped (etcd's graceful close), 1 if the member cannot
//     start or stops on its own, 2 on a usage error.
//   - Nothing is started that Close does not stop: the member is the only
//     owner of its goroutines, and main waits for it.
package main

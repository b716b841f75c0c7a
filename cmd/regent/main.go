// Command regent is a distributed leader-election supervisor: replicas
// campaign per queue through etcd or PostgreSQL, and only each queue's
// leader runs its workers.
package main

import "os"

func main() {
	os.Exit(execute(os.Args[1:]))
}

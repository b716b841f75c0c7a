package main
import (
 _ "go.etcd.io/etcd/client/v3"
 _ "go.etcd.io/etcd/client/v3/concurrency"
 _ "go.etcd.io/etcd/server/v3/embed"
 _ "github.com/jackc/pgx/v5"
 _ "github.com/hashicorp/go-hclog"
 _ "github.com/spf13/viper"
 _ "github.com/spf13/cobra"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "go.uber.org/goleak"
)
func main(){}

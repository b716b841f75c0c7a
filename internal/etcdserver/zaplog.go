package etcdserver

import (
	"sort"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// minLevel is the lowest etcd log level forwarded to hclog: etcd logs every
// request and raft step at info, which would drown regent's own logs.
const minLevel = zapcore.WarnLevel

// benign lists etcd warnings that every embedded single-member start
// prints and that need no action; they are logged at debug level.
var benign = map[string]bool{
	"running http and grpc server on single port. this is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

// newZapLogger returns a zap logger that forwards entries at minLevel and
// above to log, or a no-op logger when log is nil. Once stopping is set,
// entries go to debug level: a closing member reports its closed listeners
// as errors.
func newZapLogger(log hclog.Logger, stopping *atomic.Bool) *zap.Logger {
	if log == nil {
		return zap.NewNop()
	}
	return zap.New(&hclogCore{log: log, stopping: stopping})
}

// hclogCore is a zapcore.Core writing to an hclog logger. Field keys are
// rewritten to snake_case ("remote-addr" becomes "remote_addr").
type hclogCore struct {
	log      hclog.Logger
	stopping *atomic.Bool
	args     []any
}

func (c *hclogCore) Enabled(l zapcore.Level) bool { return l >= minLevel }

func (c *hclogCore) With(fields []zapcore.Field) zapcore.Core {
	args := append(append([]any(nil), c.args...), fieldArgs(fields)...)
	return &hclogCore{log: c.log, stopping: c.stopping, args: args}
}

func (c *hclogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *hclogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	args := append(append([]any(nil), c.args...), fieldArgs(fields)...)
	msg := strings.ToLower(ent.Message)
	switch {
	case benign[msg] || c.stopping.Load():
		c.log.Debug(msg, args...)
	case ent.Level >= zapcore.ErrorLevel:
		c.log.Error(msg, args...)
	default:
		c.log.Warn(msg, args...)
	}
	return nil
}

func (c *hclogCore) Sync() error { return nil }

// fieldArgs turns zap fields into hclog key/value pairs.
func fieldArgs(fields []zapcore.Field) []any {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, strings.ReplaceAll(k, "-", "_"), enc.Fields[k])
	}
	return args
}

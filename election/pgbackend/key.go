package pgbackend

import (
	"crypto/sha256"
	"encoding/binary"
)

// LockKey is the session advisory-lock key of (cluster, queue): the first 8
// bytes of SHA-256 over the length-prefixed strings "regent", cluster and
// queue. Only the backend's own namespace enters it: no path, user, home
// directory or process id, so every replica that reaches the same database
// contends for the same lock.
func LockKey(cluster, queue string) int64 {
	return hashKey("regent", cluster, queue)
}

// schemaLockKey is the transaction advisory-lock key held while migrating.
// It hashes two fields, so it never equals a LockKey (three fields).
var schemaLockKey = hashKey("regent", "schema-migration")

func hashKey(parts ...string) int64 {
	h := sha256.New()
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]))
}

// lockIDs splits a key the way pg_locks shows a bigint advisory lock:
// classid holds the high 32 bits, objid the low 32 bits, objsubid is 1.
func lockIDs(key int64) (classid, objid int64) {
	u := uint64(key)
	return int64(u >> 32), int64(u & 0xffffffff)
}

package config

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
)

// DefaultNodeID returns "<hostname>-<6 random hex digits>".
func DefaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "regent"
	}
	host = strings.Map(func(r rune) rune {
		if validNameRune(r) {
			return r
		}
		return '-'
	}, host)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

func validNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

// ValidName reports whether s is a valid cluster, queue or node name:
// 1 to 128 letters, digits, '-', '_' or '.'.
func ValidName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !validNameRune(r) {
			return false
		}
	}
	return true
}

// IsDefaultNodeID reports whether id has the form DefaultNodeID gives on
// this host: a node id nobody configured (a reload compares node ids only
// when one was).
func IsDefaultNodeID(id string) bool {
	def := DefaultNodeID()
	prefix := def[:len(def)-6]
	if !strings.HasPrefix(id, prefix) || len(id) != len(def) {
		return false
	}
	_, err := hex.DecodeString(id[len(prefix):])
	return err == nil
}

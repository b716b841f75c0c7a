package fence

import (
	"fmt"
	"os"
	"strconv"
)

// Environment variables a worker reads its token from (regent sets them).
const (
	EnvKey   = "REGENT_FENCE_KEY"
	EnvOwner = "REGENT_FENCE_OWNER"
	EnvTerm  = "REGENT_TERM"
	EnvNode  = "REGENT_NODE"
)

// Token is a fencing token: a worker of Owner's term Term acting on Key.
// Node names the replica that runs the worker; it is only recorded with
// refusals.
type Token struct {
	Key   string
	Owner string
	Term  int64
	Node  string
}

// Validate reports whether the token can be claimed: Key and Owner
// non-empty, Term >= 0. The error wraps ErrInvalidToken.
func (t Token) Validate() error {
	switch {
	case t.Key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidToken)
	case t.Owner == "":
		return fmt.Errorf("%w: empty owner for key %q", ErrInvalidToken, t.Key)
	case t.Term < 0:
		return fmt.Errorf("%w: negative term %d for key %q", ErrInvalidToken, t.Term, t.Key)
	}
	return nil
}

// FromEnv reads the token from EnvKey, EnvOwner and EnvTerm (required) and
// EnvNode (optional). The error names the first missing or invalid
// variable and wraps ErrInvalidToken.
func FromEnv() (Token, error) {
	var t Token
	for _, v := range []struct {
		name string
		dst  *string
	}{{EnvKey, &t.Key}, {EnvOwner, &t.Owner}} {
		s, ok := os.LookupEnv(v.name)
		if !ok || s == "" {
			return Token{}, fmt.Errorf("%w: %s is not set; run the worker under regent or set it", ErrInvalidToken, v.name)
		}
		*v.dst = s
	}
	s, ok := os.LookupEnv(EnvTerm)
	if !ok || s == "" {
		return Token{}, fmt.Errorf("%w: %s is not set; run the worker under regent or set it", ErrInvalidToken, EnvTerm)
	}
	term, err := strconv.ParseInt(s, 10, 64)
	if err != nil || term < 0 {
		return Token{}, fmt.Errorf("%w: %s=%q is not a non-negative integer", ErrInvalidToken, EnvTerm, s)
	}
	t.Term = term
	t.Node = os.Getenv(EnvNode)
	return t, nil
}

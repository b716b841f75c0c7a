package fence

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// HTTP headers that carry a token to a downstream service. Key, owner and
// node are percent-encoded (url.PathEscape), so that any string survives;
// plain names such as "emails" are sent unchanged.
const (
	HeaderKey   = "Regent-Fence-Key"
	HeaderTerm  = "Regent-Fence-Term"
	HeaderOwner = "Regent-Fence-Owner"
	// HeaderNode is optional.
	HeaderNode = "Regent-Fence-Node"
)

// SetHeaders writes the token into h.
func (t Token) SetHeaders(h http.Header) {
	h.Set(HeaderKey, url.PathEscape(t.Key))
	h.Set(HeaderTerm, strconv.FormatInt(t.Term, 10))
	h.Set(HeaderOwner, url.PathEscape(t.Owner))
	if t.Node != "" {
		h.Set(HeaderNode, url.PathEscape(t.Node))
	} else {
		h.Del(HeaderNode)
	}
}

// TokenFromHeaders reads a token written by SetHeaders. The error names
// the missing or invalid header and wraps ErrInvalidToken.
func TokenFromHeaders(h http.Header) (Token, error) {
	var t Token
	for _, f := range []struct {
		name     string
		dst      *string
		optional bool
	}{{HeaderKey, &t.Key, false}, {HeaderOwner, &t.Owner, false}, {HeaderNode, &t.Node, true}} {
		v := h.Get(f.name)
		if v == "" {
			if f.optional {
				continue
			}
			return Token{}, fmt.Errorf("%w: header %s missing", ErrInvalidToken, f.name)
		}
		s, err := url.PathUnescape(v)
		if err != nil {
			return Token{}, fmt.Errorf("%w: header %s: %v", ErrInvalidToken, f.name, err)
		}
		*f.dst = s
	}
	v := h.Get(HeaderTerm)
	if v == "" {
		return Token{}, fmt.Errorf("%w: header %s missing", ErrInvalidToken, HeaderTerm)
	}
	term, err := strconv.ParseInt(v, 10, 64)
	if err != nil || term < 0 {
		return Token{}, fmt.Errorf("%w: header %s=%q is not a non-negative integer", ErrInvalidToken, HeaderTerm, v)
	}
	t.Term = term
	return t, t.Validate()
}

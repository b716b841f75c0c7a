package fence

import (
	"fmt"
	"sync"
)

// Checker applies the fence's rules for a downstream that keeps its fence
// state in memory (an HTTP service, per key: the highest term seen and its
// owner): the same term passes, a newer term moves the fence forward, an
// older one is refused (ErrStaleTerm), another owner is refused
// (ErrForeignOwner, checked first). The first token of a key sets its
// owner.
//
// Unlike the SQL fence, a Checker only admits requests: a request of an
// older term admitted before a newer one is not held back or ended by it.
// The zero value is ready to use; safe for concurrent use.
type Checker struct {
	mu   sync.Mutex
	keys map[string]checked
}

type checked struct {
	term  int64
	owner string
}

// Check admits or refuses t and moves the key's fence forward on a newer
// term.
func (c *Checker) Check(t Token) error {
	if err := t.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.keys[t.Key]
	switch {
	case !ok:
		if c.keys == nil {
			c.keys = make(map[string]checked)
		}
	case cur.owner != t.Owner:
		return fmt.Errorf("%w %q for key %q: the resource belongs to owner %q", ErrForeignOwner, t.Owner, t.Key, cur.owner)
	case t.Term < cur.term:
		return fmt.Errorf("%w %d for key %q: the resource already accepted term %d", ErrStaleTerm, t.Term, t.Key, cur.term)
	case t.Term == cur.term:
		return nil
	}
	c.keys[t.Key] = checked{term: t.Term, owner: t.Owner}
	return nil
}

// Transfer gives key to owner on purpose and resets its term to 0, as
// the SQL transfer does (a transfer to the current owner keeps the term).
func (c *Checker) Transfer(key, owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.keys[key]; ok && cur.owner == owner {
		return
	}
	if c.keys == nil {
		c.keys = make(map[string]checked)
	}
	c.keys[key] = checked{term: 0, owner: owner}
}

// Current returns the key's term and owner, and whether the key was seen.
func (c *Checker) Current(key string) (term int64, owner string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.keys[key]
	return cur.term, cur.owner, ok
}

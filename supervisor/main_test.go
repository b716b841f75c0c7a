package supervisor

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the supervisor starts has an owner and an end: none may
// outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

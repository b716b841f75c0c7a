package pgbackend

import (
	"testing"

	"github.com/regentd/regent/election/electiontest"
	"github.com/regentd/regent/internal/testenv"
)

func TestMain(m *testing.M) {
	electiontest.HolderMain(openHolder)
	testenv.Main(m)
}

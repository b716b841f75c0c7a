package fence_test

import (
	"testing"

	"github.com/regentd/regent/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

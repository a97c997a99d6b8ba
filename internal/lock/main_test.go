package lock

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	Enable()
	os.Exit(m.Run())
}

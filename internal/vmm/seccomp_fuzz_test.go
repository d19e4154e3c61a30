package vmm

import (
	"testing"

	"github.com/nitrovm/nitrovm/internal/jail/jailtest"
)

// TestMain runs the fuzz targets' workers under the VMM's seccomp filter
// (see jailtest.Main).
func TestMain(m *testing.M) { jailtest.Main(m) }

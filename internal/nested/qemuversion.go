package nested

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// QEMUVersion is a QEMU release number.
type QEMUVersion struct {
	Major, Minor, Micro int
}

// MinQEMU returns the oldest QEMU nested mode is meant for: 8.2 is the
// first release whose TCG SVM emulation intercepts XSETBV for a nested
// guest (before it, an L2 guest's XSETBV changes the emulated CPU's XCR0
// behind L1's KVM). Multi-vCPU reliability was measured on 10.0.2
// (docs/multi-vcpu.md); 8.2 to 9.2 were not measured.
func MinQEMU() QEMUVersion { return QEMUVersion{8, 2, 0} }

// String returns "major.minor.micro".
func (v QEMUVersion) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
}

// Less reports whether v is an older release than w.
func (v QEMUVersion) Less(w QEMUVersion) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Micro < w.Micro
}

// versionPrefix starts the first line of "qemu-system-x86_64 --version".
const versionPrefix = "QEMU emulator version "

// ParseQEMUVersion reads the release number from the output of
// "qemu-system-x86_64 --version", e.g. "QEMU emulator version 10.0.2
// (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)".
func ParseQEMUVersion(out string) (QEMUVersion, error) {
	first, _, _ := strings.Cut(out, "\n")
	rest, ok := strings.CutPrefix(strings.TrimSpace(first), versionPrefix)
	if !ok {
		return QEMUVersion{}, fmt.Errorf("nested: QEMU --version: want %q, got %q", versionPrefix+"X.Y.Z", first)
	}
	num, _, _ := strings.Cut(rest, " ")
	parts := strings.Split(num, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return QEMUVersion{}, fmt.Errorf("nested: QEMU --version: bad release number %q", num)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p != strconv.Itoa(v) {
			return QEMUVersion{}, fmt.Errorf("nested: QEMU --version: bad release number %q", num)
		}
		n[i] = v
	}
	return QEMUVersion{n[0], n[1], n[2]}, nil
}

// QEMUVersionOf runs "qemu --version" and parses its output.
func QEMUVersionOf(ctx context.Context, qemu string) (QEMUVersion, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "--version").Output()
	if err != nil {
		return QEMUVersion{}, fmt.Errorf("nested: %s --version: %w", qemu, err)
	}
	return ParseQEMUVersion(string(out))
}

// warnOldQEMU logs a warning when o.QEMU is older than MinQEMU or its
// version cannot be read. It does not refuse: an older QEMU boots most
// nested guests, it only fails more often (see docs/nested.md).
func warnOldQEMU(ctx context.Context, o Options) {
	v, err := QEMUVersionOf(ctx, o.QEMU)
	switch {
	case err != nil:
		o.Logger.Warn("nested: cannot tell the L1 emulator's version", "err", err)
	case v.Less(MinQEMU()):
		o.Logger.Warn(fmt.Sprintf("nested: %s is QEMU %s, older than %s: multi-vCPU nested guests fail more often; scripts/deps.sh installs a newer one", o.QEMU, v, MinQEMU()),
			"qemu", v.String(), "min", MinQEMU().String())
	default:
		o.Logger.Debug("nested: L1 emulator", "qemu", v.String())
	}
}

package vmm

import (
	"strings"
	"testing"
)

func TestHostCPUBrand(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n", "AMD EPYC 7R13 Processor"},
		{"model name\t:   Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz  \n", "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"},
		{"processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\n", ""},
		{"", ""},
	} {
		if got := hostCPUBrand(strings.NewReader(tc.in)); got != tc.want {
			t.Errorf("hostCPUBrand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if _, err := readHostCPUBrand(); err != nil {
		t.Errorf("readHostCPUBrand: %v", err)
	}
}

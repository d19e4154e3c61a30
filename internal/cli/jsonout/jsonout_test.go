package jsonout

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var zeroPCR = strings.Repeat("00", 48)

const pcr2 = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"

func TestGolden(t *testing.T) {
	meas := json.RawMessage(`{"HashAlgorithm":"Sha384 { ... }","PCR0":"` + zeroPCR + `","PCR1":"` + zeroPCR + `","PCR2":"` + pcr2 + `"}`)
	tests := []struct {
		file string
		v    any
	}{
		{"run-enclave.json", RunEnclave{EnclaveName: "hello", EnclaveID: "i-0000000000000000-enc1", ProcessID: 12345, EnclaveCID: 16, NumberOfCPUs: 2, CPUIDs: []uint32{1, 3}, MemoryMiB: 512}},
		{"describe-enclaves.json", []DescribeEnclave{{EnclaveName: "hello", EnclaveID: "i-0000000000000000-enc1", ProcessID: 12345, EnclaveCID: 16, NumberOfCPUs: 2, CPUIDs: []uint32{1, 3}, MemoryMiB: 512, State: "RUNNING", Flags: "DEBUG_MODE", Measurements: meas}}},
		{"describe-enclaves-empty.json", []DescribeEnclave{}},
		{"terminate-enclave.json", TerminateEnclave{EnclaveName: "hello", EnclaveID: "i-0000000000000000-enc1", Terminated: true}},
		{"terminate-enclave-all.json", []TerminateEnclave{{"hello", "i-0000000000000000-enc1", true}, {"hello_1", "i-0000000000000000-enc2", true}}},
	}
	for _, tt := range tests {
		want, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := Write(&got, tt.v); err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if got.String() != string(want) {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.file, got.String(), want)
		}
	}
}

func TestEmptyCPUIDs(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{RunEnclave{}, `"CPUIDs":[]`},
		{DescribeEnclave{}, `"CPUIDs":[]`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(tt.want)) {
			t.Errorf("%T: got %s, want it to contain %s", tt.v, b, tt.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	if err := Write(&bytes.Buffer{}, make(chan int)); err == nil {
		t.Errorf("Write(chan): got nil, want an error")
	}
}

package jsonout

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestGolden: documents built from the values of nitro-cli's documented
// output print exactly as nitro-cli printed them (testdata/nitro-cli,
// transcribed by hand; SOURCES.md says from where).
func TestGolden(t *testing.T) {
	const (
		pcr0 = "55c0acc442fd815e161f100c45810298f5c37ce9f61b675e4f8ba82e32b9bab3b674a6ef557eaa7db7577221683bbe9f"
		pcr1 = "aca6e62ffbf5f7deccac452d7f8cee1b94048faf62afc16c8ab68c9fed8c38010c73a669f9a36e596032f0b973d21895"
		pcr2 = "41e46bdda449ee3fd792772e5b766cb090d2a4a1b0e5a0c5e52c84d426c76cfd298ea725500a107e71399697df2ae2eb"
		id   = "i-abc12345def67890a-enc9876abcd543210ef12"
	)
	meas := json.RawMessage(`{"HashAlgorithm":"Sha384 { ... }","PCR0":"` + pcr0 + `","PCR1":"` + pcr1 + `","PCR2":"` + pcr2 + `"}`)
	name, version := "my_enclave", "1.0"
	metadata := json.RawMessage(`{"BuildTime":"2026-08-13T16:07:55+00:00","BuildTool":"nitro-cli","BuildToolVersion":"1.5.0","OperatingSystem":"Linux","KernelVersion":"6.12","DockerInfo":null}`)
	described := DescribeEnclave{EnclaveName: "my_enclave", EnclaveID: id, ProcessID: 12345, EnclaveCID: 10, NumberOfCPUs: 2, CPUIDs: []uint32{1, 3}, MemoryMiB: 1600, State: "RUNNING", Flags: "NONE"}
	withMeta := described
	withMeta.Measurements, withMeta.ImageName, withMeta.ImageVersion, withMeta.Metadata = meas, &name, &version, metadata
	tests := []struct {
		file string
		v    any
	}{
		{"run-enclave.json", RunEnclave{EnclaveName: "command-executer", EnclaveID: id, ProcessID: 12345, EnclaveCID: 16, NumberOfCPUs: 4, CPUIDs: []uint32{1, 5, 2, 6}, MemoryMiB: 2048}},
		{"describe-enclaves.json", []DescribeEnclave{described}},
		{"describe-enclaves-metadata.json", []DescribeEnclave{withMeta}},
		{"terminate-enclave.json", TerminateEnclave{EnclaveName: "my_enclave", EnclaveID: id, Terminated: true}},
	}
	for _, tt := range tests {
		want, err := os.ReadFile(filepath.Join("testdata", "nitro-cli", tt.file))
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
	var empty bytes.Buffer
	if err := Write(&empty, []DescribeEnclave{}); err != nil || empty.String() != "[]\n" {
		t.Errorf("no enclaves: got %q, %v; want \"[]\\n\"", empty.String(), err)
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

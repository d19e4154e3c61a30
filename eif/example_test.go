package eif_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nitrovm/nitrovm/eif"
)

// Example builds a small EIF in memory, reads it back and prints the
// describe-eif JSON, pinning nitro-cli's field names and order.
func Example() {
	var img bytes.Buffer
	_, err := eif.Build(&img, eif.BuildOptions{
		Kernel:         bytes.NewReader([]byte("kernel")),
		Cmdline:        "console=ttyS0",
		Ramdisks:       []eif.Blob{bytes.NewReader([]byte("init")), bytes.NewReader([]byte("app"))},
		Name:           "hello",
		CustomMetadata: json.RawMessage(`{"team":"a"}`),
		BuildTime:      time.Unix(1700000000, 0),
	})
	if err != nil {
		panic(err)
	}
	f, err := eif.NewReader(bytes.NewReader(img.Bytes()), int64(img.Len()))
	if err != nil {
		panic(err)
	}
	d, err := f.Describe()
	if err != nil {
		panic(err)
	}
	out, _ := json.MarshalIndent(d, "", "  ")
	fmt.Println(string(out))
	// Output:
	// {
	//   "EifVersion": 4,
	//   "Measurements": {
	//     "HashAlgorithm": "Sha384 { ... }",
	//     "PCR0": "301ff62251e74a8517e915c548e438a052a5ec691e62b77fb7f378876d7ceaa6dbb48bd75423e8b7041fb43ceeb9c66b",
	//     "PCR1": "01f015f47940172daaa3003b0620a7ef90969387601d69388fd9401a1d008c7d4cd909c08123782abba8d2b4726fd7bf",
	//     "PCR2": "b76036a6963404c7fe1249127a5c2fc684090bd30f0386d9b643e2e11e203f2fb62d50ea1af96ad3bc6ba974c3b1c79a"
	//   },
	//   "IsSigned": false,
	//   "CheckCRC": true,
	//   "ImageName": "hello",
	//   "ImageVersion": "1.0",
	//   "Metadata": {
	//     "BuildTime": "2023-11-14T22:13:20+00:00",
	//     "BuildTool": "nitrovm",
	//     "BuildToolVersion": "0.0.0",
	//     "OperatingSystem": "OS",
	//     "KernelVersion": "kernel",
	//     "DockerInfo": null,
	//     "team": "a"
	//   }
	// }
}

package jsonout_test

import (
	"os"

	"github.com/nitrovm/nitrovm/internal/cli/jsonout"
)

func ExampleTerminateEnclave() {
	jsonout.Write(os.Stdout, jsonout.TerminateEnclave{EnclaveName: "hello", EnclaveID: "i-0000000000000000-enc1", Terminated: true})
	// Output:
	// {
	//   "EnclaveName": "hello",
	//   "EnclaveID": "i-0000000000000000-enc1",
	//   "Terminated": true
	// }
}

func ExampleRunEnclave() {
	jsonout.Write(os.Stdout, jsonout.RunEnclave{EnclaveName: "hello", EnclaveID: "i-0000000000000000-enc1", ProcessID: 4242, EnclaveCID: 16, NumberOfCPUs: 2, CPUIDs: []uint32{1, 2}, MemoryMiB: 512})
	// Output:
	// {
	//   "EnclaveName": "hello",
	//   "EnclaveID": "i-0000000000000000-enc1",
	//   "ProcessID": 4242,
	//   "EnclaveCID": 16,
	//   "NumberOfCPUs": 2,
	//   "CPUIDs": [
	//     1,
	//     2
	//   ],
	//   "MemoryMiB": 512
	// }
}

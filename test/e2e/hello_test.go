//go:build e2e

package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nitrovm/nitrovm/eif"
	"github.com/nitrovm/nitrovm/internal/testimage"
	"github.com/nitrovm/nitrovm/internal/testregistry"
)

// TestHello is AWS's examples/x86_64/hello as a new user runs it, without
// Docker: the image (busybox with its applets hard-linked, /bin/hello.sh,
// ENV HELLO) is pushed to a loopback registry with token auth, nitrovm
// build-enclave pulls it by name, and the EIF boots in debug mode with the
// smallest memory nitro-cli's rule allows (4 times the EIF size, at least
// 64 MiB); its greeting must reach nitrovm console.
func TestHello(t *testing.T) {
	e := setup(t)
	img, err := testimage.Hello("/bin/busybox")
	if err != nil {
		t.Fatalf("hello image (needs Debian's busybox-static, scripts/deps.sh): %v", err)
	}
	reg, err := testregistry.Start("127.0.0.1:0", testregistry.Options{User: "aws", Password: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ref := reg.Addr + "/aws/hello:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "aws", Password: "hello"})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	dockerConfig := filepath.Join(e.tmp, "docker")
	os.MkdirAll(dockerConfig, 0o700)
	creds := base64.StdEncoding.EncodeToString([]byte("aws:hello"))
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, creds)), 0o600); err != nil {
		t.Fatal(err)
	}

	init := e.goBuild(t, "./guest/init", "init")
	out := filepath.Join(e.tmp, "hello.eif")
	build := exec.Command(e.nitrovm, "build-enclave", "--docker-uri", ref, "--kernel", e.guestKernel, "--init", init, "--output-file", out)
	build.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig, "NITROVM_CACHE="+filepath.Join(e.tmp, "cache"))
	b, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("nitrovm build-enclave: %v\n%s", err, b)
	}
	t.Logf("build-enclave:\n%s", b)

	layers, err := testimage.UncompressedSize(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := eif.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var ramdisks []int64
	for _, r := range f.Ramdisks() {
		ramdisks = append(ramdisks, r.Size())
	}
	f.Close()
	if len(ramdisks) != 2 {
		t.Fatalf("got %d ramdisks, want 2", len(ramdisks))
	}
	user := ramdisks[1]
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hello: image layers %d bytes, user ramdisk %d bytes (%.3f of the layers), EIF %d bytes", layers, user, float64(user)/float64(layers), fi.Size())
	if user*10 > layers*11 {
		t.Errorf("user ramdisk %d bytes is more than 10%% larger than the layers (%d bytes)", user, layers)
	}

	// nitro-cli's rule: memory >= 4 x the EIF size, and >= 64 MiB.
	const mib = 1 << 20
	memory := max(64, (4*fi.Size()+mib-1)/mib)
	t.Logf("hello: running with %d MiB (4 x %d bytes, at least 64 MiB)", memory, fi.Size())

	s := e.newSession(t)
	l1eif := s.file(out)
	script := fmt.Sprintf(`export NITROVM_STATE_DIR=/run/nitrovm-hello
nitrovm run-enclave --eif-path %s --memory %d --cpu-count 2 --debug-mode --enclave-name hello %s || exit 1
nitrovm console --enclave-name hello --disconnect-timeout 15
rc=$?
nitrovm terminate-enclave --enclave-name hello
exit $rc`, l1eif, memory, heartbeatFlag)
	hello := s.boot("hello", 4*time.Minute, "sh", "-c", script)
	s.run()
	hello.wantExit(t, 0)
	if !strings.Contains(hello.output, "Successfully connected to the console.") {
		t.Errorf("console did not connect; output:\n%s", hello.output)
	}
	if !strings.Contains(hello.output, testimage.HelloGreeting) {
		t.Errorf("the greeting %q did not reach nitrovm console; output:\n%s", testimage.HelloGreeting, hello.output)
	}
}

// Command registry serves a container registry on loopback for demos and
// end-to-end tests (go-containerregistry's in-memory pkg/registry, see
// internal/testregistry), after pushing images into it. It does not use
// nitrovm.
//
//	go run ./test/registry -addr 127.0.0.1:5000 -push bin/demo/hello.tar=nitrovm-demo/hello:latest -ready /tmp/reg.ready
//
// -push FILE=REPO:TAG pushes a `docker save` archive; FILE "hello" pushes
// AWS's hello example built from /bin/busybox (internal/testimage). The
// server runs until SIGINT or SIGTERM; -ready names a file written with the
// address once the pushes are done.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/nitrovm/nitrovm/internal/testimage"
	"github.com/nitrovm/nitrovm/internal/testregistry"
)

type pushes []string

func (p *pushes) String() string     { return strings.Join(*p, ",") }
func (p *pushes) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (loopback)")
	ready := flag.String("ready", "", "file to write the address to once serving")
	user := flag.String("user", "", "require token auth with this user")
	password := flag.String("password", "", "password of -user")
	var ps pushes
	flag.Var(&ps, "push", "FILE=REPO:TAG to push (FILE a docker save archive, or \"hello\"); repeatable")
	flag.Parse()
	if err := run(*addr, *ready, *user, *password, ps); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func run(addr, ready, user, password string, ps pushes) error {
	srv, err := testregistry.Start(addr, testregistry.Options{User: user, Password: password})
	if err != nil {
		return err
	}
	defer srv.Close()
	auth := remote.WithAuth(authn.Anonymous)
	if user != "" {
		auth = remote.WithAuth(&authn.Basic{Username: user, Password: password})
	}
	for _, p := range ps {
		file, repo, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("-push %q: want FILE=REPO:TAG", p)
		}
		var img v1.Image
		if file == "hello" {
			img, err = testimage.Hello("/bin/busybox")
		} else {
			img, err = tarball.ImageFromPath(file, nil)
		}
		if err != nil {
			return fmt.Errorf("-push %s: %w", file, err)
		}
		ref, err := name.ParseReference(srv.Addr + "/" + repo)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, auth); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		d, _ := img.Digest()
		fmt.Printf("pushed %s@%s\n", ref, d)
	}
	fmt.Printf("serving %s\n", srv.Addr)
	if ready != "" {
		if err := os.WriteFile(ready, []byte(srv.Addr+"\n"), 0o644); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

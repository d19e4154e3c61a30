// Command nitrovm emulates AWS Nitro Enclaves on any Linux machine with KVM.
//
// Invoked as "nitro-cli" (for example through a symlink) it behaves as
// nitro-cli does. See the README for the command reference.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/nitrovm/nitrovm/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

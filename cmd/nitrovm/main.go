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
	os.Exit(run(os.Args, cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}))
}

// run runs the command line args with SIGINT and SIGTERM cancelling its
// context: "boot" then stops its VM (exit status 4), a supervisor
// terminates its enclave and cleans up, and other commands end early.
func run(args []string, env cli.Env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Run(ctx, args, env)
}

package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/image"
)

// newImagesCmd returns the "images" command group: the image cache that
// build-enclave --docker-uri fills.
func newImagesCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Manage the cache of pulled image layers",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "prune",
		Short: "Empty the image cache (${NITROVM_CACHE:-~/.cache/nitrovm}/images)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			dir, err := imageCacheDir(env)
			if err != nil {
				return nitroErr(eFileOperation, err)
			}
			freed, err := (&image.Cache{Dir: dir}).Prune()
			if err != nil {
				return nitroErr(eFileOperation, fmt.Errorf("images prune: %w", err))
			}
			return writeJSON(env.Stdout, struct {
				CacheDir   string `json:"CacheDir"`
				FreedBytes int64  `json:"FreedBytes"`
			}{dir, freed})
		},
	})
	return cmd
}

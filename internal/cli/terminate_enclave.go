package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nitrovm/nitrovm/internal/cli/jsonout"
	"github.com/nitrovm/nitrovm/internal/enclave"
)

// newTerminateEnclaveCmd returns the "terminate-enclave" subcommand.
func newTerminateEnclaveCmd(env Env) *cobra.Command {
	var id, name string
	var all bool
	cmd := &cobra.Command{
		Use:   "terminate-enclave (--enclave-id ID | --enclave-name NAME | --all)",
		Short: "Terminate enclaves (nitro-cli terminate-enclave)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, set := range []bool{id != "", name != "", all} {
				if set {
					n++
				}
			}
			switch {
			case n == 0:
				return nitroErr(eMissingArgument, errors.New("Missing mandatory argument. User did not provide the `enclave-id` argument."))
			case n > 1:
				return nitroErr(eConflictingArgument, errors.New("Conflicting arguments. User provided more than one of `enclave-id`, `enclave-name` and `all`."))
			}
			m, err := lifecycleManager(env)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if all {
				recs, err := m.TerminateAll(ctx)
				out := make([]jsonout.TerminateEnclave, 0, len(recs))
				for _, r := range recs {
					fmt.Fprintf(env.Stderr, "Successfully terminated enclave %s.\n", r.ID)
					out = append(out, jsonout.TerminateEnclave{EnclaveName: r.Name, EnclaveID: r.ID, Terminated: true})
				}
				if werr := jsonout.Write(env.Stdout, out); werr != nil {
					return fmt.Errorf("write output: %w", werr)
				}
				return lifecycleErr(err)
			}
			if name != "" {
				if id, err = m.IDByName(name); err != nil {
					return lifecycleErr(err)
				}
			}
			r, err := m.Terminate(ctx, id)
			if err != nil {
				return lifecycleErr(err)
			}
			fmt.Fprintf(env.Stderr, "Successfully terminated enclave %s.\n", r.ID)
			return jsonWrite(env, jsonout.TerminateEnclave{EnclaveName: r.Name, EnclaveID: r.ID, Terminated: true})
		},
	}
	cmd.Flags().StringVar(&id, "enclave-id", "", "ID of the enclave to terminate")
	cmd.Flags().StringVar(&name, "enclave-name", "", "name of the enclave to terminate")
	cmd.Flags().BoolVar(&all, "all", false, "terminate all enclaves")
	return cmd
}

// jsonWrite prints v to env's stdout in nitro-cli's JSON style.
func jsonWrite(env Env, v any) error {
	if err := jsonout.Write(env.Stdout, v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// resolveEnclaveID returns id, or the ID of the enclave called name.
func resolveEnclaveID(m *enclave.Manager, id, name string) (string, error) {
	switch {
	case id != "" && name != "":
		return "", nitroErr(eConflictingArgument, errors.New("Conflicting arguments. User provided both `enclave-id` and `enclave-name`."))
	case name != "":
		got, err := m.IDByName(name)
		return got, lifecycleErr(err)
	case id == "":
		return "", nitroErr(eMissingArgument, errors.New("Missing mandatory argument. User did not provide the `enclave-id` argument."))
	}
	return id, nil
}

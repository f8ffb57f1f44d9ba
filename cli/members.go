package cli

import (
	"context"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/leash-dev/leash/api"
)

// runMembers prints GET /v1/cluster as a table (or JSON).
func runMembers(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "members", "members [--json] [--digest]")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	digest := fs.Bool("digest", false, "also show each member's replicated state digest")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return &exitError{code: 2}
	}
	c := newClient(env)
	path := "/v1/cluster"
	if *digest {
		path += "?digest=1"
	}
	var cl api.Cluster
	if err := c.json(ctx, http.MethodGet, path, c.token, nil, &cl); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env, cl)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	head := "ID\tSTATE\tSUFFRAGE\tRAFT STATE\tAPPLIED\tLOAD\tAPI\tCLUSTER ADDR"
	if *digest {
		head += "\tSTATE DIGEST"
	}
	fmt.Fprintln(tw, head)
	for _, m := range cl.Members {
		load := "-"
		if m.Load != nil {
			load = fmt.Sprintf("%d/%d+%d", m.Load.Running, m.Load.Slots, m.Load.Waiting)
		}
		rs := m.RaftState
		if rs == "" {
			rs = "-"
		}
		state := m.State
		if m.Unreachable {
			state += " (unreachable)"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s", m.ID, state, m.Suffrage, rs, m.AppliedIndex, load, m.API, m.Raft)
		if *digest {
			line += "\t" + m.StateDigest
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cl.Leader == nil {
		fmt.Fprintln(env.Stdout, "no leader")
	} else {
		fmt.Fprintf(env.Stdout, "leader: %s (%s), answered by %s\n", cl.Leader.ID, cl.Leader.API, cl.Node)
	}
	return nil
}

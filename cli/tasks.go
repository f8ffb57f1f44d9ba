package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/leash-dev/leash/api"
)

// runTasks: `leash tasks submit|get|list|cancel`, the bulk queue from the
// command line (docs/scheduling.md).
func runTasks(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || helpArgs[args[0]] {
		fmt.Fprintln(env.Stderr, "usage: leash tasks submit|get|list|cancel …  (leash tasks <sub> -h for flags)")
		if len(args) == 0 {
			return &exitError{code: 2}
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "submit":
		return tasksSubmit(ctx, env, args[1:])
	case "get":
		return tasksGet(ctx, env, args[1:])
	case "list":
		return tasksList(ctx, env, args[1:])
	case "cancel":
		return tasksCancel(ctx, env, args[1:])
	}
	fmt.Fprintf(env.Stderr, "leash tasks: unknown subcommand %q (submit, get, list, cancel)\n", args[0])
	return &exitError{code: 2}
}

// tasksSubmit enqueues a module as a bulk task and prints its id; with
// --wait, it waits for a final state and prints the task.
func tasksSubmit(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "tasks submit", "tasks submit PATH [--lease TOKEN | --tenant T --intent I] [--idempotency-key K] [--method M] [--path /p?q] [-H 'K: V'] [--data @file|text] [--env K=V] [--wait] [--json]")
	token := fs.String("lease", "", "a bulk lease token (default: issue one with the admin token)")
	tenant := fs.String("tenant", "demo", "tenant, for the lease issued when --lease is not given")
	intent := fs.String("intent", "transform_content", "task intent, for the lease issued when --lease is not given")
	key := fs.String("idempotency-key", "", "a repeat with the same key returns the same task")
	wait := fs.Bool("wait", false, "wait until the task is finished and print it")
	asJSON := fs.Bool("json", false, "with --wait, print the whole task as JSON")
	tf := addTaskFlags(fs)
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	req, err := tf.request(ctx, env, pos[0])
	if err != nil {
		return err
	}
	req.IdempotencyKey = *key
	c := newClient(env)
	if *token == "" {
		l, err := c.lease(ctx, api.LeaseRequest{Tenant: *tenant, Intent: *intent, Class: "bulk"})
		if err != nil {
			return err
		}
		*token = l.Token
	}
	var acc api.Accepted
	if err := c.json(ctx, http.MethodPost, "/v1/tasks", *token, req, &acc); err != nil {
		return err
	}
	if !*wait {
		fmt.Fprintln(env.Stdout, acc.TaskID)
		return nil
	}
	poll := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.1, Multiplier: 2, MaxInterval: 2 * time.Second}
	for {
		var t api.Task
		if err := c.json(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(acc.TaskID), *token, nil, &t); err != nil {
			return err
		}
		switch t.State {
		case api.TaskSucceeded, api.TaskFailed, api.TaskCancelled, api.TaskDead:
			if *asJSON {
				if err := printJSON(env, t); err != nil {
					return err
				}
			} else if t.Result != nil && t.Result.Response != nil {
				b, _ := t.Result.Response.Bytes()
				env.Stdout.Write(b)
			}
			if t.State != api.TaskSucceeded {
				return &exitError{code: 1, msg: fmt.Sprintf("task %s %s after %d attempt(s): %s", t.TaskID, t.State, t.Attempts, firstNonEmpty(t.Reason, t.Outcome))}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll.NextBackOff()):
		}
	}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func tasksGet(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "tasks get", "tasks get TASK_ID")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	c := newClient(env)
	var t api.Task
	if err := c.json(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(pos[0]), c.token, nil, &t); err != nil {
		return err
	}
	return printJSON(env, t)
}

func tasksList(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "tasks list", "tasks list [--state S] [--tenant T] [--limit N] [--cursor C] [--all] [--json]")
	state := fs.String("state", "", "queued, running, succeeded, failed, cancelled or dead")
	tenant := fs.String("tenant", "", "only this tenant's tasks")
	limit := fs.Int("limit", 50, "tasks per page (at most 500)")
	cursor := fs.String("cursor", "", "the page after this cursor (printed by the previous page)")
	all := fs.Bool("all", false, "follow the cursor to the end")
	asJSON := fs.Bool("json", false, "print the pages as JSON")
	if _, err := parseN(fs, args, 0); err != nil {
		return err
	}
	c := newClient(env)
	tw := tabwriter.NewWriter(env.Stdout, 2, 8, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "TASK\tSTATE\tTENANT\tATTEMPTS\tOUTCOME\tREASON\tENQUEUED")
	}
	next := *cursor
	for {
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		for k, v := range map[string]string{"state": *state, "tenant": *tenant, "cursor": next} {
			if v != "" {
				q.Set(k, v)
			}
		}
		var page api.TaskList
		if err := c.json(ctx, http.MethodGet, "/v1/tasks?"+q.Encode(), c.token, nil, &page); err != nil {
			return err
		}
		if *asJSON {
			if err := printJSON(env, page); err != nil {
				return err
			}
		} else {
			for _, t := range page.Tasks {
				enq := ""
				if t.EnqueuedAt != nil {
					enq = t.EnqueuedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.TaskID, t.State, t.Tenant, t.Attempts, t.MaxAttempts, t.Outcome, t.Reason, enq)
			}
		}
		next = page.NextCursor
		if next == "" || !*all {
			break
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" && !*all {
		fmt.Fprintf(env.Stderr, "more: --cursor %s\n", next)
	}
	return nil
}

func tasksCancel(ctx context.Context, env *Env, args []string) error {
	fs := flags(env, "tasks cancel", "tasks cancel TASK_ID")
	pos, err := parseN(fs, args, 1)
	if err != nil {
		return err
	}
	c := newClient(env)
	var t api.Task
	if err := c.json(ctx, http.MethodDelete, "/v1/tasks/"+url.PathEscape(pos[0]), c.token, nil, &t); err != nil {
		return err
	}
	if t.State == api.TaskCancelled {
		fmt.Fprintln(env.Stdout, "cancelled", t.TaskID)
	} else {
		fmt.Fprintf(env.Stdout, "cancel requested for %s (%s on %s); it ends as terminated:cancelled\n", t.TaskID, t.State, t.Node)
	}
	return nil
}

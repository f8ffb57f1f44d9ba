// Command agent is a worked example of an agent loop on leash over MCP,
// with a scripted "model" instead of a real one: it asks for its
// capabilities, writes code that fetches a URL, runs it with
// run_javascript, reads a blocked fetch from the tool result and retries
// within the profile's egress allow-list.
//
//	LEASH_URL=http://127.0.0.1:8080 LEASH_KEY=lsk_… go run ./examples/agent https://docs.example.com/guide
//
// It talks Streamable HTTP to the node's /mcp with the official Go SDK
// client; docs/mcp.md describes the tools.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	base := os.Getenv("LEASH_URL")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	want := "https://example.org/"
	if len(os.Args) > 1 {
		want = os.Args[1]
	}
	if err := Run(ctx, strings.TrimRight(base, "/")+"/mcp", os.Getenv("LEASH_KEY"), want, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

// bearer adds the tenant key to every MCP request.
type bearer struct {
	key  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.base.RoundTrip(r)
}

// capabilities is what the agent reads of list_capabilities.
type capabilities struct {
	Intents []struct {
		Intent  string `json:"intent"`
		Profile string `json:"profile"`
	} `json:"intents"`
	Profiles []struct {
		Name   string `json:"name"`
		Limits struct {
			Subrequests int `json:"subrequests"`
		} `json:"limits"`
		Egress struct {
			Allow []struct {
				Host string `json:"host"`
			} `json:"allow"`
		} `json:"egress"`
	} `json:"profiles"`
}

// runResult is what the agent reads of run_javascript.
type runResult struct {
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	Status  int    `json:"status"`
	Body    string `json:"body"`
	TaskID  string `json:"task_id"`
	Receipt *int64 `json:"receipt_index"`
	Blocked []struct {
		Destination string `json:"destination"`
		Clause      string `json:"clause"`
	} `json:"blocked"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Run is the loop: capabilities, then at most three attempts to fetch
// want, each time reading what went wrong. It writes a transcript to out.
func Run(ctx context.Context, endpoint, key, want string, out io.Writer) error {
	if key == "" {
		return errors.New("no LEASH_KEY (a tenant key: leash keys create --role tenant --tenant demo)")
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "leash-example-agent", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: endpoint,
		HTTPClient: &http.Client{Transport: bearer{key, http.DefaultTransport}}, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return fmt.Errorf("connect %s: %w", endpoint, err)
	}
	defer cs.Close()

	// 1. What may I do?
	var caps capabilities
	if _, err := call(ctx, cs, "list_capabilities", map[string]any{}, &caps); err != nil {
		return err
	}
	intent, hosts := pickIntent(caps)
	if intent == "" {
		return errors.New("no intent of this tenant may fetch anything")
	}
	fmt.Fprintf(out, "capabilities: intent %s may fetch %s\n", intent, strings.Join(hosts, ", "))

	// 2. The "model" writes code for the URL it wants; then reads the result.
	target := want
	for attempt := 1; attempt <= 3; attempt++ {
		code := fetchCode(target)
		var res runResult
		isError, err := call(ctx, cs, "run_javascript", map[string]any{"code": code, "intent": intent}, &res)
		if err != nil {
			return err
		}
		switch {
		case !isError:
			fmt.Fprintf(out, "attempt %d: %s -> %s %d %q (task %s, receipt %d)\n", attempt, target, res.Outcome, res.Status, res.Body, res.TaskID, deref(res.Receipt))
			return nil
		case len(res.Blocked) > 0:
			b := res.Blocked[0]
			fmt.Fprintf(out, "attempt %d: %s -> blocked: %s by %s\n", attempt, target, b.Destination, b.Clause)
			// Retry within the allow-list: the same path on a host the
			// profile allows.
			next, ok := withinAllowList(target, hosts)
			if !ok {
				return fmt.Errorf("no allowed host to retry %s on", target)
			}
			target = next
		case res.Error != nil:
			return fmt.Errorf("attempt %d refused: %s: %s", attempt, res.Error.Code, res.Error.Message)
		default:
			return fmt.Errorf("attempt %d: %s: %s", attempt, res.Outcome, res.Reason)
		}
	}
	return errors.New("gave up after three attempts")
}

// call calls a tool and decodes its structured content into out.
func call(ctx context.Context, cs *sdk.ClientSession, tool string, args map[string]any, out any) (bool, error) {
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return false, fmt.Errorf("%s: %w", tool, err)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return false, fmt.Errorf("%s: %w", tool, err)
	}
	return res.IsError, nil
}

// pickIntent chooses an intent whose profile may fetch, and its hosts.
func pickIntent(c capabilities) (string, []string) {
	for _, in := range c.Intents {
		for _, p := range c.Profiles {
			if p.Name != in.Profile || p.Limits.Subrequests == 0 || len(p.Egress.Allow) == 0 {
				continue
			}
			var hosts []string
			for _, a := range p.Egress.Allow {
				if !strings.HasPrefix(a.Host, "*.") {
					hosts = append(hosts, a.Host)
				}
			}
			if len(hosts) > 0 {
				return in.Intent, hosts
			}
		}
	}
	return "", nil
}

// withinAllowList moves target's path to the first allowed host.
func withinAllowList(target string, hosts []string) (string, bool) {
	u, err := url.Parse(target)
	if err != nil || len(hosts) == 0 {
		return "", false
	}
	if u.Hostname() == hosts[0] {
		return "", false
	}
	u.Host = hosts[0]
	return u.String(), true
}

// fetchCode is what the scripted model writes: a Worker that fetches url
// and returns its status and body.
func fetchCode(u string) string {
	q, _ := json.Marshal(u)
	return `export default {
  async fetch() {
    const r = await fetch(` + string(q) + `);
    return new Response(r.status + " " + (await r.text()));
  }
}`
}

func deref(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
)

// client talks to a node's API.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(env *Env) *client {
	base := env.Getenv("LEASH_URL")
	if base == "" {
		base = "http://127.0.0.1:8080"
	}
	tok := env.Getenv("LEASH_TOKEN")
	if tok == "" {
		if b, err := os.ReadFile("leash-data/admin.token"); err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	return &client{base: strings.TrimRight(base, "/"), token: tok, http: &http.Client{Timeout: 5 * time.Minute}}
}

// apiError is an error answer from a node.
type apiError struct {
	status int
	e      api.Error
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.e.Code, e.status, e.e.Message)
}

// do sends a request with token as bearer and decodes a JSON answer into
// out (when out is not nil).
func (c *client) do(ctx context.Context, method, path, token, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (is a node running? LEASH_URL=%s)", method, path, err, c.base)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var eb struct {
			Error api.Error `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			return &apiError{status: resp.StatusCode, e: eb.Error}
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if ro, ok := out.(rawOut); ok {
		_, err := ro.w.Write(b)
		return err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func (c *client) json(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, token, ct, body, out)
}

func (c *client) needAdmin() error {
	if c.token == "" {
		return errors.New("no admin token: set LEASH_TOKEN, or run from the directory holding leash-data/")
	}
	return nil
}

func (c *client) lease(ctx context.Context, req api.LeaseRequest) (*api.Lease, error) {
	if err := c.needAdmin(); err != nil {
		return nil, err
	}
	var l api.Lease
	if err := c.json(ctx, http.MethodPost, "/v1/leases", c.token, req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

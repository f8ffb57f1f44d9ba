package node

import (
	"net/http"
	"sync"
	"time"

	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/mcp"
)

// MCPLeaseReuse is how long /mcp's tool calls reuse a lease of the same
// credential, tenant and intent before they issue a new one.
const MCPLeaseReuse = time.Minute

// mcpHandler serves POST /mcp: the MCP server (package mcp) over
// Streamable HTTP, calling this node's own API in process with the
// caller's credential. It is built on first use, from the same route
// table, so that the tools see exactly the API every client sees.
func (n *Node) mcpHandler() httpapi.HandlerFunc {
	var (
		once sync.Once
		h    http.Handler
		err  error
	)
	return func(w http.ResponseWriter, r *http.Request) error {
		once.Do(func() {
			var routes http.Handler
			if routes, err = n.routes(); err != nil {
				return
			}
			var srv *mcp.Server
			// The outer request's credential is checked by the route
			// table on every call, so a kept lease outlives no revoked
			// key (docs/mcp.md, "Why reuse a lease for a minute?").
			srv, err = mcp.New(mcp.Options{API: mcp.InProcess(routes), Logger: n.log, Version: n.cfg.Version, LeaseReuse: MCPLeaseReuse})
			if err == nil {
				h = srv.Handler()
			}
		})
		if err != nil {
			return err
		}
		h.ServeHTTP(w, r)
		return nil
	}
}

package node

import (
	"errors"
	"net/http"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/lease"
	"github.com/leash-dev/leash/obs"
)

// verifyLease checks a request's lease token and maps refusals to the
// API: 401 for a token that proves nothing, 403 for a valid but revoked
// lease.
func (n *Node) verifyLease(r *http.Request) (*consensus.Lease, error) {
	l, _, err := n.leases.Verify(httpapi.Bearer(r), n.now())
	if le := (*lease.Error)(nil); errors.As(err, &le) && (le.Code == api.CodeLeaseUnknown || le.Code == api.CodeLeaseUnknownKey) {
		// A lease issued a moment ago through another node may not have
		// reached this one: catch up with the leader once, then look
		// again (cluster.go).
		if serr := n.syncWithLeader(r.Context()); serr != nil {
			return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, RetryAfter: 1, Err: serr,
				Message: "this node does not know the lease yet and cannot reach the leader to catch up; retry"}
		}
		l, _, err = lease.Verify(httpapi.Bearer(r), n.state, n.now())
	}
	if err != nil {
		var le *lease.Error
		if errors.As(err, &le) {
			status := http.StatusUnauthorized
			if le.Code == api.CodeLeaseRevoked {
				status = http.StatusForbidden
			}
			n.metrics.LeaseRefused(le.Code)
			n.log.Info("lease refused", "code", le.Code, "reason", le.Message, "path", r.URL.Path, "traceparent", obs.RequestTraceparent(r.Context()))
			return nil, &api.Error{Status: status, Code: le.Code, Message: le.Message}
		}
		return nil, err
	}
	return l, nil
}

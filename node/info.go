package node

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/policy"
)

func (n *Node) healthz(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "node_id": n.id.NodeID})
	return nil
}

// readyz is 200 when the node has a leader and has applied what it knows
// to be committed.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) error {
	leader, _ := n.raft.Leader()
	st := n.raft.Stats()
	ready := api.Ready{NodeID: n.id.NodeID, Leader: leader, AppliedIndex: n.raft.AppliedIndex()}
	if nodes, err := n.state.Nodes(); err == nil {
		for _, m := range nodes {
			ready.Members = append(ready.Members, m.ID)
		}
	}
	switch {
	case !n.ready.Load() || n.draining.Load():
		ready.Reason = "starting or shutting down"
	case leader == "":
		ready.Reason = "no leader"
	case st["commit_index"] != "" && st["applied_index"] != "" && lagging(st["commit_index"], st["applied_index"]),
		n.fresh != nil && !n.fresh.ok():
		ready.Reason = "catching up"
	default:
		ready.Ready = true
	}
	status := http.StatusOK
	if !ready.Ready {
		status = http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, status, ready)
	return nil
}

// lagging reports whether applied trails commit by more than a few
// entries (raft's stats are decimal strings).
func lagging(commit, applied string) bool {
	c, err1 := strconv.ParseUint(commit, 10, 64)
	a, err2 := strconv.ParseUint(applied, 10, 64)
	return err1 == nil && err2 == nil && a+16 < c
}

// getCluster is in cluster.go.

func (n *Node) getPolicy(w http.ResponseWriter, r *http.Request) error {
	d, err := n.state.EnvDigest(Env)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, api.CodeNoPolicy, "no policy bundle is active")
	}
	if err != nil {
		return err
	}
	rec, err := n.state.PolicyRecord(d)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, api.PolicyInfo{Env: Env, Digest: d, Source: string(rec.Source)})
	return nil
}

// putPolicy validates a bundle (YAML body) and makes it the active one.
func (n *Node) putPolicy(w http.ResponseWriter, r *http.Request) error {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxBundleBytes))
	if err != nil {
		return httpapi.BodyReadError(err, policy.MaxBundleBytes, "policy bundle")
	}
	b, err := policy.Parse(src)
	if err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			out := api.PolicyErrors{Error: &api.Error{Code: api.CodeInvalidPolicy, Message: ve.Error()}}
			for _, fe := range ve.Errors {
				out.Fields = append(out.Fields, api.FieldError{Line: fe.Line, Field: fe.Field, Message: fe.Message})
			}
			httpapi.WriteJSON(w, http.StatusBadRequest, out)
			return nil
		}
		return err
	}
	prev, _ := n.state.EnvDigest(Env)
	res, err := n.propose(r.Context(), &consensus.PutPolicy{Canonical: b.Canonical(), Source: src, Env: Env, By: httpapi.CallerOf(r.Context()).Name(), At: n.now().UnixNano()})
	if err != nil {
		return n.proposeError(err)
	}
	d, _ := res.Value.(string)
	n.log.Info("policy updated", "env", Env, "digest", d, "previous", prev)
	if d != prev {
		n.emit(r.Context(), events.PolicyPromoted{Env: Env, Digest: d, PreviousDigest: prev, By: httpapi.CallerOf(r.Context()).Name(), Action: consensus.ActionPut})
	}
	httpapi.WriteJSON(w, http.StatusOK, api.PolicyInfo{Env: Env, Digest: d})
	return nil
}

// proposeError maps a failed Raft write to the API.
func (n *Node) proposeError(err error) error {
	var re *consensus.RefusedError
	switch {
	case errors.As(err, &re):
		status := http.StatusBadRequest
		switch re.Code {
		case consensus.CodeLeaseNotFound, consensus.CodeAPIKeyNotFound:
			status = http.StatusNotFound
		case consensus.CodeLeaseExists, consensus.CodeKeyConflict, consensus.CodeAPIKeyExists:
			status = http.StatusConflict
		case consensus.CodeTooManyAPIKeys:
			status = http.StatusTooManyRequests
		case consensus.CodeNotAllowed:
			status = http.StatusForbidden
		case consensus.CodeProfileFrozen:
			status = http.StatusConflict
		}
		return &api.Error{Status: status, Code: re.Code, Message: re.Message}
	case errors.Is(err, consensus.ErrOutcomeUnknown):
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, Message: "leadership changed while the write was in flight: it may or may not have been applied; check, then retry", RetryAfter: 1, Err: err}
	case errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrNotLeader):
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, Message: "no leader is available to apply the write; it was not applied; retry", RetryAfter: 1, Err: err}
	case errors.Is(err, consensus.ErrCommandTooLarge):
		return &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeBodyTooLarge, Message: err.Error()}
	}
	return err
}

// clipString cuts s to n bytes for an error message.
func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

package node

// The security runbook's API (docs/runbook.md): freeze and thaw a
// profile, revoke every live lease a selector matches, block and unblock
// destinations on the global deny list, and incidents. Each change is one
// Raft command, acknowledged only after the revocation fence (every node
// that may still decide has applied it, fresh.go), so an answer means the
// change is in force everywhere. On apply, every node ends the tasks
// running under the leases revoked, closes their proxy tunnels and
// recompiles its deny list.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/ledger"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
	"github.com/leash-dev/leash/sandbox"
)

// Default time boxes of an incident's steps, from its opening.
var defaultTimeBoxes = map[string]time.Duration{
	consensus.StepFreeze:      15 * time.Minute,
	consensus.StepRevoke:      15 * time.Minute,
	consensus.StepBlock:       30 * time.Minute,
	consensus.StepBlastRadius: 2 * time.Hour,
	consensus.StepRestore:     24 * time.Hour,
}

// Bounds of a step's time box.
const (
	minTimeBox = time.Minute
	maxTimeBox = 30 * 24 * time.Hour
)

// maxRevokeRounds bounds the commands one revocation request proposes
// (each revokes at most consensus.MaxRevokePerCommand leases).
const maxRevokeRounds = 200

// runbookAction checks the common fields and makes the command's action.
func (n *Node) runbookAction(r *http.Request, a api.RunbookAction) (consensus.Action, error) {
	if len(a.Reason) > 256 {
		return consensus.Action{}, api.BadRequest(api.CodeBadRequest, "reason is longer than 256 bytes")
	}
	if a.Incident != "" && len(a.Incident) > 64 {
		// Whether the incident exists and is open is apply's to decide:
		// this node may not have seen it yet.
		return consensus.Action{}, api.BadRequest(api.CodeBadRequest, "incident is at most 64 bytes")
	}
	return consensus.Action{By: httpapi.CallerOf(r.Context()).Name(), At: n.now().UnixNano(), Reason: a.Reason, Incident: a.Incident}, nil
}

// proposeRunbook proposes c and waits out the revocation fence, so the
// change is in force on every node when the caller hears of it.
func (n *Node) proposeRunbook(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	res, err := n.propose(ctx, c)
	if err != nil {
		return nil, runbookProposeError(n, err)
	}
	n.fenceRevocation(ctx, res.Index)
	return res, nil
}

// runbookProposeError maps the runbook's refusals to their statuses.
func runbookProposeError(n *Node, err error) error {
	var re *consensus.RefusedError
	if errors.As(err, &re) {
		status := 0
		switch re.Code {
		case consensus.CodeIncidentNotFound:
			status = http.StatusNotFound
		case consensus.CodeIncidentExists, consensus.CodeIncidentClosed, consensus.CodeProfileFrozen:
			status = http.StatusConflict
		case consensus.CodeTooManyBlocks, consensus.CodeTooManyIncidents:
			status = http.StatusTooManyRequests
		}
		if status != 0 {
			return &api.Error{Status: status, Code: re.Code, Message: re.Message}
		}
	}
	return n.proposeError(err)
}

// governance signs a runbook action as a governance entry
// (ledger/governance.go) and appends it to the ledger, with MayRepeat so
// a retried append keeps one entry per action. It returns the entry's
// ledger index; a failure is logged and answered as index -1 (the action
// itself is in force and in the incident's timeline).
func (n *Node) governance(ctx context.Context, kind string, a consensus.Action, index uint64, target string, count int, items []string) int64 {
	if n.cfg.Unaudited {
		return -1
	}
	g := &ledger.Governance{ID: fmt.Sprintf("raft:%d", index), Action: kind, By: a.By, At: a.When(), Reason: a.Reason, Incident: a.Incident,
		Target: target, Count: count, Items: items[:min(len(items), ledger.MaxGovernanceItems)], NodeID: n.id.NodeID}
	env, err := ledger.SignGovernance(n.id.ReceiptKey, g)
	if err == nil {
		var b []byte
		if b, err = env.Canonical(); err == nil {
			var res *consensus.Result
			if res, err = n.propose(ctx, &consensus.AppendReceipts{Envelopes: [][]byte{b}, MayRepeat: true}); err == nil {
				if ar, ok := res.Value.(*consensus.AppendResult); ok && len(ar.Indexes) == 1 {
					n.log.Info("governance entry appended", "action", kind, "id", g.ID, "ledger_index", ar.Indexes[0], "by", a.By, "incident", a.Incident)
					return ar.Indexes[0]
				}
				err = fmt.Errorf("append answered %T", res.Value)
			}
		}
	}
	n.log.Error("governance entry not appended", "action", kind, "id", g.ID, "err", err)
	return -1
}

func (n *Node) runbookResult(kind string, a consensus.Action, res *consensus.Result) api.RunbookResult {
	return api.RunbookResult{Action: kind, By: a.By, At: a.When(), Incident: a.Incident, Index: res.Index}
}

// freezeProfile: PUT /v1/runbook/frozen/{profile}.
func (n *Node) freezeProfile(w http.ResponseWriter, r *http.Request) error {
	var req api.FreezeRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	profile := r.PathValue("profile")
	if err := n.knownProfile(profile); err != nil {
		return err
	}
	a, err := n.runbookAction(r, req.RunbookAction)
	if err != nil {
		return err
	}
	res, err := n.proposeRunbook(r.Context(), &consensus.FreezeProfile{Profile: profile, Frozen: true, RevokeLive: req.RevokeLive, Action: a})
	if err != nil {
		return err
	}
	out := n.runbookResult("freeze", a, res)
	out.Profile = profile
	rv := res.Value.(*consensus.Revoked)
	ids := rv.Leases
	if rv.More {
		// The freeze revoked the first batch; the rest go as a
		// revocation by profile, which the freeze's lease refusal
		// keeps from growing.
		more, idx, err := n.revokeAll(r.Context(), consensus.Selector{Profile: profile}, a)
		ids = append(ids, more...)
		if err != nil {
			return err
		}
		out.Index = idx
	}
	out.Revoked, out.Leases = len(ids), ids[:min(len(ids), api.MaxListedLeases)]
	out.LedgerIndex = n.governance(r.Context(), "freeze", a, res.Index, profile, len(ids), ids)
	setIndex(w, &consensus.Result{Index: out.Index})
	n.log.Info("profile frozen", "profile", profile, "revoke_live", req.RevokeLive, "revoked", len(ids), "by", a.By,
		"reason", a.Reason, "incident", a.Incident, "index", out.Index, "traceparent", obs.RequestTraceparent(r.Context()))
	n.emit(r.Context(), events.ProfileFrozen{Profile: profile, Frozen: true, Reason: a.Reason, By: a.By, Incident: a.Incident})
	if req.RevokeLive {
		n.emit(r.Context(), events.LeaseRevoked{Scope: "profile", Profile: profile, Count: len(ids), Reason: a.Reason, By: a.By, Incident: a.Incident})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// unfreezeProfile: DELETE /v1/runbook/frozen/{profile}?reason=&incident=.
func (n *Node) unfreezeProfile(w http.ResponseWriter, r *http.Request) error {
	profile := r.PathValue("profile")
	if !validName(profile) {
		return api.BadRequest(api.CodeBadRequest, "bad profile name")
	}
	q := r.URL.Query()
	a, err := n.runbookAction(r, api.RunbookAction{Reason: q.Get("reason"), Incident: q.Get("incident")})
	if err != nil {
		return err
	}
	if _, err := n.state.FrozenProfile(profile); errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "profile %q is not frozen", profile)
	}
	res, err := n.proposeRunbook(r.Context(), &consensus.FreezeProfile{Profile: profile, Frozen: false, Action: a})
	if err != nil {
		return err
	}
	setIndex(w, res)
	n.log.Info("profile thawed", "profile", profile, "by", a.By, "reason", a.Reason, "incident", a.Incident, "index", res.Index,
		"traceparent", obs.RequestTraceparent(r.Context()))
	n.emit(r.Context(), events.ProfileFrozen{Profile: profile, Frozen: false, Reason: a.Reason, By: a.By, Incident: a.Incident})
	out := n.runbookResult("unfreeze", a, res)
	out.Profile = profile
	out.LedgerIndex = n.governance(r.Context(), "unfreeze", a, res.Index, profile, 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// listFrozen: GET /v1/runbook/frozen.
func (n *Node) listFrozen(w http.ResponseWriter, r *http.Request) error {
	fr, err := n.state.FrozenProfiles()
	if err != nil {
		return err
	}
	out := make([]api.Frozen, 0, len(fr))
	for _, f := range fr {
		out = append(out, api.Frozen{Profile: f.Profile, By: f.Action.By, At: f.Action.When(), Reason: f.Action.Reason, Incident: f.Action.Incident})
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"frozen": out})
	return nil
}

// knownProfile refuses a name that is no profile of any environment's
// bundle (a typo would freeze nothing).
func (n *Node) knownProfile(name string) error {
	if !validName(name) {
		return api.BadRequest(api.CodeBadRequest, "bad profile name")
	}
	for _, env := range []string{policy.EnvProd, policy.EnvStage, policy.EnvDev} {
		if _, b, err := n.state.ActiveBundle(env); err == nil {
			if _, ok := b.Profiles[name]; ok {
				return nil
			}
		}
	}
	return api.Errorf(http.StatusBadRequest, api.CodeUnknownProfile, "profile %q is in no environment's bundle", name)
}

func validName(s string) bool {
	return s != "" && len(s) <= 128 && !strings.ContainsAny(s, "/\x00")
}

// revokeLeases: POST /v1/runbook/revoke.
func (n *Node) revokeLeases(w http.ResponseWriter, r *http.Request) error {
	var req api.RevokeRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	sel := consensus.Selector{Tenant: req.Tenant, Profile: req.Profile, Session: req.Session, PolicyDigest: req.PolicyDigest}
	if sel.Empty() {
		return api.BadRequest(api.CodeBadRequest, "name a tenant, a profile, a session or a policy_digest")
	}
	for _, f := range []string{sel.Tenant, sel.Profile, sel.Session, sel.PolicyDigest} {
		if len(f) > 128 {
			return api.BadRequest(api.CodeBadRequest, "selector fields are at most 128 bytes")
		}
	}
	a, err := n.runbookAction(r, req.RunbookAction)
	if err != nil {
		return err
	}
	ids, idx, err := n.revokeAll(r.Context(), sel, a)
	if err != nil {
		return err
	}
	setIndex(w, &consensus.Result{Index: idx})
	n.log.Info("leases revoked", "selector", sel.String(), "revoked", len(ids), "by", a.By, "reason", a.Reason, "incident", a.Incident,
		"index", idx, "traceparent", obs.RequestTraceparent(r.Context()))
	scope := "selector"
	if (sel == consensus.Selector{Tenant: sel.Tenant}) {
		scope = "tenant"
	} else if (sel == consensus.Selector{Profile: sel.Profile}) {
		scope = "profile"
	}
	ctx := r.Context()
	if sel.Tenant != "" {
		ctx = events.WithScope(ctx, events.Scope{Tenant: sel.Tenant})
	}
	n.emit(ctx, events.LeaseRevoked{Scope: scope, Profile: sel.Profile, Count: len(ids), Reason: a.Reason, By: a.By, Incident: a.Incident,
		Selector: sel.String()})
	out := api.RunbookResult{Action: "revoke", Revoked: len(ids), Leases: ids[:min(len(ids), api.MaxListedLeases)], By: a.By, At: a.When(), Incident: a.Incident, Index: idx}
	out.LedgerIndex = n.governance(r.Context(), "revoke", a, idx, sel.String(), len(ids), ids)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// revokeAll proposes revocations until none is left to make.
func (n *Node) revokeAll(ctx context.Context, sel consensus.Selector, a consensus.Action) ([]string, uint64, error) {
	var ids []string
	var idx uint64
	for range maxRevokeRounds {
		res, err := n.proposeRunbook(ctx, &consensus.RevokeLeases{Selector: sel, Action: a})
		if err != nil {
			return ids, idx, err
		}
		rv := res.Value.(*consensus.Revoked)
		ids, idx = append(ids, rv.Leases...), res.Index
		if !rv.More {
			return ids, idx, nil
		}
	}
	return ids, idx, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "revoked %d leases; more remain: repeat the request", len(ids))
}

// blockDestinations: POST /v1/runbook/blocks; unblockDestinations: POST
// /v1/runbook/unblock.
func (n *Node) blockDestinations(w http.ResponseWriter, r *http.Request) error {
	return n.changeBlocks(w, r, true)
}

func (n *Node) unblockDestinations(w http.ResponseWriter, r *http.Request) error {
	return n.changeBlocks(w, r, false)
}

func (n *Node) changeBlocks(w http.ResponseWriter, r *http.Request, block bool) error {
	var req api.BlockRequest
	if err := httpapi.DecodeJSON(w, r, 64<<10, &req); err != nil {
		return err
	}
	if len(req.Destinations) == 0 || len(req.Destinations) > consensus.MaxBlocksPerCommand {
		return api.BadRequest(api.CodeBadRequest, "name 1 to %d destinations", consensus.MaxBlocksPerCommand)
	}
	for _, d := range req.Destinations {
		if len(d) > 256 {
			return api.BadRequest(consensus.CodeBadDestination, "a destination is at most 256 bytes")
		}
		if err := policy.ValidateDenyEntry(d); err != nil {
			return api.BadRequest(consensus.CodeBadDestination, "%s", err)
		}
	}
	a, err := n.runbookAction(r, req.RunbookAction)
	if err != nil {
		return err
	}
	res, err := n.proposeRunbook(r.Context(), &consensus.BlockDestinations{Entries: req.Destinations, Block: block, Action: a})
	if err != nil {
		return err
	}
	changed := res.Value.(*consensus.Blocked).Entries
	setIndex(w, res)
	kind := "block"
	if !block {
		kind = "unblock"
	}
	n.log.Info("destinations "+kind+"ed", "destinations", req.Destinations, "changed", changed, "by", a.By, "reason", a.Reason,
		"incident", a.Incident, "index", res.Index, "traceparent", obs.RequestTraceparent(r.Context()))
	for _, e := range changed {
		n.emit(r.Context(), events.DestinationBlocked{Destination: e, Blocked: block, Reason: a.Reason, By: a.By, Incident: a.Incident})
	}
	out := n.runbookResult(kind, a, res)
	out.Changed = changed
	out.LedgerIndex = n.governance(r.Context(), kind, a, res.Index, "", len(changed), changed)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// listBlocks: GET /v1/runbook/blocks.
func (n *Node) listBlocks(w http.ResponseWriter, r *http.Request) error {
	bl, err := n.state.Blocks()
	if err != nil {
		return err
	}
	out := make([]api.Block, 0, len(bl))
	for _, b := range bl {
		out = append(out, api.Block{Destination: b.Entry, By: b.Action.By, At: b.Action.When(), Reason: b.Action.Reason, Incident: b.Action.Incident})
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"blocks": out})
	return nil
}

// openIncident: POST /v1/incidents.
func (n *Node) openIncident(w http.ResponseWriter, r *http.Request) error {
	var req api.IncidentRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = "inc_" + randomID(8)
	}
	now := n.now()
	switch {
	case req.Title == "" || len(req.Title) > 256:
		return api.BadRequest(api.CodeBadRequest, "title is 1 to 256 bytes")
	case req.Owner == "" || len(req.Owner) > 256:
		return api.BadRequest(api.CodeBadRequest, "owner is 1 to 256 bytes")
	case req.DetectedAt != nil && (req.DetectedAt.After(now) || req.DetectedAt.Year() < 2000):
		return api.BadRequest(api.CodeBadRequest, "detected_at is in the past")
	}
	for k := range req.TimeBoxes {
		if !slices.Contains(consensus.Steps, k) {
			return api.BadRequest(api.CodeBadRequest, "time_boxes: no step %q (%s)", clipString(k, 64), strings.Join(consensus.Steps, ", "))
		}
	}
	for k, v := range req.Owners {
		if !slices.Contains(consensus.Steps, k) || v == "" || len(v) > 256 {
			return api.BadRequest(api.CodeBadRequest, "owners: step %q needs a name of 1 to 256 bytes", clipString(k, 64))
		}
	}
	a := consensus.Action{By: httpapi.CallerOf(r.Context()).Name(), At: now.UnixNano(), Incident: req.ID}
	detected := now
	if req.DetectedAt != nil {
		detected = *req.DetectedAt
	}
	inc := consensus.Incident{ID: req.ID, Title: req.Title, Owner: req.Owner, DetectedAt: detected.UnixNano(), Opened: a}
	for _, s := range consensus.Steps {
		box := defaultTimeBoxes[s]
		if v, ok := req.TimeBoxes[s]; ok {
			box = time.Duration(v) * time.Second
			if box < minTimeBox || box > maxTimeBox {
				return api.BadRequest(api.CodeBadRequest, "time_boxes.%s is %s to %s in seconds", s, minTimeBox, maxTimeBox)
			}
		}
		owner := req.Owner
		if v, ok := req.Owners[s]; ok {
			owner = v
		}
		inc.Steps = append(inc.Steps, consensus.Step{Name: s, Owner: owner, Due: now.Add(box).UnixNano()})
	}
	res, err := n.propose(r.Context(), &consensus.OpenIncident{Incident: inc})
	if err != nil {
		return runbookProposeError(n, err)
	}
	setIndex(w, res)
	n.log.Info("incident opened", "incident", inc.ID, "title", inc.Title, "owner", inc.Owner, "by", a.By, "index", res.Index,
		"traceparent", obs.RequestTraceparent(r.Context()))
	n.governance(r.Context(), "incident_open", a, res.Index, inc.Title, 0, nil)
	httpapi.WriteJSON(w, http.StatusCreated, incidentView(res.Value.(*consensus.Incident), n.now()))
	return nil
}

// listIncidents: GET /v1/incidents[?open=true].
func (n *Node) listIncidents(w http.ResponseWriter, r *http.Request) error {
	incs, err := n.state.Incidents(r.URL.Query().Get("open") == "true", 1000)
	if err != nil {
		return err
	}
	now := n.now()
	out := make([]api.Incident, 0, len(incs))
	for i := range incs {
		out = append(out, incidentView(&incs[i], now))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"incidents": out})
	return nil
}

// getIncident: GET /v1/incidents/{id}: the incident with its timeline.
func (n *Node) getIncident(w http.ResponseWriter, r *http.Request) error {
	inc, err := n.state.Incident(r.PathValue("id"))
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, consensus.CodeIncidentNotFound, "no incident %q", clipString(r.PathValue("id"), 64))
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, incidentView(inc, n.now()))
	return nil
}

// completeStep: POST /v1/incidents/{id}/steps/{step}.
func (n *Node) completeStep(w http.ResponseWriter, r *http.Request) error {
	var req api.StepRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	step := r.PathValue("step")
	if !slices.Contains(consensus.Steps, step) {
		return api.BadRequest(api.CodeBadRequest, "no step %q (%s)", clipString(step, 64), strings.Join(consensus.Steps, ", "))
	}
	if len(req.Detail) > 256 {
		return api.BadRequest(api.CodeBadRequest, "detail is at most 256 bytes")
	}
	a, err := n.runbookAction(r, api.RunbookAction{Incident: r.PathValue("id")})
	if err != nil {
		return err
	}
	res, err := n.propose(r.Context(), &consensus.CompleteStep{Step: step, Detail: req.Detail, Action: a})
	if err != nil {
		return runbookProposeError(n, err)
	}
	setIndex(w, res)
	n.log.Info("incident step done", "incident", a.Incident, "step", step, "by", a.By, "index", res.Index)
	n.governance(r.Context(), "incident_step", a, res.Index, step, 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, incidentView(res.Value.(*consensus.Incident), n.now()))
	return nil
}

// closeIncident: POST /v1/incidents/{id}/close.
func (n *Node) closeIncident(w http.ResponseWriter, r *http.Request) error {
	var req api.RunbookAction
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	a, err := n.runbookAction(r, api.RunbookAction{Reason: req.Reason, Incident: r.PathValue("id")})
	if err != nil {
		return err
	}
	res, err := n.propose(r.Context(), &consensus.CloseIncident{Action: a})
	if err != nil {
		return runbookProposeError(n, err)
	}
	setIndex(w, res)
	n.log.Info("incident closed", "incident", a.Incident, "by", a.By, "reason", a.Reason, "index", res.Index)
	n.governance(r.Context(), "incident_close", a, res.Index, "", 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, incidentView(res.Value.(*consensus.Incident), n.now()))
	return nil
}

func tsPtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func incidentView(inc *consensus.Incident, now time.Time) api.Incident {
	out := api.Incident{
		ID: inc.ID, Title: inc.Title, Owner: inc.Owner, DetectedAt: time.Unix(0, inc.DetectedAt).UTC(),
		OpenedAt: inc.Opened.When(), OpenedBy: inc.Opened.By, Open: inc.ClosedAt == 0,
		ContainedAt: tsPtr(inc.ContainedAt), ClosedAt: tsPtr(inc.ClosedAt), Dropped: inc.Dropped,
		Steps: []api.IncidentStep{}, Timeline: []api.TimelineEntry{},
	}
	if inc.ContainedAt != 0 {
		ms := (inc.ContainedAt - inc.DetectedAt) / int64(time.Millisecond)
		out.TimeToContainmentMs = &ms
	}
	for _, s := range inc.Steps {
		out.Steps = append(out.Steps, api.IncidentStep{Name: s.Name, Owner: s.Owner, Due: time.Unix(0, s.Due).UTC(), DoneAt: tsPtr(s.DoneAt),
			DoneBy: s.DoneBy, Overdue: overdue(inc, &s, now)})
	}
	for _, e := range inc.Timeline {
		out.Timeline = append(out.Timeline, api.TimelineEntry{Kind: e.Kind, Detail: e.Detail, Count: e.Count, By: e.Action.By, At: e.Action.When(), Reason: e.Action.Reason})
	}
	return out
}

// overdue: an open incident's step not done by its due time.
func overdue(inc *consensus.Incident, s *consensus.Step, now time.Time) bool {
	return inc.ClosedAt == 0 && s.DoneAt == 0 && now.UnixNano() > s.Due
}

// runbookApplied runs on every node for every applied command: the
// leases a freeze or revocation revoked end their running tasks
// (terminated:revoked) and proxy tunnels; a block or unblock recompiles
// the deny list, which in-flight fetches read at their next hop.
func (n *Node) runbookApplied(a consensus.Applied) {
	switch c := a.Command.(type) {
	case *consensus.FreezeProfile, *consensus.RevokeLeases:
		rv, ok := a.Result.Value.(*consensus.Revoked)
		if !ok || len(rv.Leases) == 0 {
			return
		}
		set := make(map[string]bool, len(rv.Leases))
		for _, id := range rv.Leases {
			set[id] = true
		}
		k := n.tasks.cancelLeases(set, sandbox.Terminate(sandbox.ReasonRevoked))
		tunnels := 0
		if n.egress != nil {
			if p := n.egress.proxy.Load(); p != nil {
				for id := range set {
					tunnels += p.CloseLease(id)
				}
			}
		}
		n.log.Info("runbook revocation applied", "index", a.Index, "leases", len(set), "tasks_ended", k, "tunnels_closed", tunnels)
	case *consensus.BlockDestinations:
		if n.egress != nil {
			n.refreshDeny()
		}
	case *consensus.AppendReceipts:
		if ar, ok := a.Result.Value.(*consensus.AppendResult); ok && n.blast != nil {
			n.blast.offer(c, ar)
		}
	}
}

// cancelLeases ends every task running under one of the leases.
func (r *running) cancelLeases(leases map[string]bool, cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := 0
	for _, t := range r.tasks {
		if leases[t.lease] {
			t.cancel(cause)
			k++
		}
	}
	return k
}

// runbookDeny is the destinations blocked at run time, for the deny
// list (egress.go refreshDeny).
func (n *Node) runbookDeny() []string {
	bl, err := n.state.Blocks()
	if err != nil {
		n.log.Error("read blocked destinations", "err", err)
		return nil
	}
	out := make([]string, 0, len(bl))
	for _, b := range bl {
		out = append(out, b.Entry)
	}
	return out
}

// watchRunbook: every node re-derives its deny list when the blocks in
// state differ from those compiled (a snapshot restore replaces state
// without applying commands); the leader raises an event once for each
// incident step past its time box.
func (n *Node) watchRunbook(ctx context.Context) {
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.indexReceipts(ctx)
	}()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	warned := map[string]bool{}
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.egress != nil {
			cur := strings.Join(n.runbookDeny(), "\n")
			if cur != last {
				n.refreshDeny()
				last = cur
			}
		}
		if n.raft == nil || !n.raft.IsLeader() {
			continue
		}
		incs, err := n.state.Incidents(true, 1000)
		if err != nil {
			continue
		}
		now := n.now()
		for i := range incs {
			inc := &incs[i]
			for j := range inc.Steps {
				s := &inc.Steps[j]
				key := inc.ID + "/" + s.Name
				if !overdue(inc, s, now) || warned[key] {
					continue
				}
				warned[key] = true
				n.log.Warn("incident step overdue", "incident", inc.ID, "step", s.Name, "owner", s.Owner, "due", time.Unix(0, s.Due).UTC())
				n.emit(ctx, events.IncidentStepOverdue{Incident: inc.ID, Step: s.Name, Owner: s.Owner, Due: time.Unix(0, s.Due).UTC()})
			}
		}
		if len(warned) > 10000 {
			clear(warned)
		}
	}
}

package runbook

// The security runbook's API (docs/runbook.md): freeze and thaw a
// profile, revoke every live lease a selector matches, block and unblock
// destinations on the global deny list, and incidents. Each change is one
// Raft command, acknowledged only after the revocation fence (every node
// that may still decide has applied it, node/fresh.go), so an answer
// means the change is in force everywhere. What every node does when such
// a command applies (ending the tasks under revoked leases, closing their
// proxy tunnels, recompiling the deny list) touches the node's insides
// and stays there (node/runbook.go).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
)

// Node is what the runbook's handlers need of the node they run on.
type Node interface {
	// Propose applies a command through Raft (forwarded to the leader
	// from a follower) and waits for it.
	Propose(ctx context.Context, c consensus.Command) (*consensus.Result, error)
	// Fence returns once every node that may still decide on state older
	// than index has applied it, or its right to decide has run out (the
	// revocation fence).
	Fence(ctx context.Context, index uint64)
	// ProposeError maps a failed Raft write to the API's error.
	ProposeError(err error) error
	IsLeader() bool
	// AppendGovernance writes a signed governance entry (canonical
	// envelope bytes; id is its ID) durably to this node's spool, then
	// appends it to the ledger from there, and waits for its ledger
	// index until ctx ends. An entry whose append fails or outlasts ctx
	// stays spooled and is appended later, after a restart too; the
	// ledger holds it once.
	AppendGovernance(ctx context.Context, id string, envelope []byte) (int64, error)
}

// Config sets the service up.
type Config struct {
	State *consensus.State
	Node  Node
	// Events receives the runbook's events (profile_frozen,
	// lease_revoked, destination_blocked, incident_step_overdue).
	Events events.Emitter
	Log    *slog.Logger
	Now    func() time.Time
	// NodeID and ReceiptKey sign governance entries; Unaudited appends
	// none.
	NodeID     string
	ReceiptKey ed25519.PrivateKey
	Unaudited  bool
}

// Service serves the runbook's routes.
type Service struct {
	cfg Config
	log *slog.Logger
}

// NewService returns the service; Run starts its background loop. (New
// is the blast-radius index.)
func NewService(cfg Config) *Service {
	if cfg.Events == nil {
		cfg.Events = events.Discard
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Log}
}

// Handlers binds the runbook's operations of httpapi.Table (but the
// blast radius, which the node serves from its index).
func (s *Service) Handlers() map[string]httpapi.HandlerFunc {
	return map[string]httpapi.HandlerFunc{
		"freezeProfile":       s.freezeProfile,
		"unfreezeProfile":     s.unfreezeProfile,
		"listFrozen":          s.listFrozen,
		"revokeLeases":        s.revokeLeases,
		"blockDestinations":   s.blockDestinations,
		"unblockDestinations": s.unblockDestinations,
		"listBlocks":          s.listBlocks,
		"openIncident":        s.openIncident,
		"listIncidents":       s.listIncidents,
		"getIncident":         s.getIncident,
		"completeStep":        s.completeStep,
		"closeIncident":       s.closeIncident,
	}
}

func (s *Service) now() time.Time { return s.cfg.Now() }

func (s *Service) emit(ctx context.Context, d events.Data) { s.cfg.Events.Emit(ctx, events.New(d)) }

func setIndex(w http.ResponseWriter, res *consensus.Result) {
	if res != nil && res.Index > 0 {
		w.Header().Set(indexHeader, strconv.FormatUint(res.Index, 10))
	}
}

// indexHeader carries the Raft index a write was applied at (the node's
// IndexHeader).
const indexHeader = "Leash-Index"

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID is n random bytes in lower-case base32.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand's Read does not fail
	return idEncoding.EncodeToString(b)
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

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
func (s *Service) runbookAction(r *http.Request, a api.RunbookAction) (consensus.Action, error) {
	if len(a.Reason) > 256 {
		return consensus.Action{}, api.BadRequest(api.CodeBadRequest, "reason is longer than 256 bytes")
	}
	if a.Incident != "" && len(a.Incident) > 64 {
		// Whether the incident exists and is open is apply's to decide:
		// this node may not have seen it yet.
		return consensus.Action{}, api.BadRequest(api.CodeBadRequest, "incident is at most 64 bytes")
	}
	return consensus.Action{By: httpapi.CallerOf(r.Context()).Name(), At: s.now().UnixNano(), Reason: a.Reason, Incident: a.Incident}, nil
}

// proposeRunbook proposes c and waits out the revocation fence, so the
// change is in force on every node when the caller hears of it.
func (s *Service) proposeRunbook(ctx context.Context, c consensus.Command) (*consensus.Result, error) {
	res, err := s.cfg.Node.Propose(ctx, c)
	if err != nil {
		return nil, s.proposeError(err)
	}
	s.cfg.Node.Fence(ctx, res.Index)
	return res, nil
}

// runbookProposeError maps the runbook's refusals to their statuses.
func (s *Service) proposeError(err error) error {
	var re *consensus.RefusedError
	if errors.As(err, &re) {
		status := 0
		switch re.Code {
		case consensus.CodeIncidentNotFound:
			status = http.StatusNotFound
		case consensus.CodeIncidentExists, consensus.CodeIncidentClosed, consensus.CodeProfileFrozen,
			consensus.CodeNoCanary, consensus.CodeNotCanary:
			status = http.StatusConflict
		case consensus.CodeNotFrozen:
			status = http.StatusNotFound
		case consensus.CodeTooManyBlocks, consensus.CodeTooManyIncidents:
			status = http.StatusTooManyRequests
		}
		if status != 0 {
			return &api.Error{Status: status, Code: re.Code, Message: re.Message}
		}
	}
	return s.cfg.Node.ProposeError(err)
}

func (s *Service) runbookResult(kind string, a consensus.Action, res *consensus.Result) api.RunbookResult {
	return api.RunbookResult{Action: kind, By: a.By, At: a.When(), Incident: a.Incident, Index: res.Index}
}

// freezeProfile: PUT /v1/runbook/frozen/{profile}.
func (s *Service) freezeProfile(w http.ResponseWriter, r *http.Request) error {
	var req api.FreezeRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	profile := r.PathValue("profile")
	if err := s.knownProfile(profile); err != nil {
		return err
	}
	a, err := s.runbookAction(r, req.RunbookAction)
	if err != nil {
		return err
	}
	res, err := s.proposeRunbook(r.Context(), &consensus.FreezeProfile{Profile: profile, Frozen: true, RevokeLive: req.RevokeLive, Action: a})
	if err != nil {
		return err
	}
	out := s.runbookResult("freeze", a, res)
	out.Profile = profile
	rv := res.Value.(*consensus.Revoked)
	ids := rv.Leases
	if rv.More {
		// The freeze revoked the first batch; the rest go as a
		// revocation by profile, which the freeze's lease refusal
		// keeps from growing.
		more, idx, err := s.revokeAll(r.Context(), consensus.Selector{Profile: profile}, a)
		ids = append(ids, more...)
		if err != nil {
			return err
		}
		out.Index = idx
	}
	out.Revoked, out.Leases = len(ids), ids[:min(len(ids), api.MaxListedLeases)]
	out.LedgerIndex = s.governance(r.Context(), "freeze", a, res.Index, profile, len(ids), ids)
	setIndex(w, &consensus.Result{Index: out.Index})
	s.log.Info("profile frozen", "profile", profile, "revoke_live", req.RevokeLive, "revoked", len(ids), "by", a.By,
		"reason", a.Reason, "incident", a.Incident, "index", out.Index, "traceparent", obs.RequestTraceparent(r.Context()))
	s.emit(r.Context(), events.ProfileFrozen{Profile: profile, Frozen: true, Reason: a.Reason, By: a.By, Incident: a.Incident})
	if req.RevokeLive {
		s.emit(r.Context(), events.LeaseRevoked{Scope: "profile", Profile: profile, Count: len(ids), Reason: a.Reason, By: a.By, Incident: a.Incident})
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// unfreezeProfile: DELETE /v1/runbook/frozen/{profile}?reason=&incident=.
func (s *Service) unfreezeProfile(w http.ResponseWriter, r *http.Request) error {
	profile := r.PathValue("profile")
	if !validName(profile) {
		return api.BadRequest(api.CodeBadRequest, "bad profile name")
	}
	q := r.URL.Query()
	a, err := s.runbookAction(r, api.RunbookAction{Reason: q.Get("reason"), Incident: q.Get("incident")})
	if err != nil {
		return err
	}
	if d := q.Get("canary"); d != "" {
		// The state machine checks the freeze (profile_not_frozen).
		return s.thawCanary(w, r, profile, d, a)
	}
	if _, err := s.cfg.State.FrozenProfile(profile); errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, api.CodeNotFound, "profile %q is not frozen", profile)
	}
	res, err := s.proposeRunbook(r.Context(), &consensus.FreezeProfile{Profile: profile, Frozen: false, Action: a})
	if err != nil {
		return err
	}
	setIndex(w, res)
	s.log.Info("profile thawed", "profile", profile, "by", a.By, "reason", a.Reason, "incident", a.Incident, "index", res.Index,
		"traceparent", obs.RequestTraceparent(r.Context()))
	s.emit(r.Context(), events.ProfileFrozen{Profile: profile, Frozen: false, Reason: a.Reason, By: a.By, Incident: a.Incident})
	out := s.runbookResult("unfreeze", a, res)
	out.Profile = profile
	out.LedgerIndex = s.governance(r.Context(), "unfreeze", a, res.Index, profile, 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// thawCanary: DELETE /v1/runbook/frozen/{profile}?canary=DIGEST, the
// restore's partial thaw: the profile admits the leases issued under
// prod's canary digest (the canary's share of new leases; every new
// lease once the canary is promoted) and stays frozen for the others.
func (s *Service) thawCanary(w http.ResponseWriter, r *http.Request, profile, digest string, a consensus.Action) error {
	if !digestPattern.MatchString(digest) {
		return api.BadRequest(api.CodeBadRequest, "canary must be sha256: and 64 lower-case hex digits")
	}
	res, err := s.proposeRunbook(r.Context(), &consensus.ThawCanary{Profile: profile, Digest: digest, Action: a})
	if err != nil {
		return err
	}
	setIndex(w, res)
	s.log.Info("profile thawed for the canary", "profile", profile, "canary_digest", digest, "by", a.By, "reason", a.Reason,
		"incident", a.Incident, "index", res.Index, "traceparent", obs.RequestTraceparent(r.Context()))
	s.emit(r.Context(), events.ProfileFrozen{Profile: profile, Frozen: true, Reason: a.Reason, By: a.By, Incident: a.Incident, ThawDigest: digest})
	out := s.runbookResult("thaw_canary", a, res)
	out.Profile = profile
	out.LedgerIndex = s.governance(r.Context(), "thaw_canary", a, res.Index, profile+"@"+digest, 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// digestPattern is a policy digest.
var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// listFrozen: GET /v1/runbook/frozen.
func (s *Service) listFrozen(w http.ResponseWriter, r *http.Request) error {
	fr, err := s.cfg.State.FrozenProfiles()
	if err != nil {
		return err
	}
	out := make([]api.Frozen, 0, len(fr))
	for _, f := range fr {
		out = append(out, api.Frozen{Profile: f.Profile, By: f.Action.By, At: f.Action.When(), Reason: f.Action.Reason, Incident: f.Action.Incident,
			ThawDigest: f.ThawDigest})
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"frozen": out})
	return nil
}

// knownProfile refuses a name that is no profile of any environment's
// bundle (a typo would freeze nothing).
func (s *Service) knownProfile(name string) error {
	if !validName(name) {
		return api.BadRequest(api.CodeBadRequest, "bad profile name")
	}
	for _, env := range []string{policy.EnvProd, policy.EnvStage, policy.EnvDev} {
		if _, b, err := s.cfg.State.ActiveBundle(env); err == nil {
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
func (s *Service) revokeLeases(w http.ResponseWriter, r *http.Request) error {
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
	a, err := s.runbookAction(r, req.RunbookAction)
	if err != nil {
		return err
	}
	ids, idx, err := s.revokeAll(r.Context(), sel, a)
	if err != nil {
		return err
	}
	setIndex(w, &consensus.Result{Index: idx})
	s.log.Info("leases revoked", "selector", sel.String(), "revoked", len(ids), "by", a.By, "reason", a.Reason, "incident", a.Incident,
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
	s.emit(ctx, events.LeaseRevoked{Scope: scope, Profile: sel.Profile, Count: len(ids), Reason: a.Reason, By: a.By, Incident: a.Incident,
		Selector: sel.String()})
	out := api.RunbookResult{Action: "revoke", Revoked: len(ids), Leases: ids[:min(len(ids), api.MaxListedLeases)], By: a.By, At: a.When(), Incident: a.Incident, Index: idx}
	out.LedgerIndex = s.governance(r.Context(), "revoke", a, idx, sel.String(), len(ids), ids)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// revokeAll proposes revocations until none is left to make.
func (s *Service) revokeAll(ctx context.Context, sel consensus.Selector, a consensus.Action) ([]string, uint64, error) {
	var ids []string
	var idx uint64
	for range maxRevokeRounds {
		res, err := s.proposeRunbook(ctx, &consensus.RevokeLeases{Selector: sel, Action: a})
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
func (s *Service) blockDestinations(w http.ResponseWriter, r *http.Request) error {
	return s.changeBlocks(w, r, true)
}

func (s *Service) unblockDestinations(w http.ResponseWriter, r *http.Request) error {
	return s.changeBlocks(w, r, false)
}

func (s *Service) changeBlocks(w http.ResponseWriter, r *http.Request, block bool) error {
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
	a, err := s.runbookAction(r, req.RunbookAction)
	if err != nil {
		return err
	}
	res, err := s.proposeRunbook(r.Context(), &consensus.BlockDestinations{Entries: req.Destinations, Block: block, Action: a})
	if err != nil {
		return err
	}
	changed := res.Value.(*consensus.Blocked).Entries
	setIndex(w, res)
	kind := "block"
	if !block {
		kind = "unblock"
	}
	s.log.Info("destinations "+kind+"ed", "destinations", req.Destinations, "changed", changed, "by", a.By, "reason", a.Reason,
		"incident", a.Incident, "index", res.Index, "traceparent", obs.RequestTraceparent(r.Context()))
	for _, e := range changed {
		s.emit(r.Context(), events.DestinationBlocked{Destination: e, Blocked: block, Reason: a.Reason, By: a.By, Incident: a.Incident})
	}
	out := s.runbookResult(kind, a, res)
	out.Changed = changed
	out.LedgerIndex = s.governance(r.Context(), kind, a, res.Index, "", len(changed), changed)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// listBlocks: GET /v1/runbook/blocks.
func (s *Service) listBlocks(w http.ResponseWriter, r *http.Request) error {
	bl, err := s.cfg.State.Blocks()
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
func (s *Service) openIncident(w http.ResponseWriter, r *http.Request) error {
	var req api.IncidentRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = "inc_" + randomID(8)
	}
	now := s.now()
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
	for _, st := range consensus.Steps {
		box := defaultTimeBoxes[st]
		if v, ok := req.TimeBoxes[st]; ok {
			box = time.Duration(v) * time.Second
			if box < minTimeBox || box > maxTimeBox {
				return api.BadRequest(api.CodeBadRequest, "time_boxes.%s is %s to %s in seconds", st, minTimeBox, maxTimeBox)
			}
		}
		owner := req.Owner
		if v, ok := req.Owners[st]; ok {
			owner = v
		}
		inc.Steps = append(inc.Steps, consensus.Step{Name: st, Owner: owner, Due: now.Add(box).UnixNano()})
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.OpenIncident{Incident: inc})
	if err != nil {
		return s.proposeError(err)
	}
	setIndex(w, res)
	s.log.Info("incident opened", "incident", inc.ID, "title", inc.Title, "owner", inc.Owner, "by", a.By, "index", res.Index,
		"traceparent", obs.RequestTraceparent(r.Context()))
	s.governance(r.Context(), "incident_open", a, res.Index, inc.Title, 0, nil)
	httpapi.WriteJSON(w, http.StatusCreated, incidentView(res.Value.(*consensus.Incident), s.now()))
	return nil
}

// listIncidents: GET /v1/incidents[?open=true].
func (s *Service) listIncidents(w http.ResponseWriter, r *http.Request) error {
	incs, err := s.cfg.State.Incidents(r.URL.Query().Get("open") == "true", 1000)
	if err != nil {
		return err
	}
	now := s.now()
	out := make([]api.Incident, 0, len(incs))
	for i := range incs {
		out = append(out, incidentView(&incs[i], now))
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"incidents": out})
	return nil
}

// getIncident: GET /v1/incidents/{id}: the incident with its timeline.
func (s *Service) getIncident(w http.ResponseWriter, r *http.Request) error {
	inc, err := s.cfg.State.Incident(r.PathValue("id"))
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, consensus.CodeIncidentNotFound, "no incident %q", clipString(r.PathValue("id"), 64))
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, incidentView(inc, s.now()))
	return nil
}

// completeStep: POST /v1/incidents/{id}/steps/{step}.
func (s *Service) completeStep(w http.ResponseWriter, r *http.Request) error {
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
	a, err := s.runbookAction(r, api.RunbookAction{Incident: r.PathValue("id")})
	if err != nil {
		return err
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.CompleteStep{Step: step, Detail: req.Detail, Action: a})
	if err != nil {
		return s.proposeError(err)
	}
	setIndex(w, res)
	s.log.Info("incident step done", "incident", a.Incident, "step", step, "by", a.By, "index", res.Index)
	s.governance(r.Context(), "incident_step", a, res.Index, step, 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, incidentView(res.Value.(*consensus.Incident), s.now()))
	return nil
}

// closeIncident: POST /v1/incidents/{id}/close.
func (s *Service) closeIncident(w http.ResponseWriter, r *http.Request) error {
	var req api.RunbookAction
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	a, err := s.runbookAction(r, api.RunbookAction{Reason: req.Reason, Incident: r.PathValue("id")})
	if err != nil {
		return err
	}
	res, err := s.cfg.Node.Propose(r.Context(), &consensus.CloseIncident{Action: a})
	if err != nil {
		return s.proposeError(err)
	}
	setIndex(w, res)
	s.log.Info("incident closed", "incident", a.Incident, "by", a.By, "reason", a.Reason, "index", res.Index)
	s.governance(r.Context(), "incident_close", a, res.Index, "", 0, nil)
	httpapi.WriteJSON(w, http.StatusOK, incidentView(res.Value.(*consensus.Incident), s.now()))
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

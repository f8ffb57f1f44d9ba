package lifecycle

// The policy lifecycle's routes (docs/policy.md, "Lifecycle"): push to
// an environment, promote dev → stage → prod, prod's canary, rollback,
// and the reads. Every change is one Raft command; the checks that keep
// state consistent (gates, versions, percentages) are made on apply, on
// every node alike; here are only what belongs to the caller (the
// override is an admin's) and the translation to and from the API.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/events"
	"github.com/leash-dev/leash/httpapi"
	"github.com/leash-dev/leash/obs"
	"github.com/leash-dev/leash/policy"
)

const maxPolicyReason = 512

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// policyStatus is the HTTP status of a lifecycle refusal (ok false:
// not one of the lifecycle's codes).
func policyStatus(code string) (int, bool) {
	switch code {
	case consensus.CodeUnknownPolicy:
		return http.StatusNotFound, true
	case consensus.CodeGateNotPassed, consensus.CodePolicyConflict, consensus.CodeUnchanged, consensus.CodeNoCanary,
		consensus.CodeNothingToRollBk, consensus.CodeTooManyBundles:
		return http.StatusConflict, true
	case consensus.CodeEnvNotAllowed:
		return http.StatusForbidden, true
	case consensus.CodeUnknownEnv, consensus.CodeInvalidPercent, consensus.CodeCanaryIsStable, consensus.CodeReasonRequired,
		consensus.CodeInvalidPolicy:
		return http.StatusBadRequest, true
	}
	return 0, false
}

// refusal is the API error of a lifecycle refusal, or nil when err is
// not one of the lifecycle's codes.
func refusal(err error) *api.Error {
	var re *consensus.RefusedError
	if errors.As(err, &re) {
		if status, ok := policyStatus(re.Code); ok {
			return &api.Error{Status: status, Code: re.Code, Message: re.Message}
		}
	}
	return nil
}

// proposeError maps a failed lifecycle write to the API; other failures
// as the node maps every write's.
func (s *Service) proposeError(err error) error {
	if ae := refusal(err); ae != nil {
		return ae
	}
	return s.node.ProposeError(err)
}

func pathEnv(r *http.Request) (string, error) {
	e := r.PathValue("env")
	if !policy.ValidEnv(e) {
		return "", api.Errorf(http.StatusBadRequest, consensus.CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", clipString(e, 64))
	}
	return e, nil
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// changeArgs are what every change carries from the caller.
type changeArgs struct {
	override  bool
	reason    string
	ifVersion *uint64
}

// check refuses an override by anyone but an admin, or without a reason,
// and an over-long reason.
func (a *changeArgs) check(c *httpapi.Caller) error {
	if len(a.reason) > maxPolicyReason {
		return api.BadRequest(api.CodeBadRequest, "reason is longer than %d bytes", maxPolicyReason)
	}
	if a.override && c.Role != httpapi.Admin {
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "only an admin may override a promotion gate")
	}
	if a.override && a.reason == "" {
		return api.BadRequest(consensus.CodeReasonRequired, "an override needs a reason")
	}
	return nil
}

// expect fills in the version a change expects when the caller named
// none: this node's, after catching up with the leader. Of two changes
// made at once from the same version, the second is refused
// (policy_conflict) rather than silently overwriting the first.
func (s *Service) expect(ctx context.Context, env string, v **uint64) error {
	if *v != nil {
		return nil
	}
	if err := s.node.SyncWithLeader(ctx); err != nil {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoLeader, RetryAfter: 1, Err: err,
			Message: "this node cannot catch up with the leader to read the environment's version; retry, or name if_version"}
	}
	st, err := s.state.EnvState(env)
	if err != nil {
		return err
	}
	ver := st.Version
	*v = &ver
	return nil
}

// applyChange proposes a lifecycle command, logs and emits the change,
// and answers it.
func (s *Service) applyChange(w http.ResponseWriter, r *http.Request, cmd consensus.Command) error {
	res, err := s.node.Propose(r.Context(), cmd)
	if err != nil {
		err = s.proposeError(err)
		var ae *api.Error
		if errors.As(err, &ae) {
			s.log.Info("policy change refused", "op", cmd.Op().String(), "code", ae.Code, "reason", ae.Message,
				"by", httpapi.CallerOf(r.Context()).Name(), "traceparent", obs.RequestTraceparent(r.Context()))
		}
		return err
	}
	httpapi.SetIndex(w, res.Index)
	pc, _ := res.Value.(*consensus.PolicyChange)
	if pc == nil {
		return errors.New("policy change applied without a record")
	}
	s.policyChanged(r.Context(), pc)
	httpapi.WriteJSON(w, http.StatusOK, changeView(pc))
	return nil
}

// policyChanged logs and emits one applied change (on the node that made
// it; the automatic abort on the leader).
func (s *Service) policyChanged(ctx context.Context, pc *consensus.PolicyChange) {
	s.log.Info("policy changed", "env", pc.Env, "action", pc.Action, "seq", pc.Seq, "digest", pc.Digest, "previous", pc.Previous,
		"from", pc.From, "canary_digest", pc.CanaryDigest, "canary_percent", pc.CanaryPercent, "override", pc.Override,
		"reason", pc.Reason, "by", pc.By, "traceparent", obs.RequestTraceparent(ctx))
	s.emit(ctx, events.PolicyPromoted{Env: pc.Env, From: pc.From, Digest: pc.Digest, PreviousDigest: pc.Previous,
		CanaryDigest: pc.CanaryDigest, CanaryPercent: pc.CanaryPercent, Rollback: pc.Action == consensus.ActionRollback,
		By: pc.By, Action: pc.Action, Override: pc.Override, Reason: pc.Reason, Seq: pc.Seq})
}

func changeView(pc *consensus.PolicyChange) api.PolicyChange {
	return api.PolicyChange{Env: pc.Env, Seq: pc.Seq, Action: pc.Action, Digest: pc.Digest, Previous: pc.Previous, From: pc.From,
		CanaryDigest: pc.CanaryDigest, CanaryPercent: pc.CanaryPercent, Override: pc.Override, Reason: pc.Reason, By: pc.By,
		At: time.Unix(0, pc.At).UTC()}
}

// pushPolicy: PUT /v1/policy/envs/{env} with a YAML bundle.
func (s *Service) pushPolicy(w http.ResponseWriter, r *http.Request) error {
	env, err := pathEnv(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	a := changeArgs{reason: q.Get("reason")}
	switch o := q.Get("override"); o {
	case "", "false", "0":
	case "true", "1":
		a.override = true
	default:
		return api.BadRequest(api.CodeBadRequest, "override must be true or false")
	}
	if str := q.Get("if_version"); str != "" {
		v, err := strconv.ParseUint(str, 10, 64)
		if err != nil {
			return api.BadRequest(api.CodeBadRequest, "if_version must be a non-negative integer")
		}
		a.ifVersion = &v
	}
	c := httpapi.CallerOf(r.Context())
	if err := a.check(c); err != nil {
		return err
	}
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxBundleBytes))
	if err != nil {
		return httpapi.BodyReadError(err, policy.MaxBundleBytes, "policy bundle")
	}
	b, err := policy.Parse(src)
	if err != nil {
		return s.invalidBundle(w, err)
	}
	if err := s.expect(r.Context(), env, &a.ifVersion); err != nil {
		return err
	}
	return s.applyChange(w, r, &consensus.PushPolicy{Canonical: b.Canonical(), Source: src, Env: env, Override: a.override,
		Reason: a.reason, IfVersion: a.ifVersion, By: c.Name(), At: s.now().UnixNano()})
}

// invalidBundle answers a bundle that does not validate with every
// problem, as PUT /v1/policy does.
func (s *Service) invalidBundle(w http.ResponseWriter, err error) error {
	var ve *policy.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := api.PolicyErrors{Error: &api.Error{Code: api.CodeInvalidPolicy, Message: ve.Error()}}
	for _, fe := range ve.Errors {
		out.Fields = append(out.Fields, api.FieldError{Line: fe.Line, Field: fe.Field, Message: fe.Message})
	}
	httpapi.WriteJSON(w, http.StatusBadRequest, out)
	return nil
}

// promotePolicy: POST /v1/policy/envs/{env}/promote.
func (s *Service) promotePolicy(w http.ResponseWriter, r *http.Request) error {
	env, err := pathEnv(r)
	if err != nil {
		return err
	}
	var req api.PromoteRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	if req.From != "" && !policy.ValidEnv(req.From) {
		return api.BadRequest(consensus.CodeUnknownEnv, "unknown environment %q (dev, stage, prod)", clipString(req.From, 64))
	}
	if req.Digest != "" && !digestPattern.MatchString(req.Digest) {
		return api.BadRequest(api.CodeBadRequest, "digest must be sha256: and 64 lower-case hex digits")
	}
	a := changeArgs{override: req.Override, reason: req.Reason, ifVersion: req.IfVersion}
	c := httpapi.CallerOf(r.Context())
	if err := a.check(c); err != nil {
		return err
	}
	if err := s.expect(r.Context(), env, &a.ifVersion); err != nil {
		return err
	}
	return s.applyChange(w, r, &consensus.PromotePolicy{From: req.From, To: env, Digest: req.Digest, Override: a.override,
		Reason: a.reason, IfVersion: a.ifVersion, By: c.Name(), At: s.now().UnixNano()})
}

// rollbackPolicy: POST /v1/policy/envs/{env}/rollback.
func (s *Service) rollbackPolicy(w http.ResponseWriter, r *http.Request) error {
	env, err := pathEnv(r)
	if err != nil {
		return err
	}
	var req api.RollbackRequest
	if err := decodeOptionalJSON(w, r, &req); err != nil {
		return err
	}
	a := changeArgs{reason: req.Reason, ifVersion: req.IfVersion}
	c := httpapi.CallerOf(r.Context())
	if err := a.check(c); err != nil {
		return err
	}
	if err := s.expect(r.Context(), env, &a.ifVersion); err != nil {
		return err
	}
	return s.applyChange(w, r, &consensus.RollbackPolicy{Env: env, Reason: a.reason, IfVersion: a.ifVersion, By: c.Name(), At: s.now().UnixNano()})
}

// decodeOptionalJSON decodes a JSON body when there is one: a rollback
// or a canary promotion needs no arguments.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return httpapi.DecodeJSON(w, r, 16<<10, v)
}

// setCanary: PUT /v1/policy/canary.
func (s *Service) setCanary(w http.ResponseWriter, r *http.Request) error {
	var req api.CanaryRequest
	if err := httpapi.DecodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	if req.Percent < 0 || req.Percent > 100 {
		return api.BadRequest(consensus.CodeInvalidPercent, "percent %d is outside 0–100", req.Percent)
	}
	if req.Digest != "" && !digestPattern.MatchString(req.Digest) {
		return api.BadRequest(api.CodeBadRequest, "digest must be sha256: and 64 lower-case hex digits")
	}
	a := changeArgs{override: req.Override, reason: req.Reason, ifVersion: req.IfVersion}
	c := httpapi.CallerOf(r.Context())
	if err := a.check(c); err != nil {
		return err
	}
	if err := s.expect(r.Context(), policy.EnvProd, &a.ifVersion); err != nil {
		return err
	}
	return s.applyChange(w, r, &consensus.SetCanary{Digest: req.Digest, Percent: req.Percent, AbortAbove: req.AbortAbove,
		WindowSeconds: req.WindowSeconds, MinTasks: req.MinTasks, Override: a.override, Reason: a.reason, IfVersion: a.ifVersion,
		By: c.Name(), At: s.now().UnixNano()})
}

// endCanary: POST /v1/policy/canary/promote and …/abort.
func (s *Service) endCanary(promote bool) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req api.RollbackRequest
		if err := decodeOptionalJSON(w, r, &req); err != nil {
			return err
		}
		a := changeArgs{reason: req.Reason, ifVersion: req.IfVersion}
		c := httpapi.CallerOf(r.Context())
		if err := a.check(c); err != nil {
			return err
		}
		if err := s.expect(r.Context(), policy.EnvProd, &a.ifVersion); err != nil {
			return err
		}
		return s.applyChange(w, r, &consensus.EndCanary{Promote: promote, Reason: a.reason, IfVersion: a.ifVersion, By: c.Name(), At: s.now().UnixNano()})
	}
}

func (s *Service) envView(env string) (api.PolicyEnv, error) {
	v := api.PolicyEnv{Env: env, Previous: []string{}}
	d, err := s.state.EnvDigest(env)
	if err != nil && !errors.Is(err, consensus.ErrNotFound) {
		return v, err
	}
	v.Digest = d
	st, err := s.state.EnvState(env)
	if err != nil {
		return v, err
	}
	v.Version = st.Version
	if st.Previous != nil {
		v.Previous = st.Previous
	}
	if env == policy.EnvProd {
		c, err := s.state.Canary()
		switch {
		case err == nil:
			v.Canary = canaryView(c)
		case !errors.Is(err, consensus.ErrNotFound):
			return v, err
		}
	}
	return v, nil
}

func canaryView(c *consensus.Canary) *api.CanaryInfo {
	return &api.CanaryInfo{Digest: c.Digest, Percent: c.Percent, AbortAbove: c.AbortAbove, WindowSeconds: c.WindowSeconds,
		MinTasks: c.MinTasks, By: c.By, At: time.Unix(0, c.At).UTC(), Reason: c.Reason}
}

// listPolicyEnvs: GET /v1/policy/envs.
func (s *Service) listPolicyEnvs(w http.ResponseWriter, r *http.Request) error {
	out := api.PolicyEnvs{Envs: []api.PolicyEnv{}}
	for _, e := range policy.Environments {
		v, err := s.envView(e)
		if err != nil {
			return err
		}
		out.Envs = append(out.Envs, v)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// getPolicyEnv: GET /v1/policy/envs/{env}.
func (s *Service) getPolicyEnv(w http.ResponseWriter, r *http.Request) error {
	env, err := pathEnv(r)
	if err != nil {
		return err
	}
	v, err := s.envView(env)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

// policyHistory: GET /v1/policy/envs/{env}/history?limit=&before=.
func (s *Service) policyHistory(w http.ResponseWriter, r *http.Request) error {
	env, err := pathEnv(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := 50
	if str := q.Get("limit"); str != "" {
		v, err := strconv.Atoi(str)
		if err != nil || v < 1 || v > 1000 {
			return api.BadRequest(api.CodeBadRequest, "limit must be 1–1000")
		}
		limit = v
	}
	var before uint64
	if str := q.Get("before"); str != "" {
		v, err := strconv.ParseUint(str, 10, 64)
		if err != nil || v == 0 {
			return api.BadRequest(api.CodeBadRequest, "before must be a positive sequence number")
		}
		before = v
	}
	h, err := s.state.History(env, before, limit)
	if err != nil {
		return err
	}
	out := api.PolicyHistory{Env: env, Changes: make([]api.PolicyChange, 0, len(h))}
	for i := range h {
		out.Changes = append(out.Changes, changeView(&h[i]))
	}
	if len(h) == limit && h[len(h)-1].Seq > 1 {
		out.NextBefore = h[len(h)-1].Seq
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// getPolicyBundle: GET /v1/policy/bundles/{digest}.
func (s *Service) getPolicyBundle(w http.ResponseWriter, r *http.Request) error {
	d := r.PathValue("digest")
	if !digestPattern.MatchString(d) {
		return api.BadRequest(api.CodeBadRequest, "digest must be sha256: and 64 lower-case hex digits")
	}
	rec, err := s.state.PolicyRecord(d)
	if errors.Is(err, consensus.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, consensus.CodeUnknownPolicy, "no bundle %s is stored", d)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, api.PolicyBundle{Digest: rec.Digest, Canonical: string(rec.Canonical), Source: string(rec.Source),
		By: rec.By, At: time.Unix(0, rec.At).UTC()})
	return nil
}

// getCanary: GET /v1/policy/canary: prod's canary and its health.
func (s *Service) getCanary(w http.ResponseWriter, r *http.Request) error {
	stable, err := s.state.EnvDigest(policy.EnvProd)
	if err != nil && !errors.Is(err, consensus.ErrNotFound) {
		return err
	}
	out := api.CanaryStatus{Stable: stable}
	window := consensus.DefaultCanaryWindow
	canary := ""
	c, err := s.state.Canary()
	switch {
	case err == nil:
		out.Canary = canaryView(c)
		window, canary = c.WindowSeconds, c.Digest
	case !errors.Is(err, consensus.ErrNotFound):
		return err
	}
	out.Health = s.health.health(s.now(), time.Duration(window)*time.Second, stable, canary)
	out.Health.Node = s.nodeID
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// FileApplies reports whether a node's --policy file may replace
// prod's bundle at start. It may until the lifecycle manages prod: once
// prod's newest change is a push, promotion, canary change or rollback,
// a node restarted with an older file must not undo it (and end a
// canary) on every node; the file is then ignored, with a warning.
func (s *Service) FileApplies(digest string) bool {
	h, err := s.state.History(policy.EnvProd, 0, 1)
	if err != nil || len(h) == 0 || h[0].Action == consensus.ActionPut {
		return true
	}
	s.log.Warn("--policy not applied: prod is managed by the policy lifecycle; push the file to dev and promote it",
		"file_digest", digest, "prod_action", h[0].Action, "prod_seq", h[0].Seq, "prod_digest", h[0].Digest)
	return false
}

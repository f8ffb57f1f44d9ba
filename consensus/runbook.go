// The security runbook in replicated state (docs/runbook.md): frozen
// profiles, revocation of every live lease a selector matches, the
// destinations blocked at run time (added to the global deny list on
// every node), and incidents with their steps and timeline. Every action
// carries who, when, why and the incident it belongs to; an action that
// names an open incident is written into that incident's timeline in the
// same command, so the record and the change cannot part.

package consensus

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/leash-dev/leash/policy"
)

// Keys of the runbook area.
const (
	prefixFrozen   = PrefixState + "runbook/frozen/"   // <profile> → Frozen
	prefixBlock    = PrefixState + "runbook/block/"    // <canonical entry> → Block
	prefixIncident = PrefixState + "runbook/incident/" // <id> → Incident
	keyBlockCount  = PrefixState + "runbook/n/block"
	keyIncidentN   = PrefixState + "runbook/n/incident"
)

// Bounds of the runbook area.
const (
	// MaxBlocks bounds the destinations blocked at run time.
	MaxBlocks = 4096
	// MaxBlocksPerCommand bounds one block or unblock.
	MaxBlocksPerCommand = 256
	// MaxIncidents bounds the incidents kept (open and closed).
	MaxIncidents = 10000
	// MaxTimeline bounds one incident's timeline; later actions are
	// counted, not kept.
	MaxTimeline = 512
	// MaxRevokePerCommand bounds the leases one revocation ends; the
	// proposer repeats the command while More is set.
	MaxRevokePerCommand = 5000
	maxRunbookText      = 256
)

// Refusal codes of the runbook commands.
const (
	CodeProfileFrozen    = "profile_frozen"
	CodeIncidentNotFound = "incident_not_found"
	CodeIncidentExists   = "incident_exists"
	CodeIncidentClosed   = "incident_closed"
	CodeTooManyBlocks    = "too_many_blocks"
	CodeTooManyIncidents = "too_many_incidents"
	CodeBadDestination   = "invalid_destination"
	CodeNotFrozen        = "profile_not_frozen"
	CodeNotCanary        = "not_the_canary"
)

// Action is who did a runbook action, when (unix ns), why, and the
// incident it belongs to ("" for none).
type Action struct {
	By       string `msgpack:"by" json:"by"`
	At       int64  `msgpack:"at" json:"-"`
	Reason   string `msgpack:"reason,omitempty" json:"reason,omitempty"`
	Incident string `msgpack:"incident,omitempty" json:"incident,omitempty"`
}

// When is the action's time.
func (a Action) When() time.Time { return time.Unix(0, a.At).UTC() }

func (a Action) check() error {
	switch {
	case a.At <= 0 || a.By == "":
		return refuse(CodeInvalid, "a runbook action needs who and when")
	case len(a.By) > maxRunbookText || len(a.Reason) > maxRunbookText:
		return refuse(CodeInvalid, "who and why are at most %d bytes", maxRunbookText)
	case a.Incident != "" && !validIncidentID(a.Incident):
		return refuse(CodeInvalid, "bad incident id")
	}
	return nil
}

// Frozen is a frozen profile: no lease is issued for it until it thaws,
// but those issued under ThawDigest once a restore set it (ThawCanary).
type Frozen struct {
	Profile string `msgpack:"profile" json:"profile"`
	Action  Action `msgpack:"action" json:"action"`
	// ThawDigest, when set, is the patched bundle's digest a restore let
	// through: a lease issued under it (the canary's share of new
	// leases, every new lease once the canary is promoted) is not
	// refused. Thawed is who set it.
	ThawDigest string  `msgpack:"thaw_digest,omitempty" json:"thaw_digest,omitempty"`
	Thawed     *Action `msgpack:"thawed,omitempty" json:"thawed,omitempty"`
}

// Admits reports whether a lease issued under digest passes the freeze.
func (f *Frozen) Admits(digest string) bool { return f.ThawDigest != "" && f.ThawDigest == digest }

// Block is a destination blocked at run time.
type Block struct {
	Entry  string `msgpack:"entry" json:"destination"`
	Action Action `msgpack:"action" json:"action"`
}

// Selector names the leases a revocation ends: every live lease that
// matches all of the fields set. At least one is set.
type Selector struct {
	Tenant       string `msgpack:"tenant,omitempty" json:"tenant,omitempty"`
	Profile      string `msgpack:"profile,omitempty" json:"profile,omitempty"`
	Session      string `msgpack:"session,omitempty" json:"session,omitempty"`
	PolicyDigest string `msgpack:"policy_digest,omitempty" json:"policy_digest,omitempty"`
}

// Empty reports whether the selector names nothing.
func (s Selector) Empty() bool { return s == Selector{} }

// Matches reports whether l is one the selector names.
func (s Selector) Matches(l *Lease) bool {
	return (s.Tenant == "" || s.Tenant == l.Tenant) && (s.Profile == "" || s.Profile == l.Profile) &&
		(s.Session == "" || s.Session == l.Session) && (s.PolicyDigest == "" || s.PolicyDigest == l.PolicyDigest)
}

func (s Selector) String() string {
	var parts []string
	for _, kv := range [][2]string{{"tenant", s.Tenant}, {"profile", s.Profile}, {"session", s.Session}, {"policy_digest", s.PolicyDigest}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, ",")
}

// Incident step names, in the runbook's order.
const (
	StepFreeze      = "freeze"
	StepRevoke      = "revoke"
	StepBlock       = "block"
	StepBlastRadius = "blast_radius"
	StepRestore     = "restore"
)

// Steps is the runbook's steps in order.
var Steps = []string{StepFreeze, StepRevoke, StepBlock, StepBlastRadius, StepRestore}

// Step is one runbook step of an incident: its owner, when it is due
// (its time box from the incident's opening), and when it was done.
type Step struct {
	Name   string `msgpack:"name" json:"name"`
	Owner  string `msgpack:"owner" json:"owner"`
	Due    int64  `msgpack:"due" json:"-"`
	DoneAt int64  `msgpack:"done_at,omitempty" json:"-"`
	DoneBy string `msgpack:"done_by,omitempty" json:"done_by,omitempty"`
}

// Entry is one action in an incident's timeline.
type Entry struct {
	Kind   string `msgpack:"kind" json:"kind"` // freeze, unfreeze, revoke, block, unblock, step, close
	Detail string `msgpack:"detail" json:"detail"`
	Count  int    `msgpack:"count,omitempty" json:"count,omitempty"` // leases revoked, destinations blocked
	Action Action `msgpack:"action" json:"action"`
}

// Incident is an incident, its steps and its timeline.
type Incident struct {
	ID         string  `msgpack:"id" json:"incident_id"`
	Title      string  `msgpack:"title" json:"title"`
	Owner      string  `msgpack:"owner" json:"owner"`
	DetectedAt int64   `msgpack:"detected_at" json:"-"`
	Opened     Action  `msgpack:"opened" json:"opened"`
	Steps      []Step  `msgpack:"steps" json:"steps"`
	Timeline   []Entry `msgpack:"timeline" json:"timeline"`
	Dropped    int     `msgpack:"dropped,omitempty" json:"dropped,omitempty"`
	// ContainedAt is the time of the first containment action (freeze,
	// revoke or block) that named the incident.
	ContainedAt int64 `msgpack:"contained_at,omitempty" json:"-"`
	ClosedAt    int64 `msgpack:"closed_at,omitempty" json:"-"`
}

func validIncidentID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// FreezeProfile freezes (Frozen) or thaws a profile; with RevokeLive a
// freeze also revokes the profile's live leases, like RevokeLeases.
type FreezeProfile struct {
	Profile    string `msgpack:"profile"`
	Frozen     bool   `msgpack:"frozen"`
	RevokeLive bool   `msgpack:"revoke_live,omitempty"`
	Action     Action `msgpack:"action"`
}

// RevokeLeases revokes every live lease the selector matches, at most
// MaxRevokePerCommand of them (More in the result: propose it again).
type RevokeLeases struct {
	Selector Selector `msgpack:"selector"`
	Action   Action   `msgpack:"action"`
}

// BlockDestinations adds entries to (Block) or removes them from the
// destinations blocked at run time.
type BlockDestinations struct {
	Entries []string `msgpack:"entries"`
	Block   bool     `msgpack:"block"`
	Action  Action   `msgpack:"action"`
}

// OpenIncident records a new incident with its steps.
type OpenIncident struct {
	Incident Incident `msgpack:"incident"`
}

// CompleteStep marks an incident's step done (blast radius and restore,
// which change no state of their own, are recorded so).
type CompleteStep struct {
	Step   string `msgpack:"step"`
	Detail string `msgpack:"detail,omitempty"`
	Action Action `msgpack:"action"`
}

// CloseIncident closes an incident.
type CloseIncident struct {
	Action Action `msgpack:"action"`
}

// ThawCanary is a restore's partial thaw: the frozen profile admits the
// leases issued under Digest, which must be prod's running canary (so
// the thaw covers the canary's share of new leases, and every new lease
// once that canary is promoted). A freeze again or a full thaw ends it.
type ThawCanary struct {
	Profile string `msgpack:"profile"`
	Digest  string `msgpack:"digest"`
	Action  Action `msgpack:"action"`
}

func (FreezeProfile) Op() Op     { return OpFreezeProfile }
func (RevokeLeases) Op() Op      { return OpRevokeLeases }
func (BlockDestinations) Op() Op { return OpBlockDestinations }
func (OpenIncident) Op() Op      { return OpOpenIncident }
func (CompleteStep) Op() Op      { return OpCompleteStep }
func (CloseIncident) Op() Op     { return OpCloseIncident }
func (ThawCanary) Op() Op        { return OpThawCanary }

// Revoked is what a revocation (or a freeze with RevokeLive) did: the
// leases it revoked, in id order, and whether more match.
type Revoked struct {
	Leases []string `msgpack:"leases"`
	More   bool     `msgpack:"more,omitempty"`
}

// Blocked is what a block or unblock changed: the canonical entries
// added or removed (those already so are left out).
type Blocked struct {
	Entries []string `msgpack:"entries"`
}

// checkNotFrozen refuses a lease of a frozen profile (applyIssueLease),
// unless a restore thawed the lease's digest.
func checkNotFrozen(tx *Tx, profile, digest string) error {
	var f Frozen
	err := getRecord(tx, prefixFrozen+profile, &f)
	if err == nil {
		if f.Admits(digest) {
			return nil
		}
		return refuse(CodeProfileFrozen, "profile %q is frozen (by %s: %s)", profile, f.Action.By, f.Action.Reason)
	}
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// noteIncident writes an entry into the timeline of the incident the action
// names; an action naming an unknown or closed incident is refused.
func noteIncident(tx *Tx, a Action, kind, detail string, count int, step string) error {
	if a.Incident == "" {
		return nil
	}
	var inc Incident
	if err := getRecord(tx, prefixIncident+a.Incident, &inc); err != nil {
		if errors.Is(err, ErrNotFound) {
			return refuse(CodeIncidentNotFound, "no incident %s", a.Incident)
		}
		return err
	}
	if inc.ClosedAt != 0 {
		return refuse(CodeIncidentClosed, "incident %s is closed", a.Incident)
	}
	if len(inc.Timeline) < MaxTimeline {
		inc.Timeline = append(inc.Timeline, Entry{Kind: kind, Detail: detail, Count: count, Action: a})
	} else {
		inc.Dropped++
	}
	switch kind {
	case "freeze", "revoke", "block":
		if inc.ContainedAt == 0 {
			inc.ContainedAt = a.At
		}
	}
	for i := range inc.Steps {
		if inc.Steps[i].Name == step && inc.Steps[i].DoneAt == 0 {
			inc.Steps[i].DoneAt, inc.Steps[i].DoneBy = a.At, a.By
			break
		}
	}
	return put(tx, prefixIncident+inc.ID, &inc)
}

// revokeMatching revokes the live leases sel matches, in id order, at
// most MaxRevokePerCommand.
func revokeMatching(tx *Tx, sel Selector, a Action) (*Revoked, error) {
	var hits []*Lease
	more := false
	err := scan(tx, prefixLease, func(_, v []byte) error {
		var l Lease
		if err := msgpackUnmarshal(v, &l); err != nil {
			return err
		}
		if l.Revoked() || l.ExpiresAt <= a.At || !sel.Matches(&l) {
			return nil
		}
		if len(hits) == MaxRevokePerCommand {
			more = true
			return errStopScan
		}
		hits = append(hits, &l)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, err
	}
	out := &Revoked{Leases: make([]string, 0, len(hits)), More: more}
	for _, l := range hits {
		old := *l
		l.RevokedAt, l.RevokedBy = a.At, a.By
		l.RevokeReason = a.Reason
		if l.RevokeReason == "" {
			l.RevokeReason = "runbook"
		}
		if err := leases.put(tx, &old, l); err != nil {
			return nil, err
		}
		out.Leases = append(out.Leases, l.ID)
	}
	return out, nil
}

// canonicalDeny is a deny entry's canonical form, as the bundle's deny
// list has it: a masked CIDR prefix, or a normalized host pattern.
func canonicalDeny(e string) (string, error) {
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return "", fmt.Errorf("not a CIDR prefix: %q", e)
		}
		return p.Masked().String(), nil
	}
	return policy.NormalizeHostPattern(e)
}

func msgpackUnmarshal(b []byte, v any) error { return msgpack.Unmarshal(b, v) }

func validProfileName(p string) bool {
	return p != "" && len(p) <= 128 && !strings.ContainsAny(p, "/\x00")
}

func applyFreezeProfile(tx *Tx, c *FreezeProfile) (*Revoked, error) {
	if err := c.Action.check(); err != nil {
		return nil, err
	}
	if !validProfileName(c.Profile) {
		return nil, refuse(CodeInvalid, "bad profile name")
	}
	if !c.Frozen && c.RevokeLive {
		return nil, refuse(CodeInvalid, "a thaw revokes nothing")
	}
	key := prefixFrozen + c.Profile
	out := &Revoked{Leases: []string{}}
	if c.Frozen {
		if err := put(tx, key, &Frozen{Profile: c.Profile, Action: c.Action}); err != nil {
			return nil, err
		}
		if c.RevokeLive {
			r, err := revokeMatching(tx, Selector{Profile: c.Profile}, c.Action)
			if err != nil {
				return nil, err
			}
			out = r
		}
		detail := "profile " + c.Profile + " frozen"
		if c.RevokeLive {
			detail += fmt.Sprintf(", %d live leases revoked", len(out.Leases))
		}
		return out, noteIncident(tx, c.Action, "freeze", detail, len(out.Leases), StepFreeze)
	}
	tx.Delete(key)
	return out, noteIncident(tx, c.Action, "unfreeze", "profile "+c.Profile+" thawed", 0, "")
}

func applyThawCanary(tx *Tx, c *ThawCanary) (*Frozen, error) {
	if err := c.Action.check(); err != nil {
		return nil, err
	}
	if !validProfileName(c.Profile) {
		return nil, refuse(CodeInvalid, "bad profile name")
	}
	var f Frozen
	if err := getRecord(tx, prefixFrozen+c.Profile, &f); errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeNotFrozen, "profile %q is not frozen", c.Profile)
	} else if err != nil {
		return nil, err
	}
	var can Canary
	if err := getRecord(tx, keyCanary, &can); errors.Is(err, ErrNotFound) {
		return nil, refuse(CodeNoCanary, "prod runs no canary: start the patched bundle as its canary first")
	} else if err != nil {
		return nil, err
	}
	if can.Digest != c.Digest {
		return nil, refuse(CodeNotCanary, "%s is not prod's canary (%s)", c.Digest, can.Digest)
	}
	a := c.Action
	f.ThawDigest, f.Thawed = c.Digest, &a
	if err := put(tx, prefixFrozen+c.Profile, &f); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("profile %s thawed for the canary %s at %d%%", c.Profile, c.Digest, can.Percent)
	return &f, noteIncident(tx, c.Action, "restore", detail, 0, StepRestore)
}

func applyRevokeLeases(tx *Tx, c *RevokeLeases) (*Revoked, error) {
	if err := c.Action.check(); err != nil {
		return nil, err
	}
	s := c.Selector
	if s.Empty() {
		return nil, refuse(CodeInvalid, "a revocation names a tenant, a profile, a session or a policy digest")
	}
	for _, f := range []string{s.Tenant, s.Profile, s.Session, s.PolicyDigest} {
		if len(f) > 128 {
			return nil, refuse(CodeInvalid, "selector fields are at most 128 bytes")
		}
	}
	r, err := revokeMatching(tx, s, c.Action)
	if err != nil {
		return nil, err
	}
	return r, noteIncident(tx, c.Action, "revoke", fmt.Sprintf("%d leases revoked (%s)", len(r.Leases), s), len(r.Leases), StepRevoke)
}

func applyBlockDestinations(tx *Tx, c *BlockDestinations) (*Blocked, error) {
	if err := c.Action.check(); err != nil {
		return nil, err
	}
	if len(c.Entries) == 0 || len(c.Entries) > MaxBlocksPerCommand {
		return nil, refuse(CodeInvalid, "name 1 to %d destinations", MaxBlocksPerCommand)
	}
	canon := make([]string, 0, len(c.Entries))
	for _, e := range c.Entries {
		if len(e) > 256 {
			return nil, refuse(CodeBadDestination, "a destination is at most 256 bytes")
		}
		n, err := canonicalDeny(e)
		if err != nil {
			return nil, refuse(CodeBadDestination, "%v", err)
		}
		canon = append(canon, n)
	}
	slices.Sort(canon)
	canon = slices.Compact(canon)
	count, err := getCount(tx, keyBlockCount)
	if err != nil {
		return nil, err
	}
	out := &Blocked{Entries: []string{}}
	for _, e := range canon {
		key := prefixBlock + e
		var b Block
		err := getRecord(tx, key, &b)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		switch {
		case c.Block && !exists:
			if count >= MaxBlocks {
				return nil, refuse(CodeTooManyBlocks, "%d destinations are blocked, the most there may be", count)
			}
			if err := put(tx, key, &Block{Entry: e, Action: c.Action}); err != nil {
				return nil, err
			}
			count++
		case !c.Block && exists:
			tx.Delete(key)
			count--
		default:
			continue
		}
		out.Entries = append(out.Entries, e)
	}
	delta := int64(len(out.Entries))
	if !c.Block {
		delta = -delta
	}
	if err := addCount(tx, keyBlockCount, delta); err != nil {
		return nil, err
	}
	kind, step := "block", StepBlock
	if !c.Block {
		kind, step = "unblock", ""
	}
	return out, noteIncident(tx, c.Action, kind, kind+" "+strings.Join(canon, " "), len(out.Entries), step)
}

func applyOpenIncident(tx *Tx, c *OpenIncident) (*Incident, error) {
	inc := c.Incident
	if err := inc.Opened.check(); err != nil {
		return nil, err
	}
	switch {
	case !validIncidentID(inc.ID):
		return nil, refuse(CodeInvalid, "an incident id is 1-64 letters, digits, '-' or '_'")
	case inc.Title == "" || len(inc.Title) > maxRunbookText || inc.Owner == "" || len(inc.Owner) > maxRunbookText:
		return nil, refuse(CodeInvalid, "an incident needs a title and an owner of at most %d bytes", maxRunbookText)
	case inc.DetectedAt <= 0 || inc.DetectedAt > inc.Opened.At:
		return nil, refuse(CodeInvalid, "an incident is detected before it is opened")
	case inc.Opened.Incident != "" && inc.Opened.Incident != inc.ID:
		return nil, refuse(CodeInvalid, "an incident's opening names the incident itself")
	case len(inc.Timeline) != 0 || inc.Dropped != 0 || inc.ContainedAt != 0 || inc.ClosedAt != 0:
		return nil, refuse(CodeInvalid, "a new incident has no timeline yet")
	case len(inc.Steps) != len(Steps):
		return nil, refuse(CodeInvalid, "an incident has the runbook's %d steps", len(Steps))
	}
	for i, s := range inc.Steps {
		if s.Name != Steps[i] || s.Owner == "" || len(s.Owner) > maxRunbookText || s.Due <= inc.Opened.At || s.DoneAt != 0 || s.DoneBy != "" {
			return nil, refuse(CodeInvalid, "step %d is %s, with an owner and a due time after the opening, not done", i, Steps[i])
		}
	}
	var prev Incident
	if err := getRecord(tx, prefixIncident+inc.ID, &prev); err == nil {
		return nil, refuse(CodeIncidentExists, "incident %s exists", inc.ID)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	n, err := getCount(tx, keyIncidentN)
	if err != nil {
		return nil, err
	}
	if n >= MaxIncidents {
		return nil, refuse(CodeTooManyIncidents, "%d incidents are kept, the most there may be", n)
	}
	inc.Opened.Incident = inc.ID
	inc.Timeline = []Entry{{Kind: "open", Detail: inc.Title, Action: inc.Opened}}
	if err := put(tx, prefixIncident+inc.ID, &inc); err != nil {
		return nil, err
	}
	if err := addCount(tx, keyIncidentN, 1); err != nil {
		return nil, err
	}
	return &inc, nil
}

func applyCompleteStep(tx *Tx, c *CompleteStep) (*Incident, error) {
	if err := c.Action.check(); err != nil {
		return nil, err
	}
	if c.Action.Incident == "" || !slices.Contains(Steps, c.Step) || len(c.Detail) > maxRunbookText {
		return nil, refuse(CodeInvalid, "a step names its incident and one of %s", strings.Join(Steps, ", "))
	}
	if err := noteIncident(tx, c.Action, "step", c.Step+": "+c.Detail, 0, c.Step); err != nil {
		return nil, err
	}
	var inc Incident
	if err := getRecord(tx, prefixIncident+c.Action.Incident, &inc); err != nil {
		return nil, err
	}
	return &inc, nil
}

func applyCloseIncident(tx *Tx, c *CloseIncident) (*Incident, error) {
	if err := c.Action.check(); err != nil {
		return nil, err
	}
	if c.Action.Incident == "" {
		return nil, refuse(CodeInvalid, "a close names its incident")
	}
	if err := noteIncident(tx, c.Action, "close", c.Action.Reason, 0, ""); err != nil {
		return nil, err
	}
	var inc Incident
	if err := getRecord(tx, prefixIncident+c.Action.Incident, &inc); err != nil {
		return nil, err
	}
	inc.ClosedAt = c.Action.At
	return &inc, put(tx, prefixIncident+inc.ID, &inc)
}

// FrozenProfile returns the freeze of a profile, or ErrNotFound.
func (s *State) FrozenProfile(profile string) (*Frozen, error) {
	var f Frozen
	if err := getRecord(s.db, prefixFrozen+profile, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// FrozenProfiles lists the frozen profiles by name.
func (s *State) FrozenProfiles() ([]Frozen, error) {
	var out []Frozen
	err := scan(s.db, prefixFrozen, func(_, v []byte) error {
		var f Frozen
		if err := msgpackUnmarshal(v, &f); err != nil {
			return err
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

// Blocks lists the destinations blocked at run time, by entry.
func (s *State) Blocks() ([]Block, error) {
	var out []Block
	err := scan(s.db, prefixBlock, func(_, v []byte) error {
		var b Block
		if err := msgpackUnmarshal(v, &b); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	return out, err
}

// Incident returns an incident by id.
func (s *State) Incident(id string) (*Incident, error) {
	var inc Incident
	if err := getRecord(s.db, prefixIncident+id, &inc); err != nil {
		return nil, err
	}
	return &inc, nil
}

// Incidents lists incidents by id, at most limit (open ones only when
// open is set).
func (s *State) Incidents(open bool, limit int) ([]Incident, error) {
	var out []Incident
	err := scan(s.db, prefixIncident, func(_, v []byte) error {
		if len(out) >= limit {
			return errStopScan
		}
		var inc Incident
		if err := msgpackUnmarshal(v, &inc); err != nil {
			return err
		}
		if !open || inc.ClosedAt == 0 {
			out = append(out, inc)
		}
		return nil
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return out, err
}

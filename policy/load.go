package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Sentinel refusals used when resolving a lease request.
var (
	ErrUnknownIntent  = errors.New("unknown intent")
	ErrUnknownProfile = errors.New("unknown profile")
)

// MaxBundleBytes bounds a bundle's YAML source.
const MaxBundleBytes = 1 << 20

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the built-in example bundle a node starts with when no
// --policy is given.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default parses the built-in example bundle.
func Default() *Bundle {
	b, err := Parse(defaultYAML)
	if err != nil {
		panic(fmt.Sprintf("policy: built-in bundle is invalid: %v", err))
	}
	return b
}

// FieldError is one problem in a bundle, located by line (0 when unknown)
// and by field path such as profiles.docs-reader.limits.cpu_ms.
type FieldError struct {
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e FieldError) String() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ValidationError lists every problem found in a bundle, not just the
// first.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.String()
	}
	return "invalid policy bundle: " + strings.Join(parts, "; ")
}

// Read parses a bundle from r, refusing sources over MaxBundleBytes.
func Read(r io.Reader) (*Bundle, error) {
	src, err := io.ReadAll(io.LimitReader(r, MaxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read policy bundle: %w", err)
	}
	return Parse(src)
}

// Parse decodes YAML source, refuses unknown keys, validates every field
// and returns the normalised bundle. Errors are a *ValidationError.
func Parse(src []byte) (*Bundle, error) {
	if len(src) > MaxBundleBytes {
		return nil, &ValidationError{Errors: []FieldError{{Message: fmt.Sprintf("bundle is larger than %d bytes", MaxBundleBytes)}}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, &ValidationError{Errors: yamlErrors(err)}
	}
	if len(root.Content) == 0 {
		return nil, &ValidationError{Errors: []FieldError{{Message: "empty bundle"}}}
	}
	lines := map[string]int{}
	walkLines(root.Content[0], "", lines)

	var b Bundle
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&b); err != nil {
		return nil, &ValidationError{Errors: withFields(yamlErrors(err), lines)}
	}
	if errs := b.validate(lines); len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	b.normalize()
	return &b, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func yamlErrors(err error) []FieldError {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]FieldError, 0, len(msgs))
	for _, m := range msgs {
		fe := FieldError{Message: m}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			fe.Line, _ = strconv.Atoi(sm[1])
			fe.Message = sm[2]
		}
		out = append(out, fe)
	}
	return out
}

// walkLines records the line of every mapping key and sequence item by
// dotted path, so validation errors can point at the source.
func walkLines(n *yaml.Node, path string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkLines(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			lines[p] = k.Line
			walkLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			walkLines(c, p, lines)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Names of profiles, intents and tenants.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// jsIdentifier is what a profile's kv.binding may be: an env name a
// worker reads as env.NAME.
var jsIdentifier = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]{0,63}$`)

// Bounds on profile limits. They keep one task from taking a node down
// whatever a bundle says.
const (
	maxCPUMs        = 5 * 60 * 1000
	maxWallMs       = 60 * 60 * 1000
	maxMemoryMB     = 4096
	maxOutputBytes  = 64 << 20
	maxLogBytes     = 16 << 20
	maxSubrequests  = 10000
	maxLeaseTTL     = 24 * 60 * 60 // seconds
	maxRedirectsCap = 20
	maxTimeoutMs    = 10 * 60 * 1000
	maxAllowRules   = 100000
)

type validator struct {
	lines map[string]int
	errs  []FieldError
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Line: v.line(field), Field: field, Message: fmt.Sprintf(format, args...)})
}

// line finds the closest recorded line for field, walking up its path.
func (v *validator) line(field string) int {
	for p := field; p != ""; {
		if l, ok := v.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (v *validator) rangeCheck(field string, val, lo, hi int64) {
	if val < lo || val > hi {
		v.add(field, "must be between %d and %d, got %d", lo, hi, val)
	}
}

func (b *Bundle) validate(lines map[string]int) []FieldError {
	v := &validator{lines: lines}
	if b.Version != SchemaVersion {
		v.add("version", "must be %d, got %d", SchemaVersion, b.Version)
	}
	if len(b.Profiles) == 0 {
		v.add("profiles", "at least one profile is required")
	}
	for _, name := range sortedKeys(b.Profiles) {
		p := b.Profiles[name]
		f := "profiles." + name
		if !namePattern.MatchString(name) {
			v.add(f, "profile name must match %s", namePattern)
		}
		if p == nil {
			v.add(f, "profile is empty")
			continue
		}
		p.validate(v, f)
	}
	for _, intent := range sortedKeys(b.Intents) {
		f := "intents." + intent
		if !namePattern.MatchString(intent) {
			v.add(f, "intent name must match %s", namePattern)
		}
		if _, ok := b.Profiles[b.Intents[intent]]; !ok {
			v.add(f, "names unknown profile %q", b.Intents[intent])
		}
	}
	if len(b.Tenants) == 0 {
		v.add("tenants", "at least one tenant is required")
	}
	for _, name := range sortedKeys(b.Tenants) {
		t := b.Tenants[name]
		f := "tenants." + name
		if !namePattern.MatchString(name) {
			v.add(f, "tenant name must match %s", namePattern)
		}
		if t == nil {
			v.add(f, "tenant is empty")
			continue
		}
		if len(t.Profiles) == 0 {
			v.add(f+".profiles", "at least one profile is required")
		}
		for i, p := range t.Profiles {
			if _, ok := b.Profiles[p]; !ok {
				v.add(fmt.Sprintf("%s.profiles[%d]", f, i), "names unknown profile %q", p)
			}
		}
		for i, e := range t.Environments {
			if !ValidEnv(e) {
				v.add(fmt.Sprintf("%s.environments[%d]", f, i), "unknown environment %q (dev, stage, prod)", e)
			}
		}
		v.rangeCheck(f+".weight", int64(t.Weight), 0, 1000)
		v.rangeCheck(f+".modules.max_bytes", t.Modules.MaxBytes, 0, 16<<30)
		v.rangeCheck(f+".modules.max_count", t.Modules.MaxCount, 0, 100000)
		if r := t.Retention; r != nil && r.Tasks != 0 && (r.Tasks < MinTaskRetention || r.Tasks > MaxTaskRetention) {
			v.add(f+".retention.tasks", "must be between 1h and 8760h")
		}
		for field, val := range map[string]int64{
			"cpu_ms_per_day": t.Budget.CPUMsPerDay, "egress_bytes_per_day": t.Budget.EgressBytesPerDay,
			"tool_calls_per_day": t.Budget.ToolCallsPerDay, "tasks_per_day": t.Budget.TasksPerDay,
		} {
			if val < 0 {
				v.add(f+".budget."+field, "must not be negative")
			}
		}
	}
	if b.Prices != nil {
		b.Prices.validate(v)
	}
	for i, d := range b.Deny {
		if err := ValidateDenyEntry(d); err != nil {
			v.add(fmt.Sprintf("deny[%d]", i), "%v", err)
		}
	}
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return v.errs
}

func (p *Profile) validate(v *validator, f string) {
	l := p.Limits
	v.rangeCheck(f+".limits.cpu_ms", l.CPUMs, 1, maxCPUMs)
	v.rangeCheck(f+".limits.wall_ms", l.WallMs, 1, maxWallMs)
	v.rangeCheck(f+".limits.memory_mb", l.MemoryMB, 1, maxMemoryMB)
	v.rangeCheck(f+".limits.output_bytes", l.OutputBytes, 1, maxOutputBytes)
	v.rangeCheck(f+".limits.log_bytes", l.LogBytes, 0, maxLogBytes)
	v.rangeCheck(f+".limits.subrequests", l.Subrequests, 0, maxSubrequests)
	ttl := int64(p.MaxLeaseTTL.D().Seconds())
	if p.MaxLeaseTTL.D()%1e9 != 0 {
		v.add(f+".max_lease_ttl", "must be whole seconds")
	}
	v.rangeCheck(f+".max_lease_ttl", ttl, 1, maxLeaseTTL)
	e := p.Egress
	if len(e.Allow) > maxAllowRules {
		v.add(f+".egress.allow", "at most %d entries", maxAllowRules)
	}
	for i, r := range e.Allow {
		rf := fmt.Sprintf("%s.egress.allow[%d]", f, i)
		if _, err := NormalizeHostPattern(r.Host); err != nil {
			v.add(rf+".host", "%v", err)
		}
		for j, port := range r.Ports {
			v.rangeCheck(fmt.Sprintf("%s.ports[%d]", rf, j), int64(port), 1, 65535)
		}
		for j, m := range r.Methods {
			if !validMethod(m) {
				v.add(fmt.Sprintf("%s.methods[%d]", rf, j), "unknown HTTP method %q", m)
			}
		}
		if r.Rate != nil {
			if r.Rate.PerSecond <= 0 || r.Rate.PerSecond > 1e6 {
				v.add(rf+".rate.per_second", "must be above 0 and at most 1000000")
			}
			v.rangeCheck(rf+".rate.burst", int64(r.Rate.Burst), 0, 1e6)
		}
		if r.BytesPerMinute < 0 {
			v.add(rf+".bytes_per_minute", "must not be negative")
		}
	}
	v.rangeCheck(f+".egress.max_response_bytes", e.MaxResponseBytes, 0, 1<<30)
	if e.MaxRedirects != nil {
		v.rangeCheck(f+".egress.max_redirects", int64(*e.MaxRedirects), 0, maxRedirectsCap)
	}
	v.rangeCheck(f+".egress.timeouts.connect_ms", e.Timeouts.ConnectMs, 0, maxTimeoutMs)
	v.rangeCheck(f+".egress.timeouts.header_ms", e.Timeouts.HeaderMs, 0, maxTimeoutMs)
	v.rangeCheck(f+".egress.timeouts.total_ms", e.Timeouts.TotalMs, 0, maxTimeoutMs)
	v.rangeCheck(f+".kv.quota_bytes", p.KV.QuotaBytes, 0, 1<<30)
	if p.KV.TTL < 0 || p.KV.TTL > MaxKVTTL {
		v.add(f+".kv.ttl", "must be between 0s and 720h")
	} else if p.KV.TTL > 0 && p.KV.TTL < Duration(time.Second) {
		v.add(f+".kv.ttl", "must be at least 1s")
	}
	v.rangeCheck(f+".kv.max_key_bytes", p.KV.MaxKeyBytes, 0, KVKeyBytesCap)
	v.rangeCheck(f+".kv.max_value_bytes", p.KV.MaxValueBytes, 0, KVValueBytesCap)
	v.rangeCheck(f+".kv.ops_per_task", p.KV.OpsPerTask, 0, KVOpsPerTaskCap)
	if b := p.KV.Binding; b != "" && !jsIdentifier.MatchString(b) {
		v.add(f+".kv.binding", "must be a JavaScript identifier of at most 64 characters")
	}
	if r := p.Retry; r != nil {
		v.rangeCheck(f+".retry.max_attempts", int64(r.MaxAttempts), 0, MaxRetryAttempts)
		for i, o := range r.On {
			if !slices.Contains(RetryableOutcomes, o) {
				v.add(fmt.Sprintf("%s.retry.on[%d]", f, i), "%q is not retryable; one of %s (policy refusals such as terminated:revoked never retry)", o, strings.Join(RetryableOutcomes, ", "))
			}
		}
		if r.Backoff < 0 || r.Backoff.D() > time.Hour {
			v.add(f+".retry.backoff", "must be between 0s and 1h")
		}
		if r.MaxBackoff < 0 || r.MaxBackoff.D() > 24*time.Hour {
			v.add(f+".retry.max_backoff", "must be between 0s and 24h")
		} else if r.MaxBackoff > 0 && r.MaxBackoff < r.Backoff {
			v.add(f+".retry.max_backoff", "must not be below retry.backoff")
		}
	}
}

func validMethod(m string) bool {
	switch strings.ToUpper(m) {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// Defaults applied by normalize when a field is left out.
const (
	DefaultMaxRedirects     = 5
	DefaultMaxResponseBytes = 10 << 20
	DefaultConnectMs        = 5000
	DefaultHeaderMs         = 10000
	DefaultTotalMs          = 30000
	DefaultTenantWeight     = 1
)

// normalize fills defaults and puts order-free lists in a canonical order,
// so that bundles meaning the same thing have the same digest.
func (b *Bundle) normalize() {
	if b.Intents == nil {
		b.Intents = map[string]string{}
	}
	for _, p := range b.Profiles {
		e := &p.Egress
		if e.Allow == nil {
			e.Allow = []AllowRule{}
		}
		for i := range e.Allow {
			r := &e.Allow[i]
			r.Host, _ = NormalizeHostPattern(r.Host)
			sort.Ints(r.Ports)
			r.Ports = dedupe(r.Ports)
			for j := range r.Methods {
				r.Methods[j] = strings.ToUpper(r.Methods[j])
			}
			sort.Strings(r.Methods)
			r.Methods = dedupe(r.Methods)
			if r.Rate != nil && r.Rate.Burst == 0 {
				r.Rate.Burst = max(1, int(r.Rate.PerSecond))
			}
		}
		if e.MaxRedirects == nil {
			n := DefaultMaxRedirects
			e.MaxRedirects = &n
		}
		if e.MaxResponseBytes == 0 {
			e.MaxResponseBytes = DefaultMaxResponseBytes
		}
		if e.Timeouts.ConnectMs == 0 {
			e.Timeouts.ConnectMs = DefaultConnectMs
		}
		if e.Timeouts.HeaderMs == 0 {
			e.Timeouts.HeaderMs = DefaultHeaderMs
		}
		if e.Timeouts.TotalMs == 0 {
			e.Timeouts.TotalMs = DefaultTotalMs
		}
		if r := p.Retry; r != nil {
			// A retry section, once written, is stored complete.
			*r = p.RetryPolicy()
			on := append([]string{}, r.On...) // never nil: [] means retry nothing
			sort.Strings(on)
			r.On = dedupe(on)
		}
	}
	for _, t := range b.Tenants {
		sort.Strings(t.Profiles)
		t.Profiles = dedupe(t.Profiles)
		if len(t.Environments) > 0 {
			sort.Strings(t.Environments)
			t.Environments = dedupe(t.Environments)
		}
		if t.Weight == 0 {
			t.Weight = DefaultTenantWeight
		}
	}
	deny := make([]string, 0, len(b.Deny))
	for _, d := range b.Deny {
		n, _ := normalizeDenyEntry(d)
		deny = append(deny, n)
	}
	sort.Strings(deny)
	b.Deny = dedupe(deny)
}

func dedupe[T comparable](s []T) []T {
	if len(s) < 2 {
		return s
	}
	out := s[:1]
	for _, x := range s[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ValidateDenyEntry checks one global deny entry: a host, a *.wildcard or
// a CIDR prefix.
func ValidateDenyEntry(s string) error {
	_, err := normalizeDenyEntry(s)
	return err
}

func normalizeDenyEntry(s string) (string, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("not a CIDR prefix: %q", s)
		}
		return p.Masked().String(), nil
	}
	return NormalizeHostPattern(s)
}

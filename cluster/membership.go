package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// Meta is what a node gossips about itself. It must stay under
// memberlist's 512-byte limit.
type Meta struct {
	ID      string `msgpack:"id"`
	Raft    string `msgpack:"raft"` // cluster port: Raft and internal calls
	API     string `msgpack:"api"`
	Version string `msgpack:"v"`
	// Load, refreshed while the node runs.
	Running int64  `msgpack:"run"`
	Waiting int64  `msgpack:"wait"`
	Slots   int    `msgpack:"slots"`
	Applied uint64 `msgpack:"applied"`
	// Leaving is set just before a graceful leave, so that peers tell
	// "left" from "dead" (memberlist's leave notice does not say).
	Leaving bool `msgpack:"leaving,omitempty"`
}

// Free is how many slots the node had free when it last gossiped.
func (m Meta) Free() int64 {
	return int64(m.Slots) - m.Running - m.Waiting
}

// Member states.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Member is a node as gossip knows it.
type Member struct {
	Meta
	Gossip string    // gossip address
	State  string    // alive, suspect, dead or left
	Since  time.Time // when it entered State (dead, left) or was first seen
}

// MembershipConfig starts gossip.
type MembershipConfig struct {
	Name      string // the node id
	Bind      string // HOST:PORT for UDP and TCP gossip
	Advertise string // optional; HOST:PORT peers reach
	Secret    Secret
	Meta      Meta
	Logger    *slog.Logger
	// Tune adjusts memberlist's configuration (tests).
	Tune func(*memberlist.Config)
}

// Membership is a node's gossip: who is in the cluster, in what state,
// with what metadata.
type Membership struct {
	ml  *memberlist.Memberlist
	log *slog.Logger

	// addr is the advertised gossip address, read once at start: the
	// local node's record is rewritten under memberlist's own lock by
	// every metadata broadcast.
	addr string

	mu      sync.Mutex
	local   Meta
	members map[string]*Member
	changed chan struct{}
}

// StartMembership starts gossip on cfg.Bind. It joins no one: see Join.
func StartMembership(cfg MembershipConfig) (*Membership, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.Bind, err)
	}
	m := &Membership{log: cfg.Logger.With("component", "gossip"), local: cfg.Meta, members: map[string]*Member{}, changed: make(chan struct{}, 1)}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if cfg.Advertise != "" {
		ah, ap, err := net.SplitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("gossip advertise address %q: %w", cfg.Advertise, err)
		}
		mc.AdvertiseAddr = ah
		if mc.AdvertisePort, err = strconv.Atoi(ap); err != nil {
			return nil, fmt.Errorf("gossip advertise address %q: %w", cfg.Advertise, err)
		}
	}
	// Faster failure detection than memberlist's LAN defaults: a dead
	// node is declared in about three seconds.
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.PushPullInterval = 15 * time.Second
	mc.GossipInterval = 100 * time.Millisecond
	mc.SecretKey = cfg.Secret.GossipKey()
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Label = "leash"
	mc.Delegate = (*delegate)(m)
	mc.Events = (*events)(m)
	mc.Logger = log.New(gossipLogWriter{m.log}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: mc.Logger})
	if err != nil {
		return nil, fmt.Errorf("listen for gossip on %s: %w", cfg.Bind, err)
	}
	if port == 0 {
		port = nt.GetAutoBindPort()
		mc.BindPort = port
		if mc.AdvertisePort == 0 {
			mc.AdvertisePort = port
		}
	}
	var local *net.TCPAddr
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		local = &net.TCPAddr{IP: ip}
	}
	mc.Transport = &boundTransport{NetTransport: nt, local: local}
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		nt.Shutdown()
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	m.ml = ml
	m.addr = ml.LocalNode().Address()
	return m, nil
}

// Addr is the advertised gossip address.
func (m *Membership) Addr() string { return m.addr }

// Join contacts existing members until one answers or ctx ends. A
// member that does not hold the same secret never answers.
func (m *Membership) Join(ctx context.Context, addrs []string) error {
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		n, err := m.ml.Join(addrs)
		if n > 0 {
			return struct{}{}, nil
		}
		if err != nil {
			// memberlist's multi-errors span lines; keep one.
			last = errors.New(strings.Join(strings.Fields(err.Error()), " "))
		} else {
			last = errors.New("no member answered")
		}
		return struct{}{}, last
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: 2 * time.Second,
	}), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return fmt.Errorf("join %v: no member answered (is the cluster secret the same on both nodes?): %w", addrs, errors.Join(last, ctx.Err()))
	}
	m.log.Info("joined the cluster", "via", addrs, "members", m.ml.NumMembers())
	return nil
}

// SetMeta changes this node's metadata; Broadcast spreads it.
func (m *Membership) SetMeta(fn func(*Meta)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(&m.local)
}

// Broadcast gossips this node's current metadata.
func (m *Membership) Broadcast(timeout time.Duration) error { return m.ml.UpdateNode(timeout) }

// Changed is signalled when a member joins, leaves, dies or changes.
func (m *Membership) Changed() <-chan struct{} { return m.changed }

// Members lists every member gossip knows of, dead and left ones included,
// sorted by id.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, *mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Forget drops a dead or left member from the table (after Raft has
// removed it).
func (m *Membership) Forget(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mem, ok := m.members[name]; ok && (mem.State == StateDead || mem.State == StateLeft) {
		delete(m.members, name)
	}
}

// Leave tells the cluster this node is leaving, and waits up to timeout
// for the message to spread.
func (m *Membership) Leave(timeout time.Duration) error {
	m.SetMeta(func(meta *Meta) { meta.Leaving = true })
	if err := m.ml.UpdateNode(timeout / 2); err != nil {
		m.log.Warn("announce leave", "err", err)
	}
	return m.ml.Leave(timeout / 2)
}

// Shutdown stops gossip without a leave message.
func (m *Membership) Shutdown() error { return m.ml.Shutdown() }

func (m *Membership) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *Membership) record(n *memberlist.Node, state string) {
	var meta Meta
	if len(n.Meta) > 0 {
		if err := msgpack.Unmarshal(n.Meta, &meta); err != nil {
			m.log.Warn("bad member metadata", "member", n.Name, "err", err)
		}
	}
	if meta.ID == "" {
		meta.ID = n.Name
	}
	m.mu.Lock()
	prev, ok := m.members[n.Name]
	mem := &Member{Meta: meta, Gossip: n.Address(), State: state, Since: time.Now()}
	if ok && prev.State == state {
		mem.Since = prev.Since
	}
	if state == StateDead || state == StateLeft {
		// Keep the last metadata a dead node had.
		if ok && len(n.Meta) == 0 {
			mem.Meta = prev.Meta
		}
	}
	m.members[n.Name] = mem
	m.mu.Unlock()
	if !ok || prev.State != state {
		m.log.Info("member "+state, "member", n.Name, "gossip", n.Address(), "raft", meta.Raft, "api", meta.API)
	}
	m.signal()
}

// events receives memberlist's notifications.
type events Membership

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Membership)(e).record(n, StateAlive) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Membership)(e).record(n, StateAlive) }
func (e *events) NotifyLeave(n *memberlist.Node) {
	m := (*Membership)(e)
	state := StateDead
	m.mu.Lock()
	if prev, ok := m.members[n.Name]; ok && prev.Leaving {
		state = StateLeft
	}
	m.mu.Unlock()
	m.record(n, state)
}

// delegate serves this node's metadata to memberlist.
type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	meta := d.local
	d.mu.Unlock()
	b, err := msgpack.Marshal(&meta)
	if err != nil || len(b) > limit {
		return nil
	}
	return b
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// boundTransport dials from the gossip address's IP, like the cluster
// port (see Listen).
type boundTransport struct {
	*memberlist.NetTransport
	local *net.TCPAddr
}

func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: t.local}
	return d.Dial("tcp", a.Addr)
}

// gossipLogWriter maps memberlist's "[LEVEL] memberlist: ..." lines to
// slog levels.
type gossipLogWriter struct{ log *slog.Logger }

func (w gossipLogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelDebug
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		level = slog.LevelWarn // a peer's failure, not ours
	case bytes.Contains(p, []byte("[WARN]")):
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

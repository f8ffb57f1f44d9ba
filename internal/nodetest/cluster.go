package nodetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leash-dev/leash/api"
)

// The cluster harness: N real nodes, each bound to its own loopback
// address (127.x.y.z all reach lo on Linux) so that packet filter rules
// between two addresses cut exactly those two nodes apart, while the
// test (connecting from 127.0.0.1) still reaches every node.

// ClusterOptions start a cluster.
type ClusterOptions struct {
	N      int
	Policy string
	// Args go to every node (timings: --dead-timeout, --write-timeout …).
	Args []string
	Env  []string
}

// Cluster is a set of nodes sharing a secret.
type Cluster struct {
	t      testing.TB
	opts   ClusterOptions
	Secret string
	Nodes  []*Node

	mu    sync.Mutex
	rules [][]string
}

var paused sync.Map // *Node → bool

// procMu guards Node.cmd and Node.done, which Restart replaces while
// load goroutines ask Running.
var procMu sync.Mutex

// StartCluster starts opts.N nodes: the first bootstraps, the others
// join it; it returns once every node is ready and the leader counts
// them all as members.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.N <= 0 {
		opts.N = 3
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	c := &Cluster{t: t, opts: opts, Secret: hex.EncodeToString(b)}
	t.Cleanup(c.Heal)
	c.Nodes = append(c.Nodes, c.start(Options{}))
	for i := 1; i < opts.N; i++ {
		c.Nodes = append(c.Nodes, c.Join(Options{}))
	}
	c.WaitMembers(30*time.Second, opts.N)
	return c
}

func (c *Cluster) start(o Options) *Node {
	c.t.Helper()
	if o.IP == "" {
		o.IP = RandomLoopbackIP()
	}
	if o.Policy == "" {
		o.Policy = c.opts.Policy
	}
	o.Args = append(append([]string{}, c.opts.Args...), o.Args...)
	o.Env = append(append([]string{"LEASH_CLUSTER_SECRET=" + c.Secret}, c.opts.Env...), o.Env...)
	return Start(c.t, o)
}

// Join starts a new node that joins through every live node's gossip
// address. Options.Env may override the secret (a later
// LEASH_CLUSTER_SECRET wins).
func (c *Cluster) Join(o Options) *Node {
	c.t.Helper()
	var addrs []string
	for _, n := range c.Live() {
		addrs = append(addrs, n.Gossip)
	}
	o.Args = append([]string{"--join", strings.Join(addrs, ",")}, o.Args...)
	return c.start(o)
}

// Add starts a new node, joins it and adds it to c.Nodes.
func (c *Cluster) Add(o Options) *Node {
	c.t.Helper()
	n := c.Join(o)
	c.Nodes = append(c.Nodes, n)
	return n
}

// RandomLoopbackIP is an address in 127.100.0.0–127.199.255.255, unlikely
// to be used by another test on the machine.
func RandomLoopbackIP() string {
	r := func(n int64) int64 {
		v, _ := rand.Int(rand.Reader, big.NewInt(n))
		return v.Int64()
	}
	return fmt.Sprintf("127.%d.%d.%d", 100+r(100), r(256), 1+r(254))
}

// freePortOn returns ip:port with the port free for TCP and UDP (gossip
// uses both) a moment ago.
func FreePortOn(t testing.TB, ip string) string {
	t.Helper()
	if ip == "" {
		return FreePort(t)
	}
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// ID is the node's id (from its data dir).
func (n *Node) ID() string {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "node.id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Running reports whether the process is up (paused counts as up).
func (n *Node) Running() bool {
	procMu.Lock()
	cmd, done := n.cmd, n.done
	procMu.Unlock()
	if cmd == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Exited waits up to timeout for the process to exit and returns its
// exit error and whether it exited.
func (n *Node) Exited(timeout time.Duration) (error, bool) {
	select {
	case <-n.done:
		return n.exitErr, true
	case <-time.After(timeout):
		return nil, false
	}
}

// Pause stops the process with SIGSTOP; Resume continues it.
func (n *Node) Pause() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		n.t.Fatal(err)
	}
	paused.Store(n, true)
	n.t.Cleanup(func() {
		if v, ok := paused.Load(n); ok && v.(bool) {
			_ = n.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
}

// Resume sends SIGCONT.
func (n *Node) Resume() {
	n.t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		n.t.Fatal(err)
	}
	paused.Store(n, false)
}

// Paused reports whether Pause was called without Resume.
func (n *Node) Paused() bool {
	v, ok := paused.Load(n)
	return ok && v.(bool)
}

// Wipe gives a stopped node a new, empty data dir (it comes back as a
// new member with a new id on Restart).
func (n *Node) Wipe() {
	n.t.Helper()
	if n.Running() {
		n.t.Fatal("wipe a running node")
	}
	n.DataDir = n.t.TempDir()
	n.opts.DataDir = n.DataDir
}

// IP is the loopback address the node binds.
func (n *Node) IP() string { return n.opts.IP }

// Live lists nodes whose process runs and is not paused.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() && !n.Paused() {
			out = append(out, n)
		}
	}
	return out
}

// View is GET /v1/cluster on n (digests included), or an error.
func (n *Node) View() (api.Cluster, error) {
	var cl api.Cluster
	st, b, err := n.Try("GET", "/v1/cluster?digest=1", n.Token, nil)
	if err != nil {
		return cl, err
	}
	if st != 200 {
		return cl, fmt.Errorf("GET /v1/cluster: %d %s", st, b)
	}
	return cl, json.Unmarshal(b, &cl)
}

// Leader waits until every live node names the same leader, and returns
// it. Nodes in skip are not asked (a partitioned minority).
func (c *Cluster) Leader(timeout time.Duration, skip ...*Node) *Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.agreedLeader(skip); l != nil {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no agreed leader after %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) agreedLeader(skip []*Node) *Node {
	leader := ""
	for _, n := range c.Live() {
		if contains(skip, n) {
			continue
		}
		var r api.Ready
		st, b, err := n.Try("GET", "/readyz", "", nil)
		if err != nil || json.Unmarshal(b, &r) != nil || r.Leader == "" {
			return nil
		}
		_ = st
		if leader != "" && r.Leader != leader {
			return nil
		}
		leader = r.Leader
	}
	for _, n := range c.Nodes {
		if n.ID() == leader && n.Running() && !contains(skip, n) {
			return n
		}
	}
	return nil
}

func contains(list []*Node, n *Node) bool {
	for _, m := range list {
		if m == n {
			return true
		}
	}
	return false
}

// WaitMembers waits until the leader lists want alive members, each a
// voter or non-voter of Raft.
func (c *Cluster) WaitMembers(timeout time.Duration, want int) api.Cluster {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last api.Cluster
	lastErr := "no agreed leader"
	for {
		if l := c.agreedLeader(nil); l != nil {
			cl, err := l.View()
			if err != nil {
				lastErr = err.Error()
			} else {
				last, lastErr = cl, ""
				k := 0
				for _, m := range cl.Members {
					if m.State == "alive" && m.Suffrage != "none" {
						k++
					}
				}
				if k == want && len(cl.Members) == want {
					return cl
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not reach %d members in %v: %+v %s", want, timeout, last, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Converged waits until every live node has applied the same index and
// has the same state digest, and returns them.
func (c *Cluster) Converged(timeout time.Duration) (uint64, string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var idx uint64
		digest := ""
		ok := true
		var seen []string
		for _, n := range c.Live() {
			cl, verr := n.View()
			if verr != nil {
				ok = false
				break
			}
			var self *api.Member
			for i := range cl.Members {
				if cl.Members[i].ID == cl.Node {
					self = &cl.Members[i]
				}
			}
			if self == nil {
				ok = false
				break
			}
			seen = append(seen, fmt.Sprintf("%s@%d:%s", self.ID, self.AppliedIndex, short(self.StateDigest)))
			if digest == "" {
				idx, digest = self.AppliedIndex, self.StateDigest
			} else if self.StateDigest != digest {
				ok = false
			}
		}
		last = strings.Join(seen, " ")
		if ok && digest != "" {
			return idx, digest
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nodes did not converge in %v: %s", timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func short(d string) string {
	if len(d) > 15 {
		return d[7:15]
	}
	return d
}

// RequirePacketFilter skips the test unless iptables can be used (root,
// iptables installed: `make test` installs it).
func RequirePacketFilter(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partitions need root (iptables)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("partitions need iptables: apt-get install iptables")
	}
}

// Partition cuts the groups apart: packets between nodes of different
// groups are dropped (both ways); each group still reaches itself and
// the test reaches everyone. Heal undoes it (also at cleanup).
func (c *Cluster) Partition(groups ...[]*Node) {
	c.t.Helper()
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					c.drop(a.IP(), b.IP())
					c.drop(b.IP(), a.IP())
				}
			}
		}
	}
}

func (c *Cluster) drop(src, dst string) {
	c.t.Helper()
	rule := []string{"INPUT", "-s", src, "-d", dst, "-j", "DROP", "-m", "comment", "--comment", fmt.Sprintf("leash-test-%d", os.Getpid())}
	if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
		c.t.Fatalf("iptables: %v: %s", err, out)
	}
	c.mu.Lock()
	c.rules = append(c.rules, rule)
	c.mu.Unlock()
}

// Heal removes every rule Partition added.
func (c *Cluster) Heal() {
	c.mu.Lock()
	rules := c.rules
	c.rules = nil
	c.mu.Unlock()
	for _, rule := range rules {
		if out, err := exec.Command("iptables", append([]string{"-D"}, rule...)...).CombinedOutput(); err != nil {
			c.t.Errorf("iptables -D: %v: %s", err, out)
		}
	}
}

// Try sends a request like Do but returns transport errors instead of
// failing the test (nodes may be down on purpose).
func (n *Node) Try(method, path, token string, body any, hdr ...string) (int, []byte, error) {
	r, err := n.Request(10*time.Second, method, path, token, body, hdr...)
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Body, nil
}

// Response is an answer of Request.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Request sends a request with a timeout; body is nil, []byte, string or
// a value sent as JSON.
func (n *Node) Request(timeout time.Duration, method, path, token string, body any, hdr ...string) (*Response, error) {
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL()+path, rd)
	if err != nil {
		return nil, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := clusterClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: out}, nil
}

var clusterClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}

package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func secret(t *testing.T, s string) Secret {
	t.Helper()
	sec, err := ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadSecret(dir, "", "", false); err == nil || !strings.Contains(err.Error(), "cluster.secret") {
		t.Fatalf("joining without a secret: %v", err)
	}
	s1, err := LoadSecret(dir, "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", st, err)
	}
	s2, err := LoadSecret(dir, "", "", false)
	if err != nil || string(s1.GossipKey()) != string(s2.GossipKey()) {
		t.Fatalf("reload: %v", err)
	}
	if _, err := LoadSecret(dir, "", "short", false); err == nil {
		t.Fatal("short secret accepted")
	}
	env := strings.Repeat("e", 40)
	s3, err := LoadSecret(dir, "", env, false)
	if err != nil || string(s3.GossipKey()) == string(s1.GossipKey()) {
		t.Fatalf("env secret: %v", err)
	}
	if s3.String() != "cluster-secret(redacted)" || strings.Contains(s3.String(), env) {
		t.Fatal("secret printed")
	}
	if len(s3.GossipKey()) != 32 {
		t.Fatal("gossip key is not AES-256")
	}
}

// pair opens a mux for secret a and dials it with secret b.
func TestTransportNeedsTheSecret(t *testing.T) {
	good := secret(t, strings.Repeat("a", 40))
	bad := secret(t, strings.Repeat("b", 40))
	srv, err := Listen("127.0.0.1:0", "", good, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Raft().Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	for name, tc := range map[string]struct {
		s  Secret
		ok bool
	}{"same secret": {good, true}, "other secret": {bad, false}} {
		t.Run(name, func(t *testing.T) {
			cli, err := Listen("127.0.0.1:0", "", tc.s, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			c, err := cli.Raft().Dial(raft.ServerAddress(srvAddr(srv)), 2*time.Second)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				_, err = c.Write([]byte("ping"))
				if err == nil {
					buf := make([]byte, 4)
					_, err = io.ReadFull(c, buf)
				}
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	t.Run("a self-made certificate", func(t *testing.T) {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		conf := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", srvAddr(srv), conf)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write([]byte{typeRaft, 'x'})
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil {
			t.Fatal("a peer without the secret got an answer")
		}
	})
	t.Run("plain tcp", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", srvAddr(srv), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(6 * time.Second))
		_, _ = c.Write([]byte("RAFT hello\n"))
		if n, err := c.Read(make([]byte, 64)); err == nil && n > 0 {
			// a TLS alert is fine; raft data is not
			t.Logf("server answered %d bytes (a TLS alert)", n)
		}
	})
}

func srvAddr(m *Mux) string { return m.Addr() }

func TestMembershipSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := secret(t, strings.Repeat("a", 40))
	start := func(name string, s Secret) *Membership {
		m, err := StartMembership(MembershipConfig{Name: name, Bind: freeAddr(t), Secret: s, Meta: Meta{ID: name, Raft: "r-" + name, Slots: 2}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		return m
	}
	a := start("a", good)
	b := start("b", good)
	if err := b.Join(ctx, []string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return len(a.Members()) == 2 })
	for _, m := range a.Members() {
		if m.State != StateAlive || m.Raft != "r-"+m.ID || m.Slots != 2 {
			t.Fatalf("member %+v", m)
		}
	}
	b.SetMeta(func(m *Meta) { m.Running = 2 })
	if err := b.Broadcast(time.Second); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		for _, m := range a.Members() {
			if m.ID == "b" && m.Running == 2 && m.Free() == 0 {
				return true
			}
		}
		return false
	})
	c := start("c", secret(t, strings.Repeat("c", 40)))
	jctx, jcancel := context.WithTimeout(ctx, time.Second)
	defer jcancel()
	if err := c.Join(jctx, []string{a.Addr()}); err == nil {
		t.Fatal("a node with another secret joined")
	}
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		for _, m := range a.Members() {
			if m.ID == "b" && m.State == StateLeft {
				return true
			}
		}
		return false
	})
}

func freeAddr(t *testing.T) string {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
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

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPlan(t *testing.T) {
	now := time.Unix(1000, 0)
	alive := func(id string, applied uint64) Member {
		return Member{Meta: Meta{ID: id, Raft: "r-" + id, Applied: applied}, State: StateAlive}
	}
	gone := func(id, state string, ago time.Duration) Member {
		return Member{Meta: Meta{ID: id, Raft: "r-" + id}, State: state, Since: now.Add(-ago)}
	}
	voter := func(id string) Server { return Server{ID: id, Addr: "r-" + id, Voter: true} }
	nonvoter := func(id string) Server { return Server{ID: id, Addr: "r-" + id} }
	cases := map[string]struct {
		servers []Server
		members []Member
		voters  int
		absent  map[string]time.Time
		want    []string
	}{
		"newcomer joins as non-voter": {
			servers: []Server{voter("a")}, members: []Member{alive("a", 100), alive("b", 0)}, voters: 3,
			want: []string{"add_nonvoter b"},
		},
		"caught-up non-voter is promoted": {
			servers: []Server{voter("a"), nonvoter("b")}, members: []Member{alive("a", 100), alive("b", 90)}, voters: 3,
			want: []string{"promote b"},
		},
		"lagging non-voter waits": {
			servers: []Server{voter("a"), nonvoter("b")}, members: []Member{alive("a", 1000), alive("b", 10)}, voters: 3,
		},
		"beyond the voter count nodes stay non-voters": {
			servers: []Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: []Member{alive("a", 1), alive("b", 1), alive("c", 1), alive("d", 1), alive("e", 1)}, voters: 3,
			want: []string{"add_nonvoter e"},
		},
		"five voters": {
			servers: []Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: []Member{alive("a", 1), alive("b", 1), alive("c", 1), alive("d", 100)}, voters: 5,
			want: []string{"promote d"},
		},
		"left node removed at once": {
			servers: []Server{voter("a"), voter("b"), voter("c")},
			members: []Member{alive("a", 1), alive("b", 1), gone("c", StateLeft, 0)}, voters: 3,
			want: []string{"remove c"},
		},
		"dead node kept before the timeout": {
			servers: []Server{voter("a"), voter("b"), voter("c")},
			members: []Member{alive("a", 1), alive("b", 1), gone("c", StateDead, 5*time.Second)}, voters: 3,
		},
		"dead node removed after the timeout": {
			servers: []Server{voter("a"), voter("b"), voter("c")},
			members: []Member{alive("a", 1), alive("b", 1), gone("c", StateDead, 11*time.Second)}, voters: 3,
			want: []string{"remove c"},
		},
		"dead voter replaced by a non-voter": {
			servers: []Server{voter("a"), voter("b"), voter("c"), nonvoter("d")},
			members: []Member{alive("a", 1), alive("b", 1), gone("c", StateDead, time.Minute), alive("d", 100)}, voters: 3,
			want: []string{"remove c", "promote d"},
		},
		"never below a quorum of the voter count": {
			servers: []Server{voter("a"), voter("b")},
			members: []Member{alive("a", 1), gone("b", StateDead, time.Minute)}, voters: 3,
		},
		"a minority of dead voters is removed": {
			servers: []Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: []Member{alive("a", 1), alive("b", 1), alive("c", 1), gone("d", StateDead, time.Minute), gone("e", StateDead, time.Minute)}, voters: 5,
			want: []string{"remove d", "remove e"},
		},
		"never a majority of voters at once": {
			servers: []Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")},
			members: []Member{alive("a", 1), alive("b", 1), gone("c", StateDead, time.Minute), gone("d", StateDead, time.Minute), gone("e", StateDead, time.Minute)}, voters: 3,
			want: []string{"remove c", "remove d"},
		},
		"dead non-voters always go": {
			servers: []Server{voter("a"), voter("b"), nonvoter("c")},
			members: []Member{alive("a", 1), alive("b", 1), gone("c", StateDead, time.Minute)}, voters: 3,
			want: []string{"remove c"},
		},
		"unknown to gossip counts as dead": {
			servers: []Server{voter("a"), voter("b"), voter("c")},
			members: []Member{alive("a", 1), alive("b", 1)}, voters: 3,
			absent: map[string]time.Time{"c": now.Add(-time.Minute)},
			want:   []string{"remove c"},
		},
		"the leader never removes itself": {
			servers: []Server{voter("a"), voter("b"), voter("c")},
			members: []Member{gone("a", StateLeft, time.Minute), alive("b", 1), alive("c", 1)}, voters: 3,
		},
		"a voter back on a new address": {
			servers: []Server{voter("a"), {ID: "b", Addr: "old", Voter: true}},
			members: []Member{alive("a", 1), alive("b", 1)}, voters: 3,
			want: []string{"promote b"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			acts := Plan(PlanInput{Self: "a", Servers: tc.servers, Members: tc.members, VoterCount: tc.voters,
				DeadTimeout: 10 * time.Second, Now: now, Absent: tc.absent, LeaderApplied: 100})
			var got []string
			for _, a := range acts {
				k := a.Kind
				if k == ActAddNonvoter {
					k = "add_nonvoter"
				}
				got = append(got, k+" "+a.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}

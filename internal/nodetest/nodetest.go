// Package nodetest runs real leash processes for end-to-end tests and
// benchmarks: it builds the binary once, starts nodes on free loopback
// ports with their own data dirs, and stops, kills or restarts them.
package nodetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds bin/leash (with the race detector when the test binary
// has it) into a temp dir once per process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "leash-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "leash")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/leash")
		cmd := exec.Command("go", args...)
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePort returns a loopback address with a port that was free a moment
// ago.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Options start a node.
type Options struct {
	DataDir    string // default: a new temp dir
	Policy     string // --policy
	AdminToken string // LEASH_ADMIN_TOKEN; default: a fixed test token
	Args       []string
	Env        []string
	// IP is the loopback address the node binds (cluster harness: one
	// per node, so packet filters can cut nodes apart); default 127.0.0.1.
	IP string
	// NoWait returns from Start once the process runs, before /readyz.
	NoWait bool
	// Binary runs another leash binary than this tree's (a benchmark
	// comparing two builds).
	Binary string
}

// Node is a running (or stopped) leash process.
type Node struct {
	t       testing.TB
	opts    Options
	API     string // host:port
	Raft    string
	Gossip  string
	DataDir string
	Token   string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	logs    *syncBuffer
	logFile *os.File
}

// TestToken is the admin token nodes get unless Options name another.
const TestToken = "test-admin-token-0123456789abcdef"

// Start starts a node and waits until /readyz answers 200.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.AdminToken == "" {
		opts.AdminToken = TestToken
	}
	n := &Node{t: t, opts: opts, API: FreePortOn(t, opts.IP), Raft: FreePortOn(t, opts.IP), Gossip: FreePortOn(t, opts.IP), DataDir: opts.DataDir, Token: opts.AdminToken}
	n.start()
	t.Cleanup(func() { n.Kill() })
	return n
}

func (n *Node) start() {
	t := n.t
	t.Helper()
	args := []string{"serve", "--addr", n.API, "--raft-addr", n.Raft, "--gossip-addr", n.Gossip, "--data", n.DataDir,
		"--engine", filepath.Join(RepoRoot(), "build", "engine", "engine.wasm"), "--log-level", "debug"}
	if n.opts.Policy != "" {
		args = append(args, "--policy", n.opts.Policy)
	}
	args = append(args, n.opts.Args...)
	bin := n.opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "LEASH_ADMIN_TOKEN="+n.opts.AdminToken)
	cmd.Env = append(cmd.Env, n.opts.Env...)
	n.logs = &syncBuffer{}
	f, err := os.OpenFile(filepath.Join(n.DataDir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	n.logFile = f
	cmd.Stdout = io.MultiWriter(n.logs, f)
	cmd.Stderr = io.MultiWriter(n.logs, f)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	procMu.Lock()
	n.cmd = cmd
	done := make(chan struct{})
	n.done = done
	procMu.Unlock()
	go func() {
		n.exitErr = cmd.Wait()
		f.Close()
		close(done)
	}()
	if !n.opts.NoWait {
		n.WaitReady(60 * time.Second)
	}
}

// WaitReady waits until /readyz answers 200, failing the test if the
// process exits or the timeout passes.
func (n *Node) WaitReady(timeout time.Duration) {
	t := n.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + n.API + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-n.done:
			t.Fatalf("node exited before it was ready: %v\n%s", n.exitErr, n.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready after %v\n%s", timeout, n.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the API base URL.
func (n *Node) URL() string { return "http://" + n.API }

// PID is the node process's id (0 before it starts).
func (n *Node) PID() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Logs is everything the node wrote so far.
func (n *Node) Logs() string { return n.logs.String() }

// Stop sends SIGTERM and waits for the process to exit; it returns the
// exit error (nil for status 0).
func (n *Node) Stop(timeout time.Duration) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	select {
	case <-n.done:
		return n.exitErr
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		n.reportRace()
		return n.exitErr
	case <-time.After(timeout):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("node did not stop within %v", timeout)
	}
}

// Kill sends SIGKILL (kill -9) and waits.
func (n *Node) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Kill()
	<-n.done
}

// Restart starts the node again on the same data dir and ports.
func (n *Node) Restart() {
	n.t.Helper()
	n.start()
}

// Do sends a request (see Request) and fails the test if it cannot; it
// returns the status and the body.
func (n *Node) Do(method, path, token string, body any, hdr ...string) (int, []byte) {
	n.t.Helper()
	resp, err := n.Request(5*time.Minute, method, path, token, body, hdr...)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.Status, resp.Body
}

// JSON is Do that decodes the answer into out and fails the test unless
// the status is want.
func (n *Node) JSON(method, path, token string, body any, want int, out any) {
	n.t.Helper()
	status, b := n.Do(method, path, token, body)
	if status != want {
		n.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			n.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// TryJSON is JSON that reports failures (including a dead node) as an
// error instead of failing the test.
func (n *Node) TryJSON(method, path, token string, body any, want int, out any) error {
	resp, err := n.Request(5*time.Minute, method, path, token, body)
	if err != nil {
		return err
	}
	if resp.Status != want {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.Status, resp.Body)
	}
	if out != nil {
		return json.Unmarshal(resp.Body, out)
	}
	return nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// raceExitCode is the status a race-built binary exits with when the race
// detector found a race.
const raceExitCode = 66

// reportRace puts the race detector's report in the test log when the
// node exited because of a race, so that a CI failure says where.
func (n *Node) reportRace() {
	var ee *exec.ExitError
	if !errors.As(n.exitErr, &ee) || ee.ExitCode() != raceExitCode {
		return
	}
	logs := n.logs.String()
	if i := strings.Index(logs, "WARNING: DATA RACE"); i >= 0 {
		end := min(len(logs), i+16<<10)
		n.t.Logf("the node exited with a data race:\n%s", logs[i:end])
	}
}

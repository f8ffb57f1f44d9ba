// Package cluster is what makes identical leash nodes one mesh: the cluster
// secret and what is derived from it, the authenticated transport that
// carries Raft and internal node-to-node calls, gossip membership
// (hashicorp/memberlist) with each node's metadata, and the leader's plan
// for Raft voters.
//
// # Trust
//
// Every node holds the same cluster secret. From it each node derives, with
// HKDF-SHA256 and distinct labels:
//
//   - the AES-256 key of memberlist's keyring, so gossip (UDP and TCP) is
//     encrypted and authenticated, and a node without the secret cannot join;
//   - one Ed25519 key and a self-signed certificate for that key, presented
//     by both ends of every Raft and internal connection (mutual TLS 1.3).
//     A peer is accepted only if its certificate carries exactly that
//     public key, which only a holder of the secret can derive.
//
// The secret is the unit of trust: a node that has it is a member. Rotating
// it means restarting every node with the new one.
//
// # Concurrency
//
// [Mux], [Membership] and [Client] are safe for concurrent use.
package cluster

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SecretFile is the name of the secret in a node's data dir.
const SecretFile = "cluster.secret"

// MinSecretLen is the shortest secret accepted, in characters.
const MinSecretLen = 32

// Errors of LoadSecret.
var (
	ErrNoSecret   = errors.New("no cluster secret")
	ErrWeakSecret = errors.New("cluster secret is too short")
)

// Secret is a cluster's shared secret. Its String never shows it.
type Secret struct {
	raw []byte
}

func (s Secret) String() string { return "cluster-secret(redacted)" }

// ParseSecret checks a secret's text form (surrounding space ignored).
func ParseSecret(text string) (Secret, error) {
	t := strings.TrimSpace(text)
	if len(t) < MinSecretLen {
		return Secret{}, fmt.Errorf("%w: %d characters, at least %d", ErrWeakSecret, len(t), MinSecretLen)
	}
	return Secret{raw: []byte(t)}, nil
}

// NewSecretText returns a new random secret in its text form (64 hex
// digits).
func NewSecretText() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// LoadSecret finds the node's secret: the text in env (LEASH_CLUSTER_SECRET)
// first, then file (--secret-file), then DATA/cluster.secret. When none is
// there and create is set (a node that bootstraps a new cluster), a new
// secret is written to DATA/cluster.secret (mode 0600).
func LoadSecret(dataDir, file, env string, create bool) (Secret, error) {
	if env != "" {
		return ParseSecret(env)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return Secret{}, fmt.Errorf("read cluster secret: %w", err)
		}
		return ParseSecret(string(b))
	}
	path := filepath.Join(dataDir, SecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return ParseSecret(string(b))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Secret{}, fmt.Errorf("read cluster secret: %w", err)
	}
	if !create {
		return Secret{}, fmt.Errorf("%w: copy %s from a member's data dir into %s, or set --secret-file or LEASH_CLUSTER_SECRET", ErrNoSecret, SecretFile, dataDir)
	}
	text := NewSecretText()
	if err := writeFile0600(path, []byte(text+"\n")); err != nil {
		return Secret{}, err
	}
	return ParseSecret(text)
}

func writeFile0600(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// derive expands the secret for one use.
func (s Secret) derive(label string, n int) []byte {
	if len(s.raw) == 0 {
		panic("cluster: use of an empty secret")
	}
	k, err := hkdf.Key(sha256.New, s.raw, []byte("leash cluster v1"), label, n)
	if err != nil {
		panic(err)
	}
	return k
}

// GossipKey is memberlist's AES-256 keyring key.
func (s Secret) GossipKey() []byte { return s.derive("gossip aes-256", 32) }

// transportKey is the Ed25519 key every member presents in TLS.
func (s Secret) transportKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(s.derive("transport ed25519", ed25519.SeedSize))
}

// TLSConfig is the mutual TLS 1.3 configuration of the node-to-node
// transport, for both the listening and the dialing side.
func (s Secret) TLSConfig() (*tls.Config, error) {
	key := s.transportKey()
	pub := key.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "leash cluster member"},
		DNSNames:     []string{"leash.cluster"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("transport certificate: %w", err)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer sent no certificate")
		}
		pk, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
		if !ok || !pk.Equal(pub) {
			return errors.New("peer does not hold the cluster secret")
		}
		return nil
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
		// The chain is not verified against roots: the peer is accepted
		// by its key alone, in VerifyConnection, on every handshake
		// (resumed ones too).
		InsecureSkipVerify:     true,
		VerifyConnection:       verify,
		ServerName:             "leash.cluster",
		SessionTicketsDisabled: true,
	}, nil
}

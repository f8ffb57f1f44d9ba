package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"crypto/x509"
)

// identity is what a node keeps in its data dir: its id, its keys and
// the admin token. Everything is created on first start with mode 0600.
type identity struct {
	NodeID        string
	LeaseKey      ed25519.PrivateKey // signs lease tokens
	ReceiptKey    ed25519.PrivateKey // signs receipts
	CheckpointKey ed25519.PrivateKey // signs ledger checkpoints
	AdminToken    string
}

// loadIdentity reads or creates the identity files in dir. A token in
// envToken (LEASH_ADMIN_TOKEN) overrides the file and is not written.
func loadIdentity(dir, envToken string) (*identity, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	id := &identity{}
	var err error
	if id.NodeID, err = readOrCreate(filepath.Join(dir, "node.id"), func() ([]byte, error) {
		return []byte("node-" + randomID(6) + "\n"), nil
	}); err != nil {
		return nil, err
	}
	id.NodeID = strings.TrimSpace(id.NodeID)
	if id.LeaseKey, err = loadKey(filepath.Join(dir, "keys", "lease.pem")); err != nil {
		return nil, err
	}
	if id.ReceiptKey, err = loadKey(filepath.Join(dir, "keys", "receipt.pem")); err != nil {
		return nil, err
	}
	if id.CheckpointKey, err = loadKey(filepath.Join(dir, "keys", "checkpoint.pem")); err != nil {
		return nil, err
	}
	if envToken != "" {
		id.AdminToken = envToken
	} else {
		tok, err := readOrCreate(filepath.Join(dir, "admin.token"), func() ([]byte, error) {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
			return []byte(hex.EncodeToString(b) + "\n"), nil
		})
		if err != nil {
			return nil, err
		}
		id.AdminToken = strings.TrimSpace(tok)
	}
	if len(id.AdminToken) < 16 {
		return nil, errors.New("admin token is shorter than 16 characters")
	}
	return id, nil
}

// readOrCreate returns a file's contents, creating it (0600, atomically)
// with make() when it does not exist.
func readOrCreate(path string, make func() ([]byte, error)) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return string(b), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	b, err = make()
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b); err != nil {
		return "", err
	}
	return string(b), nil
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

func loadKey(path string) (ed25519.PrivateKey, error) {
	s, err := readOrCreate(path, func() ([]byte, error) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	})
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID is n random bytes in lower-case base32.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return idEncoding.EncodeToString(b)
}

// tokenEqual compares secrets in constant time.
func tokenEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

package leases

import (
	"errors"
	"net/http"
	"regexp"
	"testing"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
)

// passThrough is a node whose own mapping says it was asked.
type passThrough struct{ Node }

var errMapped = errors.New("mapped by the node")

func (passThrough) ProposeError(error) error { return errMapped }

// TestProposeError: a lease the state machine refuses for its
// environment answers as the policy lifecycle's endpoints do; anything
// else is the node's mapping.
func TestProposeError(t *testing.T) {
	s := New(Config{Node: passThrough{}})
	for code, status := range map[string]int{
		consensus.CodeUnknownPolicy: 0, // as before the move: the node's mapping
		consensus.CodeEnvNotAllowed: http.StatusForbidden,
		consensus.CodeUnknownEnv:    http.StatusBadRequest,
		consensus.CodeProfileFrozen: 0,
		consensus.CodeLeaseExists:   0,
	} {
		err := s.proposeError(&consensus.RefusedError{Code: code, Message: "refused"})
		if status == 0 {
			if !errors.Is(err, errMapped) {
				t.Errorf("%s: %v, want the node's mapping", code, err)
			}
			continue
		}
		ae, ok := api.AsError(err)
		if !ok || ae.Status != status || ae.Code != code {
			t.Errorf("%s: %v, want %d %s", code, err, status, code)
		}
	}
}

// TestNewID: lease ids are lse_ and 26 characters of lower-case base32,
// and do not repeat.
func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^lse_[a-z2-7]{26}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}

package lifecycle

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/leash-dev/leash/api"
	"github.com/leash-dev/leash/consensus"
	"github.com/leash-dev/leash/httpapi"
)

// TestRefusal: a lifecycle refusal (also one wrapped, as a forwarded
// write's is) answers with its own status and code; any other failure is
// left to the node's mapping.
func TestRefusal(t *testing.T) {
	for code, status := range map[string]int{
		consensus.CodeUnknownPolicy:  http.StatusNotFound,
		consensus.CodeGateNotPassed:  http.StatusConflict,
		consensus.CodePolicyConflict: http.StatusConflict,
		consensus.CodeEnvNotAllowed:  http.StatusForbidden,
		consensus.CodeInvalidPercent: http.StatusBadRequest,
	} {
		err := fmt.Errorf("forwarded: %w", &consensus.RefusedError{Code: code, Message: "m"})
		ae := refusal(err)
		if ae == nil || ae.Status != status || ae.Code != code || ae.Message != "m" {
			t.Errorf("%s: %+v, want %d", code, ae, status)
		}
	}
	for _, err := range []error{&consensus.RefusedError{Code: consensus.CodeLeaseNotFound}, consensus.ErrNoLeader, errors.New("x")} {
		if ae := refusal(err); ae != nil {
			t.Errorf("%v: %+v, want nil", err, ae)
		}
	}
}

// TestChangeArgs: only an admin overrides a gate, and only with a
// reason; a reason is bounded.
func TestChangeArgs(t *testing.T) {
	admin := &httpapi.Caller{Role: httpapi.Admin}
	operator := &httpapi.Caller{Role: httpapi.Operator, KeyID: "k"}
	long := string(make([]byte, maxPolicyReason+1))
	for _, tc := range []struct {
		a    changeArgs
		c    *httpapi.Caller
		code string
	}{
		{changeArgs{}, operator, ""},
		{changeArgs{override: true, reason: "hotfix"}, admin, ""},
		{changeArgs{override: true, reason: "hotfix"}, operator, api.CodeForbidden},
		{changeArgs{override: true}, admin, consensus.CodeReasonRequired},
		{changeArgs{reason: long}, admin, api.CodeBadRequest},
	} {
		err := tc.a.check(tc.c)
		got := ""
		if ae, ok := api.AsError(err); ok {
			got = ae.Code
		} else if err != nil {
			got = err.Error()
		}
		if got != tc.code {
			t.Errorf("%+v by %s: %q, want %q", tc.a, tc.c.Name(), got, tc.code)
		}
	}
}

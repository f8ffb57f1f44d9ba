// Command logger is a WASI task that logs through the leash host ABI with
// the guest package, then answers with the ABI version.
package main

import (
	"fmt"
	"net/http"
	"net/http/cgi"

	"github.com/leash-dev/leash/guest/leash"
)

func main() {
	_ = cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leash.Logf("handling %s %s", r.Method, r.URL.Path)
		_ = leash.Log(leash.Warn, "a warning from the guest")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "abi=%d\n", leash.ABIVersion())
	}))
}

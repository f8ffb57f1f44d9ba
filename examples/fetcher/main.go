// Command fetcher is a WASI task that fetches the URL in its FETCH_URL
// variable through the node's egress gateway (leash.Transport) and
// answers with what came back, or with the policy clause that refused it.
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"

	"github.com/leash-dev/leash/guest/leash"
)

func main() {
	client := &http.Client{Transport: leash.Transport{}}
	_ = cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		resp, err := client.Get(os.Getenv("FETCH_URL"))
		if err != nil {
			var fe *leash.FetchError
			if errors.As(err, &fe) {
				w.WriteHeader(http.StatusBadGateway)
				fmt.Fprintf(w, "refused: %s\n", fe.Clause)
				return
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "status %d: %s\n", resp.StatusCode, body)
	}))
}

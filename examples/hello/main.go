// Command hello is a leash WASI task written with net/http/cgi: leash runs
// it under the WAGI convention (CGI over WASI). Build it with
// GOOS=wasip1 GOARCH=wasm, or let `leash run examples/hello/` do it.
package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
)

func main() {
	err := cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello, %s, from a leash sandbox\n", name)
		if len(body) > 0 {
			fmt.Fprintf(w, "you sent %d bytes\n", len(body))
		}
	}))
	if err != nil {
		panic(err)
	}
}

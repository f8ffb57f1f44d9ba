// Command session is a WASI task that keeps a counter and notes in its
// session's KV with the guest package (docs/sessions.md). The request's
// query says what to do:
//
//	?op=incr&key=K          add 1 to the decimal counter under K; answer the new value
//	?op=get&key=K           the value, or 404
//	?op=put&key=K[&ttl=S]   store the request body
//	?op=delete&key=K
//	?op=list[&prefix=P]     the keys, one a line
//
// A refused call answers 409 with the error's code as the body.
package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"strconv"

	"github.com/leash-dev/leash/guest/leash"
)

func main() {
	_ = cgi.Serve(http.HandlerFunc(serve))
}

func serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	key := q.Get("key")
	w.Header().Set("Content-Type", "text/plain")
	fail := func(err error) {
		var ke *leash.KVError
		if errors.As(err, &ke) {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, ke.Code)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, err)
	}
	switch q.Get("op") {
	case "incr":
		v, _, err := leash.KVGet(key)
		if err != nil {
			fail(err)
			return
		}
		n, _ := strconv.Atoi(string(v))
		n++
		if err := leash.KVPut(key, []byte(strconv.Itoa(n)), nil); err != nil {
			fail(err)
			return
		}
		fmt.Fprint(w, n)
	case "get":
		v, ok, err := leash.KVGet(key)
		switch {
		case err != nil:
			fail(err)
		case !ok:
			w.WriteHeader(http.StatusNotFound)
		default:
			_, _ = w.Write(v)
		}
	case "put":
		body, _ := io.ReadAll(r.Body)
		var opts *leash.KVPutOptions
		if s := q.Get("ttl"); s != "" {
			ttl, _ := strconv.ParseInt(s, 10, 64)
			opts = &leash.KVPutOptions{TTLSeconds: ttl, Metadata: map[string]string{"by": "wasi"}}
		}
		if err := leash.KVPut(key, body, opts); err != nil {
			fail(err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "delete":
		if err := leash.KVDelete(key); err != nil {
			fail(err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case "list":
		l, err := leash.KVListKeys(leash.KVListOptions{Prefix: q.Get("prefix")})
		if err != nil {
			fail(err)
			return
		}
		for _, k := range l.Keys {
			fmt.Fprintln(w, k.Name)
		}
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, "unknown op")
	}
}

package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestStallWriterCutsOffAStalledReader: a streamed answer (an export, an
// event stream) to a client that stops reading ends once one write has
// waited the timeout, instead of holding the handler forever; a client
// that keeps reading, however long the stream, gets all of it.
func TestStallWriterCutsOffAStalledReader(t *testing.T) {
	const chunk = 64 << 10
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := NewStallWriter(w, 300*time.Millisecond)
		buf := make([]byte, chunk)
		total := 0
		for total < 1<<30 { // far more than any socket buffer
			n, err := sw.Write(buf)
			total += n
			if err != nil {
				done <- err
				return
			}
			if r.URL.Query().Get("n") != "" && total >= 8<<20 {
				done <- nil
				return
			}
		}
		done <- fmt.Errorf("wrote %d bytes to a client that reads nothing", total)
	}))
	defer srv.Close()

	t.Run("stalled", func(t *testing.T) {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /export HTTP/1.1\r\nHost: x\r\n\r\n")
		// Read nothing at all.
		select {
		case err := <-done:
			// The write fails with whatever the connection says: its
			// deadline passed.
			if err == nil {
				t.Fatal("the handler finished writing to a client that read nothing")
			}
		case <-time.After(2 * time.Minute):
			t.Fatal("a client that reads nothing held the stream open")
		}
	})

	t.Run("slow but steady", func(t *testing.T) {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /export?n=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := int64(0)
		buf := make([]byte, 256<<10)
		for {
			n, err := resp.Body.Read(buf)
			got += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", got, err)
			}
			time.Sleep(2 * time.Millisecond) // slower than the server, never stalled
		}
		if err := <-done; err != nil {
			t.Fatalf("a steady reader was cut off: %v", err)
		}
		if got < 8<<20 {
			t.Fatalf("got %d bytes", got)
		}
	})
}

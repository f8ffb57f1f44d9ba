package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/leash-dev/leash/weburl"
)

// Limits on what a task's request may put into the guest's environment.
const (
	maxEnvVars     = 256
	maxEnvValueLen = 32 << 10
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// wagiEnv builds the CGI/WAGI environment for a request: the task's own
// variables first, then the CGI variables, which a task cannot override.
// The result is sorted so that runs are reproducible.
func wagiEnv(req *Request, t *Task) ([][2]string, error) {
	env := map[string]string{}
	if len(t.Env) > maxEnvVars {
		return nil, fmt.Errorf("too many env variables: %d, at most %d", len(t.Env), maxEnvVars)
	}
	for k, v := range t.Env {
		if !envName.MatchString(k) {
			return nil, fmt.Errorf("env variable name %q is not [A-Za-z_][A-Za-z0-9_]*", k)
		}
		if len(v) > maxEnvValueLen || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env variable %q is too long or has a NUL byte", k)
		}
		env[k] = v
	}
	u, err := weburl.Parse(req.URL, "")
	if err != nil {
		return nil, fmt.Errorf("request url: %w", err)
	}
	port := u.Port
	if port == "" {
		port = "80"
		if u.Protocol == "https:" {
			port = "443"
		}
	}
	query := strings.TrimPrefix(u.Search, "?")
	env["GATEWAY_INTERFACE"] = "CGI/1.1"
	env["SERVER_SOFTWARE"] = "leash"
	env["SERVER_PROTOCOL"] = "HTTP/1.1"
	env["REQUEST_METHOD"] = req.Method
	env["SCRIPT_NAME"] = ""
	env["PATH_INFO"] = u.Pathname
	env["X_RAW_PATH_INFO"] = u.Pathname
	env["QUERY_STRING"] = query
	env["REQUEST_URI"] = u.Pathname + u.Search
	env["X_FULL_URL"] = u.Href
	env["X_MATCHED_ROUTE"] = "/..."
	env["SERVER_NAME"] = u.Hostname
	env["SERVER_PORT"] = port
	env["REMOTE_ADDR"] = "0.0.0.0"
	env["REMOTE_HOST"] = "0.0.0.0"
	env["CONTENT_LENGTH"] = strconv.Itoa(len(req.Body))
	if u.Protocol == "https:" {
		env["HTTPS"] = "on"
	}
	env["HTTP_HOST"] = u.Host
	for k, vs := range req.Headers {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		switch ck {
		case "Content-Type":
			env["CONTENT_TYPE"] = strings.Join(vs, ", ")
			continue
		case "Content-Length", "Host", "Authorization", "Proxy-Authorization":
			// Lengths and hosts come from the request itself; credentials
			// for leash never reach the guest.
			continue
		}
		name := "HTTP_" + strings.ToUpper(strings.ReplaceAll(ck, "-", "_"))
		if !envName.MatchString(name) {
			continue
		}
		env[name] = strings.Join(vs, ", ")
	}
	env["LEASH_TASK_ID"] = t.ID
	env["LEASH_ATTEMPT"] = strconv.Itoa(max(t.Attempt, 1))
	if t.IdempotencyKey != "" && len(t.IdempotencyKey) <= maxEnvValueLen && !strings.ContainsRune(t.IdempotencyKey, 0) {
		env["LEASH_IDEMPOTENCY_KEY"] = t.IdempotencyKey
	}
	if t.Traceparent != "" {
		env["LEASH_TRACEPARENT"] = t.Traceparent
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{k, env[k]}
	}
	return out, nil
}

var errNoHeaders = errors.New("no CGI header block")

// parseCGI reads a WAGI response from stdout: CGI header lines, a blank
// line, then the body. Status: sets the status (default 200, or 302 with a
// Location); other headers pass through. Output without a header block is
// taken as a text/plain body with status 200.
func parseCGI(out []byte) (*Response, error) {
	resp, err := parseCGIHeaders(out)
	if errors.Is(err, errNoHeaders) {
		return &Response{
			Status:  http.StatusOK,
			Headers: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:    out,
		}, nil
	}
	return resp, err
}

func parseCGIHeaders(out []byte) (*Response, error) {
	end, sep := bytes.Index(out, []byte("\r\n\r\n")), 4
	if i := bytes.Index(out, []byte("\n\n")); i >= 0 && (end < 0 || i < end) {
		end, sep = i, 2
	}
	if end < 0 {
		return nil, errNoHeaders
	}
	head := out[:end]
	// Every line of a header block is "Name: value".
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(bytes.Clone(head), "\r\n\r\n"...))))
	hdr, err := tp.ReadMIMEHeader()
	if err != nil || len(hdr) == 0 {
		return nil, errNoHeaders
	}
	resp := &Response{Status: http.StatusOK, Headers: http.Header{}, Body: out[end+sep:]}
	for k, vs := range hdr {
		switch k {
		case "Status":
			f := strings.Fields(vs[0])
			if len(f) == 0 {
				return nil, fmt.Errorf("invalid CGI response: empty Status header")
			}
			code, err := strconv.Atoi(f[0])
			if err != nil || code < 100 || code > 999 {
				return nil, fmt.Errorf("invalid CGI response: bad Status %q", vs[0])
			}
			resp.Status = code
		default:
			if !httpguts.ValidHeaderFieldName(k) {
				return nil, fmt.Errorf("invalid CGI response: bad header name %q", k)
			}
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					return nil, fmt.Errorf("invalid CGI response: bad value for header %q", k)
				}
				resp.Headers.Add(k, v)
			}
		}
	}
	if _, ok := hdr["Status"]; !ok && resp.Headers.Get("Location") != "" {
		resp.Status = http.StatusFound
	}
	return resp, nil
}

package cgi

import (
	"io"
	"strconv"
	"strings"

	"github.com/livecgi/livecgi/proto/control"
)

// Error codes of the "error" field of a JSON error answer.
const (
	ErrBadRequest  = "bad_request"        // 400: unknown query, bad or missing Host, bad Origin, a bad command body (413: too long; 431: Authorization too long)
	ErrCrossSite   = "cross_site"         // 403: Origin on another host than Host
	ErrHost        = "host_not_allowed"   // 403: Host (or Origin) not in allowed_hosts
	ErrMethod      = "method_not_allowed" // 405: not GET or HEAD (for ?command: not POST)
	ErrConfig      = "config"             // 500: the configuration file is unreadable or wrong
	ErrStateDir    = "state_dir"          // 500: no usable state directory
	ErrSupervisor  = "supervisor"         // 500/503: livecgid missing, failing or not answering
	ErrInternal    = "internal"           // 503: the stub's own deadline passed (a hung file system)
	ErrNoSocket    = "no_socket"          // 501: ?ws, but the web server gave nph-live.cgi a pipe, not the client's socket
	ErrNoUpgrade   = "no_upgrade"         // 501: ?ws without the Upgrade and Sec-WebSocket-* headers (not passed by the server)
	maxReasonBytes = 512
)

// Field is one response header.
type Field struct{ Name, Value string }

// Response is one complete CGI answer.
type Response struct {
	Status int
	Header []Field
	Body   []byte
	// HandedOver: the supervisor owns the client's connection and
	// answers on it; the stub writes nothing.
	HandedOver bool
}

// ErrorBody is the JSON document of every failure (control.ErrorJSON
// writes it).
type ErrorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// errorResponse answers status with {"error": code, "reason": reason}.
func errorResponse(status int, code, reason string) Response {
	if len(reason) > maxReasonBytes {
		reason = strings.ToValidUTF8(reason[:maxReasonBytes], "") + "..."
	}
	return jsonResponse(status, control.ErrorJSON(code, reason))
}

func jsonResponse(status int, body []byte) Response {
	return Response{
		Status: status,
		Header: []Field{
			{"Content-Type", "application/json"},
			{"Cache-Control", "no-store"},
		},
		Body: body,
	}
}

// readableBy lets a page on origin read an error answer: it adds
// Access-Control-Allow-Origin (never credentials), so that a page on another
// origin sees why it was refused instead of a bare network failure. An
// error grants nothing; other answers and origins that are not well formed
// are left alone.
func (r Response) readableBy(origin string) Response {
	if r.Status < 400 || origin == "" {
		return r
	}
	if _, _, err := ParseOrigin(origin); err != nil && origin != "null" {
		return r
	}
	r.Header = append(r.Header[:len(r.Header):len(r.Header)], Field{"Access-Control-Allow-Origin", origin})
	return r
}

// Get returns the value of the first header named name, or "".
func (r Response) Get(name string) string {
	for _, f := range r.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// WriteCGI writes r in CGI form: "Status:" first (busybox httpd only
// understands it as the first line), then the headers, Content-Length, a
// blank line and, unless head is true, the body. Lines end in CRLF because
// some servers copy them to the client as they are.
func (r Response) WriteCGI(w io.Writer, head bool) error {
	return r.write(w, head, "Status: ")
}

// WriteNPH writes r as an nph CGI must, a complete HTTP response: the
// server passes it to the client untouched (boa rc21 gives the client's
// socket itself), so it starts with an HTTP/1.1 status line and asks
// for the connection to be closed.
func (r Response) WriteNPH(w io.Writer, head bool) error {
	r.Header = append(r.Header[:len(r.Header):len(r.Header)], Field{"Connection", "close"})
	return r.write(w, head, "HTTP/1.1 ")
}

// Write writes r as WriteNPH does when nph is true, else as WriteCGI;
// nothing if the connection was handed over.
func (r Response) Write(w io.Writer, head, nph bool) error {
	switch {
	case r.HandedOver:
		return nil
	case nph:
		return r.WriteNPH(w, head)
	}
	return r.WriteCGI(w, head)
}

func (r Response) write(w io.Writer, head bool, first string) error {
	var b strings.Builder
	b.WriteString(first)
	b.WriteString(strconv.Itoa(r.Status))
	b.WriteByte(' ')
	b.WriteString(statusText(r.Status))
	b.WriteString("\r\n")
	for _, f := range r.Header {
		b.WriteString(f.Name)
		b.WriteString(": ")
		b.WriteString(f.Value)
		b.WriteString("\r\n")
	}
	b.WriteString("X-Content-Type-Options: nosniff\r\n")
	if r.Status != 304 {
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.Itoa(len(r.Body)))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	out := []byte(b.String())
	if !head && r.Status != 304 {
		out = append(out, r.Body...)
	}
	_, err := w.Write(out)
	return err
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 304:
		return "Not Modified"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 410:
		return "Gone"
	case 413:
		return "Content Too Large"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 503:
		return "Service Unavailable"
	}
	return "Status"
}

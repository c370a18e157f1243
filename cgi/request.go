package cgi

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Limits on what the stub accepts from the environment.
const (
	maxHost   = 262 // "[" + 45-byte IPv6 + "]" or a 253-byte name, plus ":65535"
	maxOrigin = 8 + maxHost
	maxQuery  = 256
)

// Request is the part of the CGI environment the stub looks at.
type Request struct {
	Method      string // REQUEST_METHOD; "" is taken as GET
	Host        string // HTTP_HOST as the browser sent it
	Origin      string // HTTP_ORIGIN; "" when the browser sent none
	HTTPS       bool   // HTTPS=on (or REQUEST_SCHEME=https)
	Query       string // QUERY_STRING
	IfNoneMatch string // HTTP_IF_NONE_MATCH
	// Where the stub is (for the same-port and poll transports).
	ScriptName     string // SCRIPT_NAME: the stub's URL path
	ScriptFilename string // SCRIPT_FILENAME: the stub's file (Main finds it when the server sets none, as boa)
	// A WebSocket upgrade through nph-live.cgi (nph.go).
	NPH        bool     // the stub runs under an nph- name: answers start with an HTTP status line
	Socket     *os.File // the web server's descriptor for the answer (stdout): the client's socket under boa rc21
	Upgrade    string   // HTTP_UPGRADE
	WSKey      string   // HTTP_SEC_WEBSOCKET_KEY
	WSVersion  string   // HTTP_SEC_WEBSOCKET_VERSION
	WSProtocol string   // HTTP_SEC_WEBSOCKET_PROTOCOL
	// For authentication (auth.go).
	Authorization  string   // HTTP_AUTHORIZATION (busybox httpd never passes it)
	RemoteUser     string   // REMOTE_USER, set by a server that authenticated the request
	RemoteAddr     string   // REMOTE_ADDR
	ServerSoftware string   // SERVER_SOFTWARE
	ServerPort     string   // SERVER_PORT
	Env            []string // the CGI variables, for auth_command (see CGIEnv)
	// For long polling (poll.go).
	SecFetchSite  string    // HTTP_SEC_FETCH_SITE, when the browser sent it
	ContentLength string    // CONTENT_LENGTH of a POST
	Body          io.Reader // a POST's body (stdin); nil for none
}

// RequestFromEnv reads a Request from a CGI environment (os.Getenv under a
// web server). It never fails: the values are checked where they are used.
// Query words that boa also passes as argv are ignored: QUERY_STRING says
// the same.
func RequestFromEnv(getenv func(string) string) Request {
	https := strings.EqualFold(getenv("HTTPS"), "on") || strings.EqualFold(getenv("REQUEST_SCHEME"), "https")
	return Request{
		Method:      getenv("REQUEST_METHOD"),
		Host:        getenv("HTTP_HOST"),
		Origin:      getenv("HTTP_ORIGIN"),
		HTTPS:       https,
		Query:       getenv("QUERY_STRING"),
		IfNoneMatch: getenv("HTTP_IF_NONE_MATCH"),

		ScriptName:     getenv("SCRIPT_NAME"),
		ScriptFilename: getenv("SCRIPT_FILENAME"),
		Upgrade:        getenv("HTTP_UPGRADE"),
		WSKey:          getenv("HTTP_SEC_WEBSOCKET_KEY"),
		WSVersion:      getenv("HTTP_SEC_WEBSOCKET_VERSION"),
		WSProtocol:     getenv("HTTP_SEC_WEBSOCKET_PROTOCOL"),

		Authorization:  getenv("HTTP_AUTHORIZATION"),
		RemoteUser:     getenv("REMOTE_USER"),
		RemoteAddr:     getenv("REMOTE_ADDR"),
		ServerSoftware: getenv("SERVER_SOFTWARE"),
		ServerPort:     getenv("SERVER_PORT"),

		SecFetchSite:  getenv("HTTP_SEC_FETCH_SITE"),
		ContentLength: getenv("CONTENT_LENGTH"),
	}
}

// Action is what a request asks for.
type Action int

// The actions of the stub, chosen by the query string.
const (
	ActionPage     Action = iota // no query: the dashboard page
	ActionClientJS               // ?client.js
	ActionConnect                // ?connect
	ActionWS                     // ?ws&token=T: a WebSocket upgrade, under nph-live.cgi
	ActionPoll                   // ?poll&token=T or ?poll&session=S[&since=N]
	ActionCommand                // POST ?command&session=S
	ActionHistory                // ?history=SENSOR[&from=MS][&to=MS]: a CSV download
)

// Params are the values a long poll, a command or a history download
// carries.
type Params struct {
	Token    string // the connect token opening a poll session
	Session  string // the poll session
	Since    uint64 // the last sequence number the client has
	HasSince bool   // since was given
	Sensor   string // the sensor of a history download
	From, To int64  // its range, Unix ms; 0: not given
}

// maxParam bounds a token or session id (tokens are at most 158 bytes;
// the query as a whole is bounded by maxQuery).
const maxParam = 200

// ParseQuery returns the action a query string asks for: ActionPage for
// none, else the one of "client.js", "connect", "ws" (under
// nph-live.cgi), "poll", "command" or "history" it names. Parameters
// named "v" or "_" (cache busters) may follow, and the values
// ParseParams reads; anything else is an error.
func ParseQuery(q string) (Action, error) {
	act, _, err := ParseParams(q)
	return act, err
}

// ParseParams is ParseQuery with the values of a poll (token or session,
// since), a command (session) or a history download (history=SENSOR,
// from, to). Each is checked: a token or session is base64url of at
// most maxParam bytes, since is a decimal uint64, a sensor
// <plugin>.<sensor>, from and to decimal Unix milliseconds.
func ParseParams(q string) (Action, Params, error) {
	var p Params
	if len(q) > maxQuery {
		return 0, p, fmt.Errorf("query string too long (%d bytes)", len(q))
	}
	act, seen := ActionPage, false
	for _, part := range strings.Split(q, "&") {
		if part == "" {
			continue
		}
		key, value, hasValue := strings.Cut(part, "=")
		var a Action
		switch key {
		case "client.js":
			a = ActionClientJS
		case "connect":
			a = ActionConnect
		case "ws":
			a = ActionWS
		case "poll":
			a = ActionPoll
		case "command":
			a = ActionCommand
		case "history":
			if !hasValue || !validSensor(value) {
				return 0, p, fmt.Errorf("query parameter history %s: want a sensor id, <plugin>.<sensor>", quote(value))
			}
			a, p.Sensor, hasValue = ActionHistory, value, false
		case "from", "to":
			n, err := strconv.ParseInt(value, 10, 64)
			if !hasValue || err != nil || n < 0 || value[0] == '+' {
				return 0, p, fmt.Errorf("query parameter %s %s: want a time in Unix milliseconds", key, quote(value))
			}
			if key == "from" {
				p.From = n
			} else {
				p.To = n
			}
			continue
		case "v", "_":
			continue
		case "token", "session":
			if !hasValue || value == "" || len(value) > maxParam || strings.Trim(value, b64url) != "" {
				return 0, p, fmt.Errorf("query parameter %s: want base64url of at most %d bytes", key, maxParam)
			}
			dst := &p.Token
			if key == "session" {
				dst = &p.Session
			}
			if *dst != "" {
				return 0, p, fmt.Errorf("query parameter %s given twice", key)
			}
			*dst = value
			continue
		case "since":
			n, err := strconv.ParseUint(value, 10, 64)
			if !hasValue || err != nil || value[0] == '+' {
				return 0, p, fmt.Errorf("query parameter since %s: want a sequence number, 0 to %d", quote(value), uint64(math.MaxUint64))
			}
			p.Since, p.HasSince = n, true
			continue
		default:
			return 0, p, fmt.Errorf("unknown query parameter %s: want none, client.js, connect, ws, poll, command or history", quote(key))
		}
		if hasValue {
			return 0, p, fmt.Errorf("query parameter %s takes no value", key)
		}
		if seen {
			return 0, p, errors.New("query asks for more than one of client.js, connect, ws, poll, command and history")
		}
		act, seen = a, true
	}
	switch {
	case act == ActionWS && (p.Token == "" || p.Session != "" || p.HasSince):
		return 0, p, errors.New("ws takes token=<token> from ?connect, and nothing else")
	case act != ActionPoll && act != ActionCommand && act != ActionWS && (p.Token != "" || p.Session != "" || p.HasSince):
		return 0, p, errors.New("token, session and since go with ws, poll or command only")
	case act == ActionPoll && (p.Token == "") == (p.Session == ""):
		return 0, p, errors.New("poll takes a token (the first poll) or a session (later ones)")
	case act == ActionCommand && (p.Session == "" || p.Token != "" || p.HasSince):
		return 0, p, errors.New("command takes a session, and nothing else")
	case act != ActionHistory && (p.From != 0 || p.To != 0):
		return 0, p, errors.New("from and to go with history only")
	case act == ActionHistory && p.To != 0 && p.From > p.To:
		return 0, p, errors.New("history: from is after to")
	}
	return act, p, nil
}

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// validSensor reports whether id is a sensor id, <plugin>.<sensor>: two
// lower_snake ids of at most 64 bytes (as wire.ValidName, which the stub
// does not link).
func validSensor(id string) bool {
	plugin, sensor, ok := strings.Cut(id, ".")
	return ok && validID(plugin) && validID(sensor)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 || (id[0] < 'a' || id[0] > 'z') && id[0] != '_' {
		return false
	}
	return strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789_") == ""
}

// HostPort is a checked host[:port] from a Host header or an origin.
type HostPort struct {
	Host string // lower case, as sent; an IPv6 address in brackets
	Port string // digits, "" if none was given
}

// String returns host[:port].
func (h HostPort) String() string {
	if h.Port == "" {
		return h.Host
	}
	return h.Host + ":" + h.Port
}

// ParseHost checks a Host header strictly: a DNS name (letters, digits,
// hyphens; labels of at most 63 bytes; at most 253 bytes; an optional final
// dot), a dotted IPv4 address or a bracketed IPv6 address without zone,
// then an optional ":port" (1-65535). Anything else is an error.
func ParseHost(s string) (HostPort, error) {
	if s == "" {
		return HostPort{}, errors.New("no Host header")
	}
	if len(s) > maxHost {
		return HostPort{}, fmt.Errorf("host too long (%d bytes)", len(s))
	}
	var host, rest string
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return HostPort{}, fmt.Errorf("host %s: missing ]", quote(s))
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return HostPort{}, fmt.Errorf("host %s: not an IPv6 address", quote(s))
		}
		host, rest = strings.ToLower(s[:end+1]), s[end+1:]
	} else {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			i = len(s)
		}
		host, rest = strings.ToLower(s[:i]), s[i:]
		if err := checkName(host); err != nil {
			return HostPort{}, fmt.Errorf("host %s: %w", quote(s), err)
		}
	}
	var port string
	if rest != "" {
		if rest[0] != ':' {
			return HostPort{}, fmt.Errorf("host %s: junk after the address", quote(s))
		}
		port = rest[1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] < '1' || port[0] > '9' {
			return HostPort{}, fmt.Errorf("host %s: bad port", quote(s))
		}
	}
	return HostPort{Host: host, Port: port}, nil
}

// checkName accepts a dotted IPv4 address or a DNS host name.
func checkName(h string) error {
	if h == "" {
		return errors.New("empty host name")
	}
	if strings.Trim(h, "0123456789.") == "" {
		if a, err := netip.ParseAddr(h); err != nil || !a.Is4() {
			return errors.New("not an IPv4 address")
		}
		return nil
	}
	name := strings.TrimSuffix(h, ".")
	if len(name) > 253 {
		return errors.New("host name too long")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("label starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("character %q not allowed in a host name", c)
			}
		}
	}
	return nil
}

// ParseOrigin checks an Origin header: "http://" or "https://" followed by
// a host[:port] that ParseHost accepts, nothing else.
func ParseOrigin(s string) (https bool, hp HostPort, err error) {
	if len(s) > maxOrigin {
		return false, HostPort{}, fmt.Errorf("origin too long (%d bytes)", len(s))
	}
	var rest string
	switch {
	case strings.HasPrefix(s, "http://"):
		rest = s[len("http://"):]
	case strings.HasPrefix(s, "https://"):
		https, rest = true, s[len("https://"):]
	default:
		return false, HostPort{}, fmt.Errorf("origin %s: want http:// or https://", quote(s))
	}
	hp, err = ParseHost(rest)
	if err != nil {
		return false, HostPort{}, fmt.Errorf("origin %s: %w", quote(s), err)
	}
	return https, hp, nil
}

// errCrossSite is returned by TokenOrigin for an origin on another host.
var errCrossSite = errors.New("cross-site request")

// TokenOrigin decides the origin a connect token is bound to: the browser's
// Origin header when it sent one (it must name the host of the Host header:
// a page elsewhere gets errCrossSite), else scheme://host[:port] built from
// the Host header the way a browser would write it (default port dropped).
// It also returns the checked Host header.
func TokenOrigin(r Request) (origin string, host HostPort, err error) {
	host, err = ParseHost(r.Host)
	if err != nil {
		return "", host, err
	}
	if r.Origin != "" {
		if r.Origin == "null" {
			return "", host, fmt.Errorf("%w: opaque origin \"null\"", errCrossSite)
		}
		_, oh, err := ParseOrigin(r.Origin)
		if err != nil {
			return "", host, err
		}
		if !sameHost(oh.Host, host.Host) {
			return "", host, fmt.Errorf("%w: page origin %s is not on host %s", errCrossSite, quote(r.Origin), host.Host)
		}
		return r.Origin, host, nil
	}
	scheme, def := "http", "80"
	if r.HTTPS {
		scheme, def = "https", "443"
	}
	o := scheme + "://" + host.Host
	if host.Port != "" && host.Port != def {
		o += ":" + host.Port
	}
	return o, host, nil
}

// sameHost compares two checked hosts; IPv6 addresses by value, since
// "[::1]" and "[0::1]" are the same.
func sameHost(a, b string) bool {
	if a == b {
		return true
	}
	if strings.HasPrefix(a, "[") && strings.HasPrefix(b, "[") {
		x, err1 := netip.ParseAddr(strings.Trim(a, "[]"))
		y, err2 := netip.ParseAddr(strings.Trim(b, "[]"))
		return err1 == nil && err2 == nil && x == y
	}
	return false
}

// quote quotes s for an error message, cut to 64 bytes so a hostile value
// cannot fill the answer.
func quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}

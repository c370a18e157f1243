package control

// Status is what the supervisor answers on its control socket.
type Status struct {
	PID     int    `json:"pid"`
	Port    int    `json:"port"` // WebSocket port
	Version string `json:"version"`
	Epoch   string `json:"epoch"`
	Clients int    `json:"clients"`
	TLS     bool   `json:"tls"` // the WebSocket port serves wss:// (tls_cert)
	// The configuration it runs: ConfigSum is its file's Config.Sum;
	// ConfigError why the file as it is now was not taken (the last good
	// configuration runs on); Restart the keys whose new values wait for
	// a restart, comma-separated.
	ConfigSum   string `json:"config_sum,omitempty"`
	ConfigError string `json:"config_error,omitempty"`
	Restart     string `json:"restart,omitempty"`
}

// Subprotocol is the WebSocket subprotocol of the browser protocol
// (proto/wire, which takes its name from here): the connect document
// names it, and a client must offer it.
const Subprotocol = "livecgi.v1"

// Connect is the document the stub serves at ?connect. URL is a complete
// ws:// URL, token included, that a client dials as is. Transports lists
// the ways to reach the supervisor in the order a client tries them.
type Connect struct {
	URL        string      `json:"url"`
	Token      string      `json:"token"`
	Expires    int64       `json:"expires"` // Unix milliseconds
	Protocol   string      `json:"protocol"`
	Transports []Transport `json:"transports,omitempty"`
}

// Transport kinds of the connect document, in the order a client tries
// them: the web server's own port (an nph CGI handing the socket over),
// the supervisor's WebSocket port, long polling through the stub.
const (
	TransportSamePort = "same-port"
	TransportWS       = "ws"
	TransportPoll     = "poll"
)

// Transport is one way to reach the supervisor: its kind and the URL a
// client uses as is (absolute, or relative to the connect document's
// URL). A WebSocket URL carries its own single-use token, a poll URL the
// token that opens its session, so trying one does not spend another's.
type Transport struct {
	Kind string `json:"kind"`
	URL  string `json:"url"`
}

// AddTransport appends a transport to try after those already listed.
func (c *Connect) AddTransport(kind, url string) {
	c.Transports = append(c.Transports, Transport{Kind: kind, URL: url})
}

// PollRequest is what the stub asks the supervisor for one long poll
// (GET live.cgi?poll): the first poll of a page presents a connect token
// and opens a session; later ones name the session. Since is the last
// sequence number the client has (absent: it has nothing, and gets hello
// and a full snapshot). Origin is the page's origin as the stub decided
// it (the Origin header, else built from Host); Remote is REMOTE_ADDR,
// for the log and the audit trail.
type PollRequest struct {
	Token   string  `json:"token,omitempty"`
	Session string  `json:"session,omitempty"`
	Since   *uint64 `json:"since,omitempty"`
	Origin  string  `json:"origin"`
	Remote  string  `json:"remote,omitempty"`
}

// CommandRequest is what the stub asks the supervisor for one command
// (POST live.cgi?command): a session's command frame, the same JSON as a
// WebSocket command frame, Len bytes following the request line.
type CommandRequest struct {
	Session string `json:"session"`
	Origin  string `json:"origin"`
	Remote  string `json:"remote,omitempty"`
	Len     int    `json:"len"`
}

// HistoryRequest is what the stub asks the supervisor for a CSV download
// of a recorded sensor (GET live.cgi?history=SENSOR): Token is a connect
// token the stub minted for the person it signed in, checked as a poll's
// (origin, run, single use, role); From and To (Unix ms, the stub's
// defaults applied) bound the range. The answer's body is the CSV
// itself (status 200), or an error document.
type HistoryRequest struct {
	Token  string `json:"token"`
	Origin string `json:"origin"`
	Remote string `json:"remote,omitempty"`
	Sensor string `json:"sensor"`
	From   int64  `json:"from"`
	To     int64  `json:"to"`
}

// Control request kinds besides "status". A request is one line,
// "<kind> <JSON object>\n", and for a command the frame's Len bytes; the
// answer is the HTTP status in decimal, a newline, and the body the
// stub passes to the browser as it is (a JSON document, or a history's
// CSV), up to EOF.
const (
	KindPoll    = "poll"
	KindCommand = "command"
	KindHistory = "history"
)

// Error codes of a poll or command answer's {"error": CODE, "reason": TEXT}.
const (
	ErrCodeSession   = "session_expired" // 410: unknown or expired session: fetch ?connect again
	ErrCodeForbidden = "forbidden"       // 403: bad token or origin
	ErrCodeTooMany   = "too_many_clients"
	ErrCodeBad       = "bad_request"
	ErrCodeStopping  = "stopping" // 503: the supervisor is shutting down
	// A history download's, as the wire protocol names them (404).
	ErrCodeNotRecorded   = "not_recorded"   // a known sensor without record.<id>
	ErrCodeUnknownSensor = "unknown_sensor" // no such sensor
)

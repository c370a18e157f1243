package control

// Status is what the supervisor answers on its control socket.
type Status struct {
	PID     int    `json:"pid"`
	Port    int    `json:"port"` // WebSocket port
	Version string `json:"version"`
	Epoch   string `json:"epoch"`
	Clients int    `json:"clients"`
	TLS     bool   `json:"tls"` // the WebSocket port serves wss:// (tls_cert)
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

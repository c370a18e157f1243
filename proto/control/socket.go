package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// Status is what the supervisor answers on its control socket.
type Status struct {
	PID     int    `json:"pid"`
	Port    int    `json:"port"` // WebSocket port
	Version string `json:"version"`
	Epoch   string `json:"epoch"`
	Clients int    `json:"clients"`
	TLS     bool   `json:"tls"` // the WebSocket port serves wss:// (tls_cert)
}

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

// Probe asks the supervisor behind the control socket in stateDir for its
// status. It fails fast when nobody listens.
func Probe(ctx context.Context, stateDir string) (Status, error) {
	var st Status
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "unix", filepath.Join(stateDir, ControlFile))
	if err != nil {
		return st, err
	}
	defer c.Close()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(2 * time.Second)
	}
	c.SetDeadline(dl)
	if _, err := c.Write([]byte("status\n")); err != nil {
		return st, fmt.Errorf("probe: %w", err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return st, fmt.Errorf("probe: %w", err)
	}
	if err := json.Unmarshal(line, &st); err != nil {
		return st, fmt.Errorf("probe: bad answer: %w", err)
	}
	if st.Port <= 0 {
		return st, errors.New("probe: supervisor has no port yet")
	}
	return st, nil
}

package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// Admission: the one door of every client, whichever way it came in (the
// WebSocket port, a socket nph-live.cgi handed over, the first poll of a
// long-poll session). check says who it is, or why not; enter counts it
// in under max_clients and max_clients_per_addr, atomically with its
// attach to the hub. A transport only reads its request and writes the
// answer. The broker bridge is no client of this door: the administrator
// configured it, and its role is mqtt_role.

// Transports, as the log names them.
const (
	viaWebSocket = "websocket"
	viaHandOver  = "hand-over"
	viaPoll      = "poll"
	viaHistory   = "history" // a CSV download through the stub: checked as a poll, never a client (records.go)
)

// ticket is what a transport read of a client asking in.
type ticket struct {
	via    string // viaWebSocket, viaHandOver, viaPoll, viaHistory
	host   string // the request's Host header
	stub   bool   // the stub checked Host against allowed_hosts (a poll): host is ""
	token  string
	origin string // the page's origin: the Origin header, or the stub's for a poll
	remote string // the client's address, with or without a port
}

// entrant is a client check let in.
type entrant struct {
	who        auth.Identity // as the configuration in force holds the token's identity
	setup      string        // the auth setup who was admitted under (see hold)
	originHost string        // host[:port] of the origin, which the token vouches for
	key        string        // what max_clients_per_addr counts it by (clientKey)
	log        *slog.Logger
}

// errTokenUsed: a token's second use.
var errTokenUsed = errors.New("token already used")

// hostError is check's refusal of a host not in allowed_hosts: the
// Host's, or the origin's.
type hostError string

func (e hostError) Error() string { return string(e) }

// check lets a client in, or says why not, under cfg, in this order:
// its Host in allowed_hosts (unless the stub checked it); a token of
// this run, unexpired, minted for its origin; that origin's host in
// allowed_hosts; the token not used before; a role for the token's
// identity under the rules in force (admit). A refusal is logged.
func (s *Supervisor) check(cfg *config.Config, t ticket) (entrant, error) {
	var e entrant
	err := func() error {
		if !t.stub && !cfg.HostAllowed(t.host) {
			return hostError(fmt.Sprintf("host %q is not in allowed_hosts (see the config file)", t.host))
		}
		claims, err := control.VerifyToken(s.secret, t.token, t.origin, s.hub.Epoch(), time.Now())
		if err != nil {
			return err
		}
		u, err := url.Parse(t.origin)
		if err != nil || u.Host == "" || !cfg.HostAllowed(u.Host) {
			return hostError("bad origin or origin host not in allowed_hosts")
		}
		if !s.useNonce(claims.Nonce) {
			return errTokenUsed
		}
		who, err := s.admit(cfg, claims.Identity)
		if err != nil {
			return err
		}
		e = entrant{who: who, setup: cfg.AuthSetup(), originHost: u.Host, key: clientKey(who.User, t.remote),
			log: s.log.With("remote", t.remote, "user", claims.User, "transport", t.via)}
		return nil
	}()
	if err != nil {
		msg := t.via + " refused"
		if t.via == viaWebSocket || t.via == viaHandOver {
			msg = "upgrade refused"
		}
		if errors.As(err, new(hostError)) {
			msg += ": host not allowed"
		}
		s.log.Info(msg, "transport", t.via, "remote", t.remote, "host", t.host, "origin", t.origin, "err", err)
	}
	return e, err
}

// enter attaches c, made by a transport for an entrant, to the hub: at
// most max_clients in all and max_clients_per_addr of c's key, counted
// atomically with the attach (fanout.Hub.Attach). It returns nil,
// fanout.ErrTooMany, fanout.ErrTooManyPerKey (both logged) or
// fanout.ErrClosed.
func (s *Supervisor) enter(cfg *config.Config, c *fanout.Client) error {
	err := s.hub.Attach(c)
	switch err {
	case fanout.ErrTooMany:
		c.Log().Warn("client refused: too many clients", "max_clients", cfg.MaxClients)
	case fanout.ErrTooManyPerKey:
		c.Log().Warn("client refused: too many clients from its address", "max_clients_per_addr", cfg.MaxClientsPerAddr)
	}
	return err
}

// clientKey is what max_clients_per_addr counts a client by: its address
// (an IPv6 one by its /64, the network a home or an office gets, so that
// one of them cannot take every place with addresses of its own) and,
// signed in, its user name. Every anonymous viewer behind one NAT or
// proxy has the same key.
func clientKey(user, remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.WithZone("").Unmap()
		if a.Is6() {
			p, _ := a.Prefix(64)
			host = p.String()
		} else {
			host = a.String()
		}
	}
	if user == "" {
		return host
	}
	return host + " " + user
}

// useNonce makes a token single-use; it reports false if it was used.
func (s *Supervisor) useNonce(n string) bool {
	s.nonceMu.Lock()
	defer s.nonceMu.Unlock()
	now := time.Now()
	if len(s.nonces) > 1024 {
		for k, exp := range s.nonces {
			if now.After(exp) {
				delete(s.nonces, k)
			}
		}
	}
	if _, ok := s.nonces[n]; ok {
		return false
	}
	s.nonces[n] = now.Add(s.config().TokenTTL + time.Minute)
	return true
}

// hold returns the identity a client admitted as who under the auth
// setup setup is held to under cfg: its token's, judged again by
// config.Config.Recheck, so that a role revoked since the client
// connected is gone at its next command; the bridge's (no token, setup
// "") as it is. The role is "" when the client may do nothing at all.
func (s *Supervisor) hold(cfg *config.Config, who auth.Identity, setup string) (auth.Identity, error) {
	if setup == "" {
		return who, nil
	}
	id, err := cfg.Recheck(who, setup, func() ([]auth.User, error) { return s.users.read(cfg.AuthUsers) })
	if err == nil && id.Role == "" {
		err = errSignedOut
	}
	return id, err
}

// errSignedOut: the configuration gives a token's user no role now.
var errSignedOut = errors.New("signed out: the configuration no longer lets this user in; load the page again to sign in")

// admit holds a token's identity, just verified, to cfg (see hold): a
// token minted under rules that changed since is judged by the new ones.
func (s *Supervisor) admit(cfg *config.Config, id auth.Identity) (auth.Identity, error) {
	who, err := cfg.Recheck(id, cfg.AuthSetup(), func() ([]auth.User, error) { return s.users.read(cfg.AuthUsers) })
	if err == nil && who.Role == "" {
		err = errSignedOut
	}
	return who, err
}

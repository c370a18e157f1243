package supervisor

import (
	"errors"
	"time"

	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
)

// Admission: which clients get in, and who they are held to.

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

// hold returns the identity c is held to under cfg: its token's, judged
// again by control.Config.Recheck, so that a role revoked since c
// connected is gone at its next command; the bridge's (no token) as it
// is. The role is "" when c may do nothing at all.
func (s *Supervisor) hold(cfg *control.Config, c *fanout.Client) (control.Identity, error) {
	if c.Setup() == "" {
		return c.Who(), nil
	}
	id, err := cfg.Recheck(c.Who(), c.Setup(), func() ([]control.User, error) { return s.users.read(cfg.AuthUsers) })
	if err == nil && id.Role == "" {
		err = errSignedOut
	}
	return id, err
}

// errSignedOut: the configuration gives a token's user no role now.
var errSignedOut = errors.New("signed out: the configuration no longer lets this user in; load the page again to sign in")

// admit holds a token's identity, just verified, to cfg (see hold): a
// token minted under rules that changed since is judged by the new ones.
func (s *Supervisor) admit(cfg *control.Config, id control.Identity) (control.Identity, error) {
	who, err := cfg.Recheck(id, cfg.AuthSetup(), func() ([]control.User, error) { return s.users.read(cfg.AuthUsers) })
	if err == nil && who.Role == "" {
		err = errSignedOut
	}
	return who, err
}

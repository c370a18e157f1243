package control

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
)

// Token errors; the supervisor answers each with 403.
var (
	ErrTokenMissing   = errors.New("token missing")
	ErrTokenMalformed = errors.New("token malformed")
	ErrTokenExpired   = errors.New("token expired")
	ErrTokenInvalid   = errors.New("token signature, origin or supervisor run mismatch")
)

const (
	nonceLen = 12
	macLen   = sha256.Size
	headLen  = 8 + nonceLen + 2 // expiry, nonce, role, user length
)

// MintToken returns a token for a page served from origin (scheme://host[:port],
// as browsers send in the Origin header), for the supervisor run epoch (its
// Status.Epoch) and the visitor id (an empty role is viewer), valid until
// now+ttl. It is an HMAC-SHA256 under secret over the expiry, a random
// nonce, the role, the user, the origin and the epoch; neither of the last
// two is in the token, so a token only verifies with the same Origin
// header and in the same supervisor run. A restarted supervisor, which has
// forgotten the nonces it has seen, thus refuses every earlier token.
// Layout: expiry (8 bytes), nonce (12), role (1), user length (1), user,
// MAC (32).
func MintToken(secret []byte, origin, epoch string, now time.Time, ttl time.Duration, id auth.Identity) (token string, expires time.Time) {
	expires = now.Add(ttl).Truncate(time.Second)
	user := id.User
	if len(user) > auth.MaxUser {
		user = user[:auth.MaxUser] // ValidUser names never are
	}
	role := byte(auth.Rank(id.Role))
	if role == 0 {
		role = byte(auth.Rank(auth.RoleViewer))
	}
	head := make([]byte, headLen, headLen+len(user)+macLen)
	binary.BigEndian.PutUint64(head, uint64(expires.Unix()))
	rand.Read(head[8 : 8+nonceLen])
	head[8+nonceLen] = role
	head[8+nonceLen+1] = byte(len(user))
	head = append(head, user...)
	b := append(head, sign(secret, head, origin, epoch)...)
	return base64.RawURLEncoding.EncodeToString(b), expires
}

// Claims is what a verified token says.
type Claims struct {
	Nonce string // for single-use checks
	auth.Identity
}

// VerifyToken checks token against the request's Origin header and the
// supervisor's epoch at time now and returns its nonce and identity.
func VerifyToken(secret []byte, token, origin, epoch string, now time.Time) (Claims, error) {
	if token == "" {
		return Claims{}, ErrTokenMissing
	}
	if len(token) < base64.RawURLEncoding.EncodedLen(headLen+macLen) || len(token) > base64.RawURLEncoding.EncodedLen(headLen+auth.MaxUser+macLen) {
		return Claims{}, ErrTokenMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < headLen+macLen || len(b) != headLen+int(b[headLen-1])+macLen {
		return Claims{}, ErrTokenMalformed
	}
	body := b[:len(b)-macLen]
	if !hmac.Equal(b[len(body):], sign(secret, body, origin, epoch)) {
		return Claims{}, ErrTokenInvalid
	}
	exp := int64(binary.BigEndian.Uint64(b))
	if now.Unix() > exp {
		return Claims{}, ErrTokenExpired
	}
	c := Claims{Nonce: string(b[8 : 8+nonceLen]), Identity: auth.Identity{User: string(body[headLen:])}}
	switch int(b[8+nonceLen]) {
	case auth.Rank(auth.RoleViewer):
		c.Role = auth.RoleViewer
	case auth.Rank(auth.RoleOperator):
		c.Role = auth.RoleOperator
	default:
		return Claims{}, ErrTokenMalformed
	}
	return c, nil
}

func sign(secret, head []byte, origin, epoch string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("livecgi.v2\x00"))
	m.Write(head)
	m.Write([]byte(origin))
	m.Write([]byte{0})
	m.Write([]byte(epoch))
	return m.Sum(nil)
}

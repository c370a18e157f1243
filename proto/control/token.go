package control

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
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
	tokenLen = 8 + nonceLen + macLen
)

// MintToken returns a token for a page served from origin (scheme://host[:port],
// as browsers send in the Origin header), for the supervisor run epoch (its
// Status.Epoch), valid until now+ttl. It is an HMAC-SHA256 under secret
// over the expiry, a random nonce, the origin and the epoch; neither of the
// last two is in the token, so a token only verifies with the same Origin
// header and in the same supervisor run. A restarted supervisor, which has
// forgotten the nonces it has seen, thus refuses every earlier token.
func MintToken(secret []byte, origin, epoch string, now time.Time, ttl time.Duration) (token string, expires time.Time) {
	expires = now.Add(ttl).Truncate(time.Second)
	b := make([]byte, tokenLen)
	binary.BigEndian.PutUint64(b, uint64(expires.Unix()))
	rand.Read(b[8 : 8+nonceLen])
	copy(b[8+nonceLen:], sign(secret, b[:8+nonceLen], origin, epoch))
	return base64.RawURLEncoding.EncodeToString(b), expires
}

// VerifyToken checks token against the request's Origin header and the
// supervisor's epoch at time now and returns its nonce (for single-use
// checks).
func VerifyToken(secret []byte, token, origin, epoch string, now time.Time) (nonce string, err error) {
	if token == "" {
		return "", ErrTokenMissing
	}
	if len(token) != base64.RawURLEncoding.EncodedLen(tokenLen) {
		return "", ErrTokenMalformed
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != tokenLen {
		return "", ErrTokenMalformed
	}
	if !hmac.Equal(b[8+nonceLen:], sign(secret, b[:8+nonceLen], origin, epoch)) {
		return "", ErrTokenInvalid
	}
	exp := int64(binary.BigEndian.Uint64(b))
	if now.Unix() > exp {
		return "", ErrTokenExpired
	}
	return string(b[8 : 8+nonceLen]), nil
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

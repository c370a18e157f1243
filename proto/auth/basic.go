package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Basic header limits: longer headers are refused unparsed.
const MaxAuthorization = 1024

// Errors of ParseBasic.
var (
	ErrNoCredentials = errors.New("no credentials")
	ErrHeaderTooLong = fmt.Errorf("header Authorization over %d bytes", MaxAuthorization)
)

// ParseBasic reads user and password from an Authorization header value
// (HTTP_AUTHORIZATION). Headers over MaxAuthorization bytes are refused
// before any decoding.
func ParseBasic(h string) (user, password string, err error) {
	if h == "" {
		return "", "", ErrNoCredentials
	}
	if len(h) > MaxAuthorization {
		return "", "", ErrHeaderTooLong
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", fmt.Errorf("header Authorization: scheme %.16q: want Basic", scheme)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", errors.New("header Authorization: bad base64")
	}
	user, password, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New("header Authorization: no colon between user and password")
	}
	return user, password, nil
}

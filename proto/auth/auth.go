package auth

import "unicode/utf8"

// Roles, from least to most allowed. A viewer sees readings; an operator
// may also run commands.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
)

// Identity is who a token was minted for. User is "" for an anonymous
// visitor (auth = none).
type Identity struct {
	User string
	Role string
}

// Rank orders the roles; 0 is no role at all.
func Rank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	}
	return 0
}

// ValidRole reports whether role is viewer or operator.
func ValidRole(role string) bool { return Rank(role) > 0 }

// MaxUser is the longest user name a token carries.
const MaxUser = 64

// ValidUser reports whether name can be a user: 1 to MaxUser bytes of
// UTF-8 without spaces, colons (Basic splits at the first one) or control
// characters.
func ValidUser(name string) bool {
	if name == "" || len(name) > MaxUser || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == ':' || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// Package auth is who is who: the roles (viewer, operator) and an
// Identity (user and role, what a token carries), the users file
// (auth_users: "name role hash" lines, PBKDF2-SHA256 hashes) and HTTP
// Basic credentials. The stub checks visitors with it, livecgid -adduser
// writes the users file with it. Standard library only and light: the
// stub links it.
//
// Files:
//
//	auth.go   roles (Rank, ValidRole), Identity, user names (ValidUser)
//	users.go  the users file: ReadUsers (refused unless trust.Check
//	          passes with Secret), ParseUsers, Lookup, CheckPassword
//	          (constant time, unknown names included), HashPassword,
//	          SetUser
//	basic.go  ParseBasic, the Authorization header
//
// Start with Identity in auth.go, then ReadUsers and CheckPassword. Which
// command needs which role is the configuration's (config.Authorize).
package auth

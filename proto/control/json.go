package control

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The documents of the protocol are written and read by hand: the stub
// links them, and encoding/json (with reflect) is a good part of a
// megabyte on linux/arm. TestJSONMatches and FuzzParseStatus hold these
// to encoding/json.

// appendJSONString appends s as a JSON string, escaped as encoding/json
// does: control characters, quotes, backslashes, <, >, & and U+2028/9;
// invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// ErrorJSON is {"error": code, "reason": reason} as a json.Encoder writes
// it (with a final newline): the body of every error answer of the stub
// and of the control socket.
func ErrorJSON(code, reason string) []byte {
	b := appendJSONString([]byte(`{"error":`), code)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	return append(b, "}\n"...)
}

// JSON is c as a json.Encoder writes it (with a final newline): the
// document the stub serves at ?connect.
func (c Connect) JSON() []byte {
	b := appendJSONString([]byte(`{"url":`), c.URL)
	b = append(b, `,"token":`...)
	b = appendJSONString(b, c.Token)
	b = append(b, `,"expires":`...)
	b = strconv.AppendInt(b, c.Expires, 10)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, c.Protocol)
	if len(c.Transports) > 0 {
		b = append(b, `,"transports":[`...)
		for i, t := range c.Transports {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(append(b, `{"kind":`...), t.Kind)
			b = appendJSONString(append(b, `,"url":`...), t.URL)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// appendJSON appends r as encoding/json marshals it.
func (r PollRequest) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if r.Token != "" {
		b = appendJSONString(append(b, `"token":`...), r.Token)
		b = append(b, ',')
	}
	if r.Session != "" {
		b = appendJSONString(append(b, `"session":`...), r.Session)
		b = append(b, ',')
	}
	if r.Since != nil {
		b = strconv.AppendUint(append(b, `"since":`...), *r.Since, 10)
		b = append(b, ',')
	}
	b = appendJSONString(append(b, `"origin":`...), r.Origin)
	if r.Remote != "" {
		b = appendJSONString(append(b, `,"remote":`...), r.Remote)
	}
	return append(b, '}')
}

// appendJSON appends r as encoding/json marshals it.
func (r CommandRequest) appendJSON(b []byte) []byte {
	b = appendJSONString(append(b, `{"session":`...), r.Session)
	b = appendJSONString(append(b, `,"origin":`...), r.Origin)
	if r.Remote != "" {
		b = appendJSONString(append(b, `,"remote":`...), r.Remote)
	}
	b = strconv.AppendInt(append(b, `,"len":`...), int64(r.Len), 10)
	return append(b, '}')
}

// appendJSON appends r as encoding/json marshals it.
func (r HistoryRequest) appendJSON(b []byte) []byte {
	b = appendJSONString(append(b, `{"token":`...), r.Token)
	b = appendJSONString(append(b, `,"origin":`...), r.Origin)
	if r.Remote != "" {
		b = appendJSONString(append(b, `,"remote":`...), r.Remote)
	}
	b = appendJSONString(append(b, `,"sensor":`...), r.Sensor)
	b = strconv.AppendInt(append(b, `,"from":`...), r.From, 10)
	b = strconv.AppendInt(append(b, `,"to":`...), r.To, 10)
	return append(b, '}')
}

// parseStatus reads a Status from one JSON object as encoding/json's
// Unmarshal does: members matched by name without case, strings
// unescaped, a repeated member counting with its last value, null leaving
// a field as it is, a value of the wrong type an error. Other members,
// nested or not, are checked for syntax and skipped.
func parseStatus(b []byte) (st Status, err error) {
	p := &jsonScan{b: b}
	p.space()
	if !p.eat('{') {
		return Status{}, p.fail("want {")
	}
	p.space()
	if p.eat('}') {
		return Status{}, p.end()
	}
	for {
		p.space()
		key, ok := p.str()
		if !ok {
			return Status{}, p.fail("want a member name")
		}
		p.space()
		if !p.eat(':') {
			return Status{}, p.fail("want :")
		}
		p.space()
		start := p.i
		if !p.value(0) {
			return Status{}, p.fail("bad value")
		}
		if v := b[start:p.i]; string(v) != "null" {
			name := unquote([]byte(key))
			switch {
			case strings.EqualFold(name, "pid"):
				st.PID, err = jsonInt(name, v)
			case strings.EqualFold(name, "port"):
				st.Port, err = jsonInt(name, v)
			case strings.EqualFold(name, "clients"):
				st.Clients, err = jsonInt(name, v)
			case strings.EqualFold(name, "version"):
				st.Version, err = jsonString(name, v)
			case strings.EqualFold(name, "epoch"):
				st.Epoch, err = jsonString(name, v)
			case strings.EqualFold(name, "tls"):
				st.TLS, err = jsonBool(name, v)
			case strings.EqualFold(name, "config_sum"):
				st.ConfigSum, err = jsonString(name, v)
			case strings.EqualFold(name, "config_error"):
				st.ConfigError, err = jsonString(name, v)
			case strings.EqualFold(name, "restart"):
				st.Restart, err = jsonString(name, v)
			}
			if err != nil {
				return Status{}, err
			}
		}
		p.space()
		if p.eat('}') {
			return st, p.end()
		}
		if !p.eat(',') {
			return Status{}, p.fail("want , or }")
		}
	}
}

// jsonInt, jsonString and jsonBool read a scanned value v of member name.
func jsonInt(name string, v []byte) (int, error) {
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, fmt.Errorf("%s is not an integer", name)
	}
	return n, nil
}

func jsonString(name string, v []byte) (string, error) {
	if v[0] != '"' {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return unquote(v[1 : len(v)-1]), nil
}

func jsonBool(name string, v []byte) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New(name + " is not a boolean")
}

// unquote decodes the contents of a string that jsonScan.str accepted,
// as encoding/json does: escapes, UTF-16 surrogate pairs, and U+FFFD for
// a lone surrogate or a byte that is not UTF-8.
func unquote(s []byte) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			c = s[i+1]
			i += 2
			switch c {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(s[i:])
				i += 4
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						i += 6
						r = d
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default: // " \ /
				b = append(b, c)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			b = utf8.AppendRune(b, r) // RuneError for a bad byte
			i += size
		}
	}
	return string(b)
}

// hex4 reads the 4 hex digits at the start of s, or returns -1.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// jsonScan is the least of a JSON scanner that parseStatus needs.
type jsonScan struct {
	b []byte
	i int
}

func (p *jsonScan) fail(what string) error { return fmt.Errorf("%s at byte %d", what, p.i) }

func (p *jsonScan) end() error {
	p.space()
	if p.i != len(p.b) {
		return p.fail("junk after the object")
	}
	return nil
}

func (p *jsonScan) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\r' || p.b[p.i] == '\n') {
		p.i++
	}
}

func (p *jsonScan) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str scans a string and returns its raw contents (escapes kept).
func (p *jsonScan) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return string(p.b[start : p.i-1]), true
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", false
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if len(p.b)-p.i < 5 {
					return "", false
				}
				for _, h := range p.b[p.i+1 : p.i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return "", false
					}
				}
				p.i += 5
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

func (p *jsonScan) value(depth int) bool {
	if depth > 16 || p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		p.i++
		p.space()
		if p.eat(close) {
			return true
		}
		for {
			p.space()
			if c == '{' {
				if _, ok := p.str(); !ok {
					return false
				}
				p.space()
				if !p.eat(':') {
					return false
				}
				p.space()
			}
			if !p.value(depth + 1) {
				return false
			}
			p.space()
			if p.eat(close) {
				return true
			}
			if !p.eat(',') {
				return false
			}
		}
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	for _, lit := range []string{"true", "false", "null"} {
		if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
			p.i += len(lit)
			return true
		}
	}
	return false
}

// number scans -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *jsonScan) number() bool {
	p.eat('-')
	if p.eat('0') {
		// no more integer digits after a leading zero
	} else if !p.digits() {
		return false
	}
	if p.eat('.') && !p.digits() {
		return false
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

func (p *jsonScan) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

package cgi

import (
	"strconv"
	"unicode/utf8"

	"github.com/livecgi/livecgi/proto/control"
)

// The stub writes its JSON documents by hand: encoding/json (with
// reflect) is a good part of a megabyte on linux/arm. TestJSONMatches holds
// these to encoding/json.

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

// errorJSON is ErrorBody encoded, with a final newline.
func errorJSON(e ErrorBody) []byte {
	b := appendJSONString([]byte(`{"error":`), e.Error)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, e.Reason)
	return append(b, "}\n"...)
}

// connectJSON is c encoded as encoding/json would, with a final newline.
func connectJSON(c control.Connect) []byte {
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

// pollRequestJSON is r encoded as encoding/json would.
func pollRequestJSON(r control.PollRequest) []byte {
	b := []byte{'{'}
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

// commandRequestJSON is r encoded as encoding/json would.
func commandRequestJSON(r control.CommandRequest) []byte {
	b := appendJSONString([]byte(`{"session":`), r.Session)
	b = appendJSONString(append(b, `,"origin":`...), r.Origin)
	if r.Remote != "" {
		b = appendJSONString(append(b, `,"remote":`...), r.Remote)
	}
	b = strconv.AppendInt(append(b, `,"len":`...), int64(r.Len), 10)
	return append(b, '}')
}

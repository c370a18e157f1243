package cgi

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(long63+".", 3) + strings.Repeat("b", 61) // 253 bytes
	tests := []struct {
		name, in string
		host     string
		port     string
		bad      bool
	}{
		{"name", "device.local", "device.local", "", false},
		{"name port", "device.local:8080", "device.local", "8080", false},
		{"upper case", "Device.LAN:80", "device.lan", "80", false},
		{"single label", "localhost", "localhost", "", false},
		{"final dot", "example.com.", "example.com.", "", false},
		{"ipv4", "192.168.1.1", "192.168.1.1", "", false},
		{"ipv4 port", "127.0.0.1:65535", "127.0.0.1", "65535", false},
		{"ipv6", "[::1]", "[::1]", "", false},
		{"ipv6 port", "[fe80::1]:8080", "[fe80::1]", "8080", false},
		{"ipv6 upper", "[FE80::A]:1", "[fe80::a]", "1", false},
		{"ipv4-in-ipv6", "[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]", "", false},
		{"253-byte name", name253, name253, "", false},
		{"digit label", "1e100.net", "1e100.net", "", false},

		{"empty", "", "", "", true},
		{"254-byte name", name253 + "c", "", "", true},
		{"64-byte label", long63 + "a.com", "", "", true},
		{"huge", strings.Repeat("a", 5000), "", "", true},
		{"empty label", "a..b", "", "", true},
		{"leading dot", ".a", "", "", true},
		{"hyphen start", "-a.com", "", "", true},
		{"hyphen end", "a-.com", "", "", true},
		{"underscore", "a_b.com", "", "", true},
		{"space", "a b", "", "", true},
		{"slash", "a/b", "", "", true},
		{"userinfo", "user@host", "", "", true},
		{"crlf", "host\r\nX-Evil: 1", "", "", true},
		{"nul", "host\x00", "", "", true},
		{"utf8", "bücher.de", "", "", true},
		{"bad ipv4", "256.1.1.1", "", "", true},
		{"short ipv4", "1.2.3", "", "", true},
		{"ipv4 leading zero", "01.2.3.4", "", "", true},
		{"bare ipv6", "::1", "", "", true},
		{"ipv6 unclosed", "[::1", "", "", true},
		{"ipv6 zone", "[fe80::1%eth0]", "", "", true},
		{"ipv4 in brackets", "[127.0.0.1]", "", "", true},
		{"ipv6 junk", "[::1]x", "", "", true},
		{"empty port", "host:", "", "", true},
		{"port 0", "host:0", "", "", true},
		{"port too big", "host:65536", "", "", true},
		{"port leading zero", "host:080", "", "", true},
		{"port sign", "host:+80", "", "", true},
		{"port letters", "host:http", "", "", true},
		{"two ports", "host:1:2", "", "", true},
		{"only port", ":80", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hp, err := ParseHost(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("ParseHost(%q) = %+v, want an error", tt.in, hp)
				}
				if len(err.Error()) > 200 {
					t.Errorf("error is %d bytes long: %.80s...", len(err.Error()), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", tt.in, err)
			}
			if hp.Host != tt.host || hp.Port != tt.port {
				t.Errorf("ParseHost(%q) = %q, %q; want %q, %q", tt.in, hp.Host, hp.Port, tt.host, tt.port)
			}
		})
	}
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		in   string
		want Action
		bad  bool
	}{
		{"", ActionPage, false},
		{"client.js", ActionClientJS, false},
		{"connect", ActionConnect, false},
		{"connect&_=1700000000", ActionConnect, false},
		{"client.js&v=3", ActionClientJS, false},
		{"v=3", ActionPage, false},
		{"&", ActionPage, false},
		{"connect=1", 0, true},
		{"connect&client.js", 0, true},
		{"connect&connect", 0, true},
		{"Connect", 0, true},
		{"foo", 0, true},
		{"connect&foo=bar", 0, true},
		{"client.js%00", 0, true},
		{"a b c", 0, true}, // boa passes these as argv too
		{strings.Repeat("x", 2000), 0, true},
		{strings.Repeat("connect&", 250), 0, true},
		// Long polls and commands.
		{"poll&token=abc_-9", ActionPoll, false},
		{"poll&session=abc&since=0", ActionPoll, false},
		{"poll&session=abc&since=18446744073709551615&_=1", ActionPoll, false},
		{"command&session=abc", ActionCommand, false},
		{"poll", 0, true},                                        // neither token nor session
		{"poll&token=a&session=b", 0, true},                      // both
		{"poll&session=abc&since=", 0, true},                     // since garbage...
		{"poll&session=abc&since=x1", 0, true},                   //
		{"poll&session=abc&since=-1", 0, true},                   // negative
		{"poll&session=abc&since=+1", 0, true},                   //
		{"poll&session=abc&since=1.5", 0, true},                  //
		{"poll&session=abc&since=0x10", 0, true},                 //
		{"poll&session=abc&since=18446744073709551616", 0, true}, // huge
		{"poll&session=abc&since", 0, true},
		{"poll&session=a%20b", 0, true},
		{"poll&token=" + strings.Repeat("a", 201), 0, true},
		{"poll&session=", 0, true},
		{"connect&since=1", 0, true},
		{"token=abc", 0, true},
		{"command", 0, true},
		{"command&session=a&since=1", 0, true},
		{"command&token=a", 0, true},
		{"poll&command&session=a", 0, true},
		// History downloads.
		{"history=system.load1", ActionHistory, false},
		{"history=system.load1&from=1700000000000&to=1700003600000&_=1", ActionHistory, false},
		{"history=_x.y_2&to=1", ActionHistory, false},
		{"history", 0, true},                              // no sensor
		{"history=", 0, true},                             //
		{"history=load1", 0, true},                        // not <plugin>.<sensor>
		{"history=System.load1", 0, true},                 //
		{"history=a.b.c", 0, true},                        //
		{"history=a.b%2Fc", 0, true},                      //
		{"history=a." + strings.Repeat("b", 65), 0, true}, // too long
		{"history=a.b&history=a.c", 0, true},              // twice
		{"history=a.b&from=-1", 0, true},                  // negative
		{"history=a.b&from=+1", 0, true},                  //
		{"history=a.b&to=1e3", 0, true},                   //
		{"history=a.b&to=", 0, true},                      //
		{"history=a.b&from=9223372036854775808", 0, true}, // huge
		{"history=a.b&from=2&to=1", 0, true},              // the wrong way round
		{"connect&from=1", 0, true},                       // from without history
		{"history=a.b&poll&token=a", 0, true},             // two actions
		{"history=a.b&session=a", 0, true},                //
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 20 {
			name = name[:20]
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParseQuery(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("ParseQuery(%.40q) = %v, want an error", tt.in, got)
				}
				if len(err.Error()) > 200 {
					t.Errorf("error is %d bytes long", len(err.Error()))
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseQuery(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestTokenOrigin(t *testing.T) {
	tests := []struct {
		name   string
		req    Request
		origin string
		wsHost string
		err    string // "", "cross", "bad"
	}{
		{"no origin", Request{Host: "10.0.0.1:8080"}, "http://10.0.0.1:8080", "10.0.0.1", ""},
		{"no origin default port", Request{Host: "10.0.0.1:80"}, "http://10.0.0.1", "10.0.0.1", ""},
		{"no origin https", Request{Host: "dev.lan:443", HTTPS: true}, "https://dev.lan", "dev.lan", ""},
		{"no origin https other port", Request{Host: "dev.lan:80", HTTPS: true}, "https://dev.lan:80", "dev.lan", ""},
		{"no origin upper case", Request{Host: "DEV.lan"}, "http://dev.lan", "dev.lan", ""},
		{"no origin ipv6", Request{Host: "[::1]:8080"}, "http://[::1]:8080", "[::1]", ""},
		{"same origin", Request{Host: "10.0.0.1:8080", Origin: "http://10.0.0.1:8080"}, "http://10.0.0.1:8080", "10.0.0.1", ""},
		{"origin other port", Request{Host: "10.0.0.1:8080", Origin: "http://10.0.0.1:9000"}, "http://10.0.0.1:9000", "10.0.0.1", ""},
		{"origin kept verbatim", Request{Host: "[::1]:80", Origin: "http://[0::1]"}, "http://[0::1]", "[::1]", ""},
		{"origin https", Request{Host: "dev.lan", Origin: "https://dev.lan"}, "https://dev.lan", "dev.lan", ""},
		{"origin host case", Request{Host: "DEV.LAN", Origin: "http://dev.lan"}, "http://dev.lan", "dev.lan", ""},

		{"cross site", Request{Host: "10.0.0.1", Origin: "http://evil.example"}, "", "", "cross"},
		{"cross site subdomain", Request{Host: "dev.lan", Origin: "http://x.dev.lan"}, "", "", "cross"},
		{"null origin", Request{Host: "dev.lan", Origin: "null"}, "", "", "cross"},
		{"origin with path", Request{Host: "dev.lan", Origin: "http://dev.lan/"}, "", "", "bad"},
		{"origin ftp", Request{Host: "dev.lan", Origin: "ftp://dev.lan"}, "", "", "bad"},
		{"origin no scheme", Request{Host: "dev.lan", Origin: "dev.lan"}, "", "", "bad"},
		{"origin userinfo", Request{Host: "dev.lan", Origin: "http://a@dev.lan"}, "", "", "bad"},
		{"origin huge", Request{Host: "dev.lan", Origin: "http://" + strings.Repeat("a", 2000)}, "", "", "bad"},
		{"origin crlf", Request{Host: "dev.lan", Origin: "http://dev.lan\r\nX: y"}, "", "", "bad"},
		{"no host", Request{}, "", "", "bad"},
		{"bad host", Request{Host: "a b"}, "", "", "bad"},
		{"bad host good origin", Request{Host: "dev.lan:0", Origin: "http://dev.lan"}, "", "", "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin, host, err := TokenOrigin(tt.req)
			switch tt.err {
			case "":
				if err != nil {
					t.Fatal(err)
				}
				if origin != tt.origin || host.Host != tt.wsHost {
					t.Fatalf("got %q on %q, want %q on %q", origin, host.Host, tt.origin, tt.wsHost)
				}
			case "cross":
				if !errors.Is(err, errCrossSite) {
					t.Fatalf("got %q, %v; want a cross-site error", origin, err)
				}
			case "bad":
				if err == nil || errors.Is(err, errCrossSite) {
					t.Fatalf("got %q, %v; want a bad-request error", origin, err)
				}
			}
		})
	}
}

func TestRequestFromEnv(t *testing.T) {
	env := map[string]string{
		"REQUEST_METHOD":     "GET",
		"HTTP_HOST":          "dev.lan:8080",
		"HTTP_ORIGIN":        "http://dev.lan:8080",
		"QUERY_STRING":       "connect",
		"HTTPS":              "ON",
		"HTTP_IF_NONE_MATCH": `"x"`,
		"HTTP_COOKIE":        "session=secret",
	}
	got := RequestFromEnv(func(k string) string { return env[k] })
	want := Request{Method: "GET", Host: "dev.lan:8080", Origin: "http://dev.lan:8080", HTTPS: true, Query: "connect", IfNoneMatch: `"x"`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	env = map[string]string{"REQUEST_SCHEME": "https"}
	if r := RequestFromEnv(func(k string) string { return env[k] }); !r.HTTPS {
		t.Error("REQUEST_SCHEME=https not taken as HTTPS")
	}
}

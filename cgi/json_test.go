package cgi

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/livecgi/livecgi/proto/control"
)

// TestJSONMatches holds the hand-written encoder to encoding/json.
func TestJSONMatches(t *testing.T) {
	strs := []string{
		"", "plain", `quote " backslash \`, "ctl \x00\x01\x1f\x7f", "nl\n cr\r tab\t",
		"<script>&</script>", "ünïcödé ✓ 🙂", "line\u2028sep\u2029", "bad \xff\xfe utf8 \xc3",
		strings.Repeat("é", 300),
	}
	for _, s := range strs {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
		e := ErrorBody{Error: s, Reason: s + "!"}
		want, _ = json.Marshal(e)
		if got := errorJSON(e); string(got) != string(want)+"\n" {
			t.Errorf("errorJSON = %s, want %s", got, want)
		}
		c := control.Connect{URL: "ws://h:1/live?token=" + s, Token: s, Expires: math.MaxInt64, Protocol: s}
		for range 3 {
			want, _ = json.Marshal(c)
			if got := connectJSON(c); string(got) != string(want)+"\n" {
				t.Errorf("connectJSON = %s, want %s", got, want)
			}
			c.AddTransport(s, "wss://h/"+s)
		}
		c.AddTransport(control.TransportWS, c.URL)
		c.AddTransport(s, "/cgi-bin/live.cgi?poll&token="+s)
		want, _ = json.Marshal(c)
		if got := connectJSON(c); string(got) != string(want)+"\n" {
			t.Errorf("connectJSON = %s, want %s", got, want)
		}
		since := uint64(math.MaxUint64)
		for _, p := range []control.PollRequest{
			{Origin: s},
			{Token: s, Origin: s, Remote: s},
			{Session: s, Since: &since, Origin: "http://h"},
		} {
			want, _ = json.Marshal(p)
			if got := pollRequestJSON(p); string(got) != string(want) {
				t.Errorf("pollRequestJSON = %s, want %s", got, want)
			}
		}
		for _, r := range []control.CommandRequest{{Session: s, Origin: s, Len: 5}, {Session: s, Origin: s, Remote: s, Len: math.MaxInt32}} {
			want, _ = json.Marshal(r)
			if got := commandRequestJSON(r); string(got) != string(want) {
				t.Errorf("commandRequestJSON = %s, want %s", got, want)
			}
		}
	}
}

// TestParseStatus holds the hand-written status reader to what
// ctlserver.Serve sends (encoding/json of control.Status).
func TestParseStatus(t *testing.T) {
	for _, st := range []control.Status{
		{},
		{PID: 1, Port: 8081},
		{PID: 4194304, Port: 65535, Version: `v1 "quoted" \ {}[],:\u2028`, Epoch: "0a1b2c3d4e5f", Clients: 7},
		{PID: 2, Port: 8443, TLS: true},
	} {
		b, _ := json.Marshal(st)
		got, err := parseStatus(b)
		if err != nil || got.PID != st.PID || got.Port != st.Port || got.Epoch != st.Epoch || got.TLS != st.TLS {
			t.Errorf("parseStatus(%s) = %+v, %v", b, got, err)
		}
	}
	good := map[string][2]int{
		` { "pid" : 5 , "port" : 6 } `:                        {5, 6},
		`{"x":{"a":[1,{"b":null}],"c":"}"},"pid":1,"port":2}`: {1, 2},
		`{"port":1,"port":2}`:                                 {0, 2},
		`{"error":"unknown request"}`:                         {0, 0},
		`{}`:                                                  {0, 0},
		`{"a":true,"b":false,"c":-1.5e3,"port":3}`:            {0, 3},
	}
	for in, want := range good {
		st, err := parseStatus([]byte(in))
		if err != nil || st.PID != want[0] || st.Port != want[1] {
			t.Errorf("parseStatus(%s) = %+v, %v; want %v", in, st, err, want)
		}
	}
	bad := []string{
		"", "{", "}", "[]", `{"pid":1`, `{"pid":1,}`, `{"pid":"1"}`, `{"port":1.5}`, `{"port":1e3}`,
		`{"pid" 1}`, `{pid:1}`, `{"a":tru}`, `{"a":"x` + "\x01" + `"}`, `{"a":1} x`, `{"a":-}`,
		strings.Repeat("[", 100), `{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
		`{"a":"\`, `{"port":99999999999999999999999}`, `{"epoch":1}`,
	}
	for _, in := range bad {
		if st, err := parseStatus([]byte(in)); err == nil {
			t.Errorf("parseStatus(%.40q) = %+v; want an error", in, st)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"pid":1,"port":2,"version":"x","epoch":"y","clients":0}`))
	f.Add([]byte(`{"a":[{"b":"\"}"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseStatus(b) // must not panic or hang
		if err != nil {
			return
		}
		// What it accepts is a JSON object, and when it names "pid" and
		// "port" once each, encoding/json reads the same numbers.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("parseStatus accepted %q, which encoding/json rejects: %v", b, err)
		}
		low := strings.ToLower(string(b))
		if strings.Count(low, "pid") == 1 && strings.Count(low, "port") == 1 {
			var st control.Status
			if json.Unmarshal(b, &st) == nil && (st.PID != got.PID || st.Port != got.Port) {
				t.Fatalf("parseStatus(%q) = %d, %d; encoding/json: %d, %d", b, got.PID, got.Port, st.PID, st.Port)
			}
		}
	})
}

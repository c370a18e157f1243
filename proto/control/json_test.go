package control

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
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
		want, _ = json.Marshal(struct {
			Error  string `json:"error"`
			Reason string `json:"reason"`
		}{s, s + "!"})
		if got := ErrorJSON(s, s+"!"); string(got) != string(want)+"\n" {
			t.Errorf("ErrorJSON = %s, want %s", got, want)
		}
		c := Connect{URL: "ws://h:1/live?token=" + s, Token: s, Expires: math.MaxInt64, Protocol: s}
		for range 3 {
			want, _ = json.Marshal(c)
			if got := c.JSON(); string(got) != string(want)+"\n" {
				t.Errorf("Connect.JSON = %s, want %s", got, want)
			}
			c.AddTransport(s, "wss://h/"+s)
		}
		c.AddTransport(TransportWS, c.URL)
		c.AddTransport(s, "/cgi-bin/live.cgi?poll&token="+s)
		want, _ = json.Marshal(c)
		if got := c.JSON(); string(got) != string(want)+"\n" {
			t.Errorf("Connect.JSON = %s, want %s", got, want)
		}
		since := uint64(math.MaxUint64)
		for _, p := range []PollRequest{
			{Origin: s},
			{Token: s, Origin: s, Remote: s},
			{Session: s, Since: &since, Origin: "http://h"},
		} {
			want, _ = json.Marshal(p)
			if got := p.appendJSON(nil); string(got) != string(want) {
				t.Errorf("PollRequest.appendJSON = %s, want %s", got, want)
			}
		}
		for _, r := range []CommandRequest{{Session: s, Origin: s, Len: 5}, {Session: s, Origin: s, Remote: s, Len: math.MaxInt32}} {
			want, _ = json.Marshal(r)
			if got := r.appendJSON(nil); string(got) != string(want) {
				t.Errorf("CommandRequest.appendJSON = %s, want %s", got, want)
			}
		}
		for _, r := range []HistoryRequest{{Token: s, Origin: s, Sensor: s}, {Token: s, Origin: s, Remote: s, Sensor: s, From: math.MinInt64, To: math.MaxInt64}} {
			want, _ = json.Marshal(r)
			if got := r.appendJSON(nil); string(got) != string(want) {
				t.Errorf("HistoryRequest.appendJSON = %s, want %s", got, want)
			}
		}
	}
}

// TestParseStatus holds the hand-written status reader to encoding/json,
// with which ctlserver.Serve writes the status.
func TestParseStatus(t *testing.T) {
	for _, st := range []Status{
		{},
		{PID: 1, Port: 8081},
		{PID: 4194304, Port: 65535, Version: `v1 "quoted" \ {}[],:\u2028`, Epoch: "0a1b2c3d4e5f", Clients: 7},
		{PID: 2, Port: 8443, TLS: true},
		{Version: "ünïcödé ✓ 🙂 <&> \x00\x1f bad \xff", Epoch: "\u2028\u2029"},
		{PID: 3, Port: 1, ConfigSum: "ab12", ConfigError: "livecgi.conf:3: \"x\" set twice", Restart: "listen,state_dir"},
	} {
		b, _ := json.Marshal(st)
		var want Status
		json.Unmarshal(b, &want) // st, but with U+FFFD for the bad byte
		got, err := parseStatus(b)
		if err != nil || got != want {
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
		`{"PID":7,"Port":8}`:                                  {7, 8},
		`{"p\u0069d":9,"port":null}`:                          {9, 0},
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
		`{"tls":1}`, `{"version":true}`, `{"clients":"1"}`,
	}
	for _, in := range bad {
		if st, err := parseStatus([]byte(in)); err == nil {
			t.Errorf("parseStatus(%.40q) = %+v; want an error", in, st)
		}
	}
}

// TestParseStatusEveryField: a field added to Status is read too (or this
// fails): every field set, through encoding/json, comes back.
func TestParseStatusEveryField(t *testing.T) {
	var st Status
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString("v" + strconv.Itoa(i) + ` "é"`)
		case reflect.Int:
			f.SetInt(int64(1000 + i))
		case reflect.Bool:
			f.SetBool(true)
		default:
			t.Fatalf("Status.%s: a %v, which parseStatus does not read", v.Type().Field(i).Name, f.Kind())
		}
	}
	b, _ := json.Marshal(st)
	if got, err := parseStatus(b); err != nil || got != st {
		t.Errorf("parseStatus(%s) = %+v, %v", b, got, err)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"pid":1,"port":2,"version":"x","epoch":"y","clients":0}`))
	f.Add([]byte(`{"a":[{"b":"\"}"}]}`))
	f.Add([]byte(`{"config_sum":"a","config_error":"b\n","restart":"listen"}`))
	f.Add([]byte(`{"Version":"\ud83d\ude42 \ud83d x\u00e9","EPOCH":null,"tls":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseStatus(b) // must not panic or hang
		if err != nil {
			return
		}
		// What it accepts, encoding/json accepts, and reads the same.
		var st Status
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("parseStatus accepted %q, which encoding/json rejects: %v", b, err)
		}
		if st != got {
			t.Fatalf("parseStatus(%q) = %+v; encoding/json: %+v", b, got, st)
		}
	})
}

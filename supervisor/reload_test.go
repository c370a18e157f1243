package supervisor

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/control"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/brokertest"
)

// confSup is a supervisor that follows its configuration file.
type confSup struct {
	*testSup
	path string // the configuration file
	base string // the lines every version of the file has
}

// startConf runs a supervisor following a configuration file whose
// lines are base's (state_dir, plugins_dir, listen) and then text.
func startConf(t *testing.T, text string, modes ...string) *confSup {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "livecgi.conf")
	cs := &confSup{path: conf}
	cs.testSup = startSupWith(t, nil, func(c *config.Config) {
		cs.base = fmt.Sprintf("state_dir = %s\nplugins_dir = %s\nlisten = %s\ncommand_timeout = 2s\n", c.StateDir, c.PluginsDir, c.Listen)
		cs.write(text)
		loaded, err := config.Load(conf)
		if err != nil {
			t.Fatal(err)
		}
		*c = loaded
	}, func(o *Options) { o.ConfigPath = conf }, modes...)
	return cs
}

// write puts base and text in the file the way editors and package
// managers do: a new file renamed over the old one.
func (cs *confSup) write(text string) {
	tmp := cs.path + ".new"
	if err := os.WriteFile(tmp, []byte(cs.base+text), 0o600); err != nil {
		cs.t.Fatal(err)
	}
	if err := os.Rename(tmp, cs.path); err != nil {
		cs.t.Fatal(err)
	}
}

// sum is the Config.Sum of base and text.
func (cs *confSup) sum(text string) string {
	var c config.Config
	path := filepath.Join(cs.t.TempDir(), "c")
	os.WriteFile(path, []byte(cs.base+text), 0o600)
	c, _ = config.Load(path)
	return c.Sum
}

// commandRoles returns the role each command of a hello needs.
func commandRoles(m map[string]any) map[string]string {
	roles := map[string]string{}
	cs, _ := m["commands"].([]any)
	for _, c := range cs {
		c := c.(map[string]any)
		roles[c["id"].(string)] = fmt.Sprint(c["role"])
	}
	return roles
}

// TestReloadRevokesRole: a command_role granted to viewers in the file
// lets a connected viewer run the command; once the line is gone from a
// file renamed over the old one, the same connection is told (a fresh
// hello) and its next command is refused. Then auth = basic signs the
// anonymous viewer out: its WebSocket is closed with 4004 and its poll
// session ended; a new token for it is refused.
func TestReloadRevokesRole(t *testing.T) {
	cs := startConf(t, "command_role = helper_counter.add viewer\n", "counter")
	viewer, err := cs.tryDial(cs.urlFor(cs.origin(), auth.Identity{Role: auth.RoleViewer}), cs.origin())
	if err != nil {
		t.Fatal(err)
	}
	online(viewer, "helper_counter")
	o := cs.origin()
	poll := cs.poll(context.Background(), control.PollRequest{Token: cs.token(o, auth.Identity{}), Origin: o})
	if poll.status != 200 {
		t.Fatalf("poll: %+v", poll)
	}
	add := wire.CommandMsg{Type: "command", ID: "a1", Name: "helper_counter.add", Args: map[string]any{"a": 1, "b": 2}}
	viewer.send(add)
	if r := viewer.next("a1's answer", func(m map[string]any) bool { return m["id"] == "a1" }); r["type"] != "result" || r["ok"] != true {
		t.Fatalf("viewer's command under command_role: %v", r)
	}

	cs.write("")
	hello := viewer.next("a fresh hello", func(m map[string]any) bool {
		return m["type"] == "hello" && commandRoles(m)["helper_counter.add"] == auth.RoleOperator
	})
	if u := fmt.Sprint(hello["user"]); u != "map[name: role:viewer]" {
		t.Errorf("hello.user = %s", u)
	}
	add.ID = "a2"
	viewer.send(add)
	if r := viewer.next("a2's answer", func(m map[string]any) bool { return m["id"] == "a2" }); r["type"] != "error" || r["code"] != wire.ErrForbidden {
		t.Fatalf("viewer's command after the line went: %v", r)
	}
	var last auditRecord
	for _, r := range readAudit(t, filepath.Join(cs.config().StateDir, ViewerAuditFile)) {
		last = r
	}
	if last.ID != "a2" || last.Role != auth.RoleViewer || !strings.HasPrefix(last.Result, "forbidden") {
		t.Errorf("audit of a2: %+v", last)
	}

	users := filepath.Join(filepath.Dir(cs.path), "users")
	if _, err := auth.SetUser(users, auth.User{Name: "otto", Role: auth.RoleOperator, Hash: mustHash(t)}); err != nil {
		t.Fatal(err)
	}
	cs.write("auth = basic\nauth_users = " + users + "\n")
	if st := viewer.closed(); st != wire.CloseSignedOut {
		t.Errorf("anonymous viewer under auth = basic: closed with %d, want %d", st, wire.CloseSignedOut)
	}
	// A poll may take what was queued before the session ended, or be
	// the one waiting when it ended; the next is told to start again.
	p := poll
	for range 3 {
		if p = cs.poll(context.Background(), control.PollRequest{Session: poll.Session, Origin: o, Since: &poll.Seq}); p.status != 200 {
			break
		}
	}
	if p.status != 410 {
		t.Errorf("anonymous poll session under auth = basic: %+v", p)
	}
	if _, err := cs.tryDial(cs.urlFor(cs.origin(), auth.Identity{Role: auth.RoleViewer}), cs.origin()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a new anonymous token under auth = basic: %v", err)
	}
	if !strings.Contains(cs.logs.String(), "changed=auth,auth_users") {
		t.Errorf("log does not say what changed:\n%s", cs.logs.String())
	}
}

func mustHash(t *testing.T) string {
	h, err := auth.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestReloadUsersFile: under auth = basic, a user lowered in the users
// file (no change to livecgi.conf) is told at once and held to the lower
// role at the next command; one removed from it is signed out.
func TestReloadUsersFile(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for _, u := range []string{"otto", "olga"} {
		if _, err := auth.SetUser(users, auth.User{Name: u, Role: auth.RoleOperator, Hash: mustHash(t)}); err != nil {
			t.Fatal(err)
		}
	}
	cs := startConf(t, "auth = basic\nauth_users = "+users+"\n", "counter")
	otto, err := cs.tryDial(cs.urlFor(cs.origin(), auth.Identity{User: "otto", Role: auth.RoleOperator}), cs.origin())
	if err != nil {
		t.Fatal(err)
	}
	olga, err := cs.tryDial(cs.urlFor(cs.origin(), auth.Identity{User: "olga", Role: auth.RoleOperator}), cs.origin())
	if err != nil {
		t.Fatal(err)
	}
	online(otto, "helper_counter")
	add := wire.CommandMsg{Type: "command", ID: "b1", Name: "helper_counter.add", Args: map[string]any{"a": 1}}
	otto.send(add)
	if r := otto.next("b1's answer", func(m map[string]any) bool { return m["id"] == "b1" }); r["type"] != "result" {
		t.Fatalf("operator's command: %v", r)
	}

	if _, err := auth.SetUser(users, auth.User{Name: "otto", Role: auth.RoleViewer, Hash: mustHash(t)}); err != nil {
		t.Fatal(err)
	}
	otto.next("a hello with role viewer", func(m map[string]any) bool {
		return m["type"] == "hello" && fmt.Sprint(m["user"]) == "map[name:otto role:viewer]"
	})
	add.ID = "b2"
	otto.send(add)
	if r := otto.next("b2's answer", func(m map[string]any) bool { return m["id"] == "b2" }); r["code"] != wire.ErrForbidden {
		t.Fatalf("command after the users file lowered the role: %v", r)
	}

	b, _ := os.ReadFile(users)
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "olga ") {
			keep = append(keep, l)
		}
	}
	os.WriteFile(users+".new", []byte(strings.Join(keep, "\n")), 0o600)
	os.Rename(users+".new", users)
	if st := olga.closed(); st != wire.CloseSignedOut {
		t.Errorf("user removed from the users file: closed with %d, want %d", st, wire.CloseSignedOut)
	}
}

// TestReloadBrokenKeepsLastGood: a file that does not load leaves the last
// good configuration running, says why in the log (file, line, key) and
// in Status; the file made good again is taken.
func TestReloadBrokenKeepsLastGood(t *testing.T) {
	cs := startConf(t, "command_role = helper_counter.add viewer\n", "counter")
	good := cs.Status().ConfigSum
	if good == "" || good != cs.sum("command_role = helper_counter.add viewer\n") {
		t.Fatalf("Status().ConfigSum = %q", good)
	}
	cs.write("command_role = helper_counter.add viewer\nrate = fast\n")
	waitFor(t, "the broken file in Status", func() bool { return cs.Status().ConfigError != "" })
	st := cs.Status()
	if !strings.Contains(st.ConfigError, cs.path+":6: rate = fast: want a number") || st.ConfigSum != good {
		t.Errorf("Status after a broken edit: %+v", st)
	}
	if !strings.Contains(cs.logs.String(), "config not reloaded: the last good configuration keeps running") {
		t.Errorf("log:\n%s", cs.logs.String())
	}
	viewer, err := cs.tryDial(cs.urlFor(cs.origin(), auth.Identity{Role: auth.RoleViewer}), cs.origin())
	if err != nil {
		t.Fatal(err)
	}
	online(viewer, "helper_counter")
	viewer.send(wire.CommandMsg{Type: "command", ID: "g1", Name: "helper_counter.add", Args: map[string]any{"a": 1}})
	if r := viewer.next("g1's answer", func(m map[string]any) bool { return m["id"] == "g1" }); r["type"] != "result" {
		t.Fatalf("the last good command_role does not hold: %v", r)
	}
	cs.write("")
	waitFor(t, "the fixed file taken", func() bool { st := cs.Status(); return st.ConfigError == "" && st.ConfigSum == cs.sum("") })
}

// TestReloadListenNeedsRestart: a new listen address cannot be taken by
// the running process: it keeps serving on the old one, and the log and
// Status say to restart; going back to the old value clears it.
func TestReloadListenNeedsRestart(t *testing.T) {
	cs := startConf(t, "")
	old := cs.base
	cs.base = strings.Replace(cs.base, "listen = 127.0.0.1:0", "listen = 127.0.0.1:1", 1)
	cs.write("")
	waitFor(t, "a restart in Status", func() bool { return cs.Status().Restart == "listen" })
	if want := fmt.Sprintf("config: listen changed: restart livecgid (kill -TERM %d; the next page load starts it)", os.Getpid()); !strings.Contains(cs.logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, cs.logs.String())
	}
	if cs.config().Listen != "127.0.0.1:0" {
		t.Errorf("running listen = %q", cs.config().Listen)
	}
	c := cs.dial(t)
	c.next("hello on the old port", is("hello"))
	cs.base = old
	cs.write("")
	waitFor(t, "the restart note gone", func() bool { return cs.Status().Restart == "" })
}

// TestReloadByCall: Reload (what SIGHUP calls) reads the file and applies
// it, and says so in the log; a log level change applies to
// Options.Level.
func TestReloadByCall(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "livecgi.conf")
	level := new(slog.LevelVar)
	var base string
	ts := startSupWith(t, nil, func(c *config.Config) {
		base = fmt.Sprintf("state_dir = %s\nplugins_dir = %s\nlisten = %s\n", c.StateDir, c.PluginsDir, c.Listen)
		os.WriteFile(conf, []byte(base), 0o600)
		*c, _ = config.Load(conf)
	}, func(o *Options) { o.ConfigPath, o.Level = conf, level })
	if err := ts.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(conf, []byte(base+"log_level = warn\n"), 0o600)
	if err := ts.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ts.config().LogLevel != "warn" || level.Level() != slog.LevelWarn {
		t.Errorf("log level after Reload: %s, %v", ts.config().LogLevel, level.Level())
	}
	if !strings.Contains(ts.logs.String(), "by=SIGHUP") {
		t.Errorf("log:\n%s", ts.logs.String())
	}
	os.WriteFile(conf, []byte(base+"log_level = loud\n"), 0o600)
	if err := ts.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), `log_level "loud"`) {
		t.Errorf("Reload of a broken file: %v", err)
	}
}

// TestBadCommandFrameKeepsID: a command frame that fails decoding but
// whose id can be read is answered with that id, on the WebSocket and on
// a poll session.
func TestBadCommandFrameKeepsID(t *testing.T) {
	ts := startSup(t, nil)
	c := ts.dial(t)
	c.next("hello", is("hello"))
	bad := `{"type":"command","id":"x1","name":"livecgid.nothing","args":{},"bogus":1}`
	c.sendRaw(websocket.MessageText, []byte(bad))
	if e := c.next("the answer to x1", is("error")); e["id"] != "x1" || e["code"] != wire.ErrBadMessage {
		t.Errorf("WebSocket: %v", e)
	}
	o := ts.origin()
	p := ts.poll(context.Background(), control.PollRequest{Token: ts.token(o, auth.Identity{}), Origin: o})
	req, _ := json.Marshal(control.CommandRequest{Session: p.Session, Origin: o, Len: len(bad)})
	a := ts.servePollCommand(context.Background(), req, strings.NewReader(bad))
	var e wire.Error
	if err := json.Unmarshal(a.Body, &e); err != nil || a.Status != 200 || e.ID != "x1" || e.Code != wire.ErrBadMessage {
		t.Errorf("poll: %d %s", a.Status, a.Body)
	}
}

// TestFirstPingAfterInterval: a connection's first keep-alive ping comes
// one ping_interval after it connected, whenever it connected, and then
// every ping_interval; none right after connecting. The client takes no
// readings (a subscription to nothing), so that the only pings are the
// keep-alive ones.
func TestFirstPingAfterInterval(t *testing.T) {
	const every = time.Second
	ts := startSup(t, func(c *config.Config) { c.PingInterval = every })
	quiet := `{"type":"subscribe","sensors":["nothing.here"]}`
	first := ts.dialRaw(t, ts.url(ts.origin()), ts.origin())
	first.write(1, []byte(quiet))
	var ping rawFrame
	for ping.op != 9 {
		ping, _ = first.next(5 * every)
	}
	// Connect the second client well into the first one's interval: a
	// ping for every client at once would reach it early.
	time.Sleep(every * 7 / 10)
	start := time.Now()
	c := ts.dialRaw(t, ts.url(ts.origin()), ts.origin())
	c.write(1, []byte(quiet))
	var pings []time.Duration
	for len(pings) < 2 {
		f, ok := c.next(5 * every)
		if !ok {
			t.Fatal("connection ended")
		}
		if f.op == 9 {
			pings = append(pings, f.at.Sub(start))
		}
	}
	if pings[0] < every || pings[1]-pings[0] < every*9/10 {
		t.Errorf("pings %v after connecting; want the first after %v and then every %v", pings, every, every)
	}
}

// TestReloadRestartsPlugins: a new exec_dir (as proc_root, sys_root and
// plugin_sha256) restarts the plugins with it; the clients stay.
func TestReloadRestartsPlugins(t *testing.T) {
	cs := startConf(t, "exec_dir = /etc/one\n", "counter")
	c := cs.dial(t)
	online(c, "helper_counter")
	ask := func(id string) map[string]any {
		t.Helper()
		c.send(wire.CommandMsg{Type: "command", ID: id, Name: "helper_counter.streams", Args: map[string]any{}})
		r := c.next(id+"'s answer", func(m map[string]any) bool { return m["id"] == id })
		v, _ := r["value"].(map[string]any)
		if r["ok"] != true || v == nil {
			t.Fatalf("%s: %v", id, r)
		}
		return v
	}
	before := ask("s1")
	if before["exec_dir"] != "/etc/one" {
		t.Fatalf("plugin started with exec_dir %v", before["exec_dir"])
	}
	cs.write("exec_dir = /etc/two\n")
	c.next("the plugin back", func(m map[string]any) bool {
		return m["type"] == "status" && m["plugin"] == "helper_counter" && m["state"] == wire.StateOnline
	})
	after := ask("s2")
	if after["exec_dir"] != "/etc/two" || after["pid"] == before["pid"] {
		t.Errorf("after the reload: %v; before: %v", after, before)
	}
}

// TestReloadMQTT: a new device_id restarts the bridge under it (the old
// topics say offline); mqtt_url gone stops it.
func TestReloadMQTT(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	sub := b.Subscribe(t, []string{"livecgi/#"})
	cs := startConf(t, "mqtt_url = "+b.URL+"\ndevice_id = one\n")
	state := func(dev, v string) func(brokertest.Message) bool {
		return func(m brokertest.Message) bool { return m.Topic == "livecgi/"+dev+"/$state" && m.Payload == v }
	}
	_, at := sub.WaitFor(mqttWait, 0, "one online", state("one", "online"))
	cs.write("mqtt_url = " + b.URL + "\ndevice_id = two\n")
	sub.WaitFor(mqttWait, at, "one offline", state("one", "offline"))
	_, at = sub.WaitFor(mqttWait, at, "two online", state("two", "online"))
	cs.write("")
	sub.WaitFor(mqttWait, at, "two offline", state("two", "offline"))
	if !strings.Contains(cs.logs.String(), "changed=mqtt_url,device_id") {
		t.Errorf("log:\n%s", cs.logs.String())
	}
}

// TestReloadTLS: tls_cert and tls_key set in the file turn wss:// on for
// new connections; a certificate that does not load keeps the last good
// one; Reload (SIGHUP) takes a certificate renewed at the same path.
func TestReloadTLS(t *testing.T) {
	cs := startConf(t, "")
	dir := t.TempDir()
	certFile, keyFile, cert := mustCert(t, dir)
	cs.write("tls_cert = " + certFile + "\ntls_key = " + keyFile + "\n")
	waitFor(t, "tls in Status", func() bool { return cs.Status().TLS })
	served := func() []byte {
		t.Helper()
		// Not verified: the test looks at which certificate is served.
		c, err := tls.Dial("tcp", cs.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), cert.Raw) {
		t.Fatal("the port does not serve the certificate")
	}
	cs.write("tls_cert = " + certFile + "\ntls_key = " + filepath.Join(dir, "nokey.pem") + "\n")
	waitFor(t, "the bad key in Status", func() bool { return strings.Contains(cs.Status().ConfigError, "tls_cert, tls_key") })
	if !cs.Status().TLS || !bytes.Equal(served(), cert.Raw) {
		t.Error("a key that does not load took the certificate away")
	}
	cs.write("tls_cert = " + certFile + "\ntls_key = " + keyFile + "\n")
	waitFor(t, "the good file again", func() bool { return cs.Status().ConfigError == "" })
	_, _, renewed := mustCert(t, dir)
	if err := cs.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(), renewed.Raw) {
		t.Error("Reload did not take the renewed certificate")
	}
}

// TestChangedKeys: the log names each changed key as the file spells it
// (every field of Config has its key in the sample configuration).
func TestChangedKeys(t *testing.T) {
	a := config.Default()
	var all []string
	b := a
	b.CommandRoles = map[string]string{"x.y": auth.RoleViewer}
	b.MQTT.DeviceID, b.MQTT.KeepAlive, b.TLSCert, b.PluginSHA256 = "d", time.Minute, "/c", map[string]string{"p": "0"}
	b.MemoryLimitMB, b.TokenTTL, b.Sum = 1, time.Hour, "ignored"
	got := strings.Join(changedKeys(&a, &b), ",")
	if want := "token_ttl,plugin_sha256,memory_limit_mb,tls_cert,command_role,device_id,mqtt_keepalive"; got != want {
		t.Errorf("changedKeys = %s, want %s", got, want)
	}
	// Every key of Config, by changing each field in turn.
	v := reflect.ValueOf(&b).Elem()
	var fields func(v reflect.Value)
	fields = func(v reflect.Value) {
		for i := range v.NumField() {
			f := v.Field(i)
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeFor[time.Duration]() {
				fields(f)
				continue
			}
			old := reflect.New(f.Type()).Elem()
			old.Set(f)
			switch f.Kind() {
			case reflect.String:
				f.SetString(f.String() + "x")
			case reflect.Bool:
				f.SetBool(!f.Bool())
			case reflect.Int, reflect.Int64:
				f.SetInt(f.Int() + 1)
			case reflect.Uint8:
				f.SetUint(f.Uint() + 1)
			case reflect.Float64:
				f.SetFloat(f.Float() + 1)
			case reflect.Map:
				m := reflect.MakeMap(f.Type())
				m.SetMapIndex(reflect.ValueOf("k"), reflect.Zero(f.Type().Elem()))
				f.Set(m)
			case reflect.Slice:
				f.Set(reflect.ValueOf([]string{"h"}))
			default:
				t.Fatalf("field kind %v", f.Kind())
			}
			c := a
			keys := changedKeys(&c, &b)
			f.Set(old)
			if len(keys) == 1 {
				all = append(all, keys[0])
			} else if v.Type().Field(i).Name != "Sum" {
				t.Errorf("field %s: changed keys %v", v.Type().Field(i).Name, keys)
			}
		}
	}
	b = a
	fields(v)
	for _, k := range all {
		if prefix, ok := strings.CutSuffix(k, "*"); ok { // deadband.<id>, record.<id>, …
			if !strings.Contains(config.SampleConfig, "\n"+prefix) && !strings.Contains(config.SampleConfig, "# "+prefix) {
				t.Errorf("key %s<id> is not in the sample configuration", prefix)
			}
			continue
		}
		if !strings.Contains(config.SampleConfig, "\n"+k+" =") && !strings.Contains(config.SampleConfig, "# "+k+" =") {
			t.Errorf("key %s is not in the sample configuration", k)
		}
	}
}

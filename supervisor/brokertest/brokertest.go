// Package brokertest runs a real Mosquitto broker (Debian's mosquitto)
// for the broker bridge's tests and the fleet benchmark: on a free
// loopback port with a config of its own, optionally over TLS with
// certificates made by openssl, with users made by mosquitto_passwd, or
// over WebSockets. Start one with Start; Sub watches topics with
// mosquitto_sub.
//
// New runs one for a program (the fleet benchmark); Start for a test,
// where with CI=true a missing mosquitto, mosquitto_sub, mosquitto_passwd
// or openssl fails the test, and elsewhere skips it.
package brokertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options says what kind of broker to run.
type Options struct {
	TLS        bool              // a TLS listener; Broker.CA signs its certificate (and the client's)
	ClientCert bool              // with TLS: the broker asks for a client certificate (Broker.Cert, Broker.Key)
	Users      map[string]string // user → password; set: anonymous clients are refused
	WebSockets bool              // MQTT over WebSockets
}

// Broker is one running Mosquitto.
type Broker struct {
	URL       string // how livecgid's mqtt_url names it
	Port      int    // the MQTT listener, for mosquitto_sub and mosquitto_pub
	WSPort    int    // with WebSockets: the WebSocket listener, which URL names
	Dir       string // its config, certificates and password file
	CA        string // with TLS: the CA certificate (PEM)
	Cert, Key string // with ClientCert: a client certificate and key signed by CA

	o    Options
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  bytes.Buffer
}

// Look returns the path of tool (mosquitto is in /usr/sbin).
func Look(tool string) (string, error) {
	for _, dir := range []string{"", "/usr/sbin/", "/usr/local/sbin/"} {
		if p, err := exec.LookPath(dir + tool); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: apt-get install mosquitto mosquitto-clients openssl", tool)
}

// Need returns the path of tool, failing the test with CI=true when it
// is missing and skipping it otherwise.
func Need(t testing.TB, tool string) string {
	t.Helper()
	p, err := Look(tool)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(err)
	}
	t.Skip(err)
	return ""
}

// Start runs a broker for the test; it is killed at the test's end.
func Start(t testing.TB, o Options) *Broker {
	t.Helper()
	for _, tool := range []string{"mosquitto", "mosquitto_passwd", "openssl"} {
		Need(t, tool)
	}
	b, err := New(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", b.Log())
		}
	})
	return b
}

// New runs a broker with its files in dir; Kill stops it.
func New(dir string, o Options) (*Broker, error) {
	b := &Broker{Dir: dir, o: o}
	if o.TLS {
		if err := b.certs(o.ClientCert); err != nil {
			return nil, err
		}
	}
	if len(o.Users) > 0 {
		passwd, err := Look("mosquitto_passwd")
		if err != nil {
			return nil, err
		}
		first := true
		for u, p := range o.Users {
			args := []string{"-b", filepath.Join(b.Dir, "passwd"), u, p}
			if first {
				args = append([]string{"-c"}, args...)
				first = false
			}
			if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("mosquitto_passwd: %v\n%s", err, out)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		var err error
		if b.Port, err = freePort(); err == nil && o.WebSockets {
			b.WSPort, err = freePort()
		}
		if err == nil {
			err = b.start()
		}
		if err == nil {
			break
		}
		if attempt == 5 || !strings.Contains(err.Error(), "in use") {
			return nil, fmt.Errorf("mosquitto: %w", err)
		}
	}
	host, scheme, port := "127.0.0.1", "tcp", b.Port
	if o.TLS {
		host, scheme = "localhost", "tls"
	}
	if o.WebSockets {
		scheme, port = "ws", b.WSPort
		if o.TLS {
			scheme = "wss"
		}
	}
	b.URL = fmt.Sprintf("%s://%s:%d", scheme, host, port)
	return b, nil
}

// config is mosquitto.conf: a TCP listener on Port (TLS with Options.TLS)
// for the mosquitto tools and livecgid, and with Options.WebSockets one on
// WSPort too (TLS alike).
func (b *Broker) config() string {
	var c strings.Builder
	c.WriteString("persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	if os.Geteuid() == 0 {
		c.WriteString("user root\n") // no drop to user mosquitto, who could not read Dir
	}
	if len(b.o.Users) > 0 {
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", filepath.Join(b.Dir, "passwd"))
	} else {
		c.WriteString("allow_anonymous true\n")
	}
	listener := func(port int, proto string) {
		fmt.Fprintf(&c, "listener %d 127.0.0.1\nprotocol %s\n", port, proto)
		if b.o.TLS {
			fmt.Fprintf(&c, "cafile %s\ncertfile %s\nkeyfile %s\n", b.CA, filepath.Join(b.Dir, "server.crt"), filepath.Join(b.Dir, "server.key"))
			if b.o.ClientCert {
				c.WriteString("require_certificate true\n")
			}
		}
	}
	listener(b.Port, "mqtt")
	if b.o.WebSockets {
		listener(b.WSPort, "websockets")
	}
	return c.String()
}

// start runs mosquitto on b.Port and waits until it accepts connections.
func (b *Broker) start() error {
	conf := filepath.Join(b.Dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(b.config()), 0o600); err != nil {
		return err
	}
	b.mu.Lock()
	b.log.Reset()
	mosquitto, err := Look("mosquitto")
	if err != nil {
		return err
	}
	cmd := exec.Command(mosquitto, "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // not left behind by a killed test or bench
	cmd.Stderr, cmd.Stdout = &lockedWriter{b}, &lockedWriter{b}
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	b.cmd, b.done = cmd, done
	b.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("exited at start: %s", b.Log())
		default:
		}
		up := true
		for _, p := range []int{b.Port, b.WSPort} {
			if p == 0 {
				continue
			}
			nc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				up = false
				break
			}
			nc.Close()
		}
		if up {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after 30s: %s", b.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct{ b *Broker }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.log.Write(p)
}

// Log returns what the running (or last) mosquitto logged.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// Kill kills the broker with SIGKILL and waits for it.
func (b *Broker) Kill() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts the broker again on the same port (after Kill); it
// retries while the port is still held.
func (b *Broker) Restart() error {
	var err error
	for range 50 {
		if err = b.start(); err == nil || !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// PID is the running broker's process id.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd.Process.Pid
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// certs makes a CA, a server certificate for localhost and 127.0.0.1 and,
// with client, a client certificate, all with openssl.
func (b *Broker) certs(client bool) error {
	openssl, err := Look("openssl")
	if err != nil {
		return err
	}
	run := func(args ...string) error {
		cmd := exec.Command(openssl, args...)
		cmd.Dir = b.Dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"}
	if err := run(append([]string{"req", "-x509", "-days", "2", "-subj", "/CN=livecgi test CA", "-keyout", "ca.key", "-out", "ca.crt"}, ec...)...); err != nil {
		return err
	}
	sign := func(name, cn, ext string) error {
		if err := run(append([]string{"req", "-subj", "/CN=" + cn, "-keyout", name + ".key", "-out", name + ".csr"}, ec...)...); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.Dir, name+".ext"), []byte(ext), 0o600); err != nil {
			return err
		}
		return run("x509", "-req", "-days", "2", "-in", name+".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
			"-extfile", name+".ext", "-out", name+".crt")
	}
	if err := sign("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"); err != nil {
		return err
	}
	b.CA = filepath.Join(b.Dir, "ca.crt")
	if client {
		if err := sign("client", "livecgi-device", "extendedKeyUsage=clientAuth\n"); err != nil {
			return err
		}
		b.Cert, b.Key = filepath.Join(b.Dir, "client.crt"), filepath.Join(b.Dir, "client.key")
	}
	return nil
}

// Message is one message a Sub saw.
type Message struct {
	Topic         string
	Payload       string
	QoS           int
	Retain        bool
	Correlation   string // MQTT 5 correlation data
	ResponseTopic string
}

// Sub is a mosquitto_sub process subscribed to some topics.
type Sub struct {
	t    testing.TB
	cmd  *exec.Cmd
	mu   sync.Mutex
	msgs []Message
	news chan struct{} // capacity 1: a message arrived
	done chan struct{}
	stop sync.Once
}

// Subscribe starts mosquitto_sub (MQTT 5) on topics; args are extra
// mosquitto_sub arguments (credentials, -u/-P, certificates…). It is
// stopped at the test's end.
func (b *Broker) Subscribe(t testing.TB, topics []string, args ...string) *Sub {
	t.Helper()
	a := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port), "-V", "mqttv5", "-F", "%j"}
	if b.CA != "" {
		a = append(a, "-h", "localhost", "--cafile", b.CA)
		if b.Cert != "" {
			a = append(a, "--cert", b.Cert, "--key", b.Key)
		}
	}
	for _, tp := range topics {
		a = append(a, "-t", tp)
	}
	s := &Sub{t: t, news: make(chan struct{}, 1), done: make(chan struct{})}
	s.cmd = exec.Command(Need(t, "mosquitto_sub"), append(a, args...)...)
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var j struct {
				Topic      string `json:"topic"`
				QoS        int    `json:"qos"`
				Payload    string `json:"payload"`
				Retain     any    `json:"retain"`
				Properties struct {
					Correlation   string `json:"correlation-data"`
					ResponseTopic string `json:"response-topic"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
				continue
			}
			m := Message{Topic: j.Topic, Payload: j.Payload, QoS: j.QoS, Correlation: j.Properties.Correlation, ResponseTopic: j.Properties.ResponseTopic}
			m.Retain = j.Retain == true || j.Retain == float64(1)
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			select {
			case s.news <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("mosquitto_sub: %s", stderr.String())
		}
	})
	return s
}

// Stop ends the subscriber and waits for it; what it saw stays.
func (s *Sub) Stop() {
	s.stop.Do(func() {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd.Wait()
	})
}

// Messages returns what the subscriber saw so far.
func (s *Sub) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitFor waits up to limit for a message that match accepts, looking at
// every message from index from on, and returns it with its index.
func (s *Sub) WaitFor(limit time.Duration, from int, what string, match func(Message) bool) (Message, int) {
	s.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		msgs := append([]Message(nil), s.msgs[min(from, len(s.msgs)):]...)
		s.mu.Unlock()
		for i, m := range msgs {
			if match(m) {
				return m, from + i
			}
		}
		from += len(msgs)
		select {
		case <-s.news:
		case <-s.done:
			s.t.Fatalf("mosquitto_sub ended while waiting for %s", what)
		case <-deadline.C:
			s.t.Fatalf("no %s within %v", what, limit)
		}
	}
}

// Publish sends one message with mosquitto_pub (MQTT 5); args are extra
// mosquitto_pub arguments (-D publish correlation-data …, -r, …).
func (b *Broker) Publish(t testing.TB, topic string, payload []byte, args ...string) {
	t.Helper()
	how := "-s"
	if len(payload) == 0 {
		how = "-n" // mosquitto_pub refuses an empty stdin
	}
	b.publish(t, topic, payload, append([]string{how}, args...))
}

// PublishMany sends n messages of payload (one line: no newline) on
// topic with one mosquitto_pub, as fast as it goes.
func (b *Broker) PublishMany(t testing.TB, topic string, payload []byte, n int) {
	t.Helper()
	b.publish(t, topic, bytes.Repeat(append(payload, '\n'), n), []string{"-l"})
}

func (b *Broker) publish(t testing.TB, topic string, stdin []byte, args []string) {
	t.Helper()
	a := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.Port), "-V", "mqttv5", "-t", topic}
	if b.CA != "" {
		a = append(a, "-h", "localhost", "--cafile", b.CA)
		if b.Cert != "" {
			a = append(a, "--cert", b.Cert, "--key", b.Key)
		}
	}
	cmd := exec.Command(Need(t, "mosquitto_pub"), append(a, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %.80s: %v\n%s", topic, err, out)
	}
}

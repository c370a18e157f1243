package mqttbridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/config"
	"github.com/livecgi/livecgi/proto/trust"
	"github.com/livecgi/livecgi/proto/wire"
	"github.com/livecgi/livecgi/supervisor/internal/fanout"
	"github.com/livecgi/livecgi/supervisor/internal/wsconn"
)

// The broker bridge (mqtt_url; README.md, "Many devices"): livecgid as an
// MQTT 5 client of one broker. Topics, under base = <prefix>/<device>/:
//
//	base<sensor id>         each reading's value (retained by default)
//	base$meta               sensors, commands and plugins as JSON (retained)
//	base$state              online, or offline (retained; the last will)
//	base$alarm/<name>       each alarm's state as JSON (retained)
//	base cmd/<command id>   commands in: the payload is the args object
//	base result/<command id> their result or error frame, unless the
//	                        command named an MQTT 5 response topic
//	                        under mqtt_reply_prefix
//	base history/<sensor id> history requests in: the payload is
//	                        {"from", "to", "points"}, each optional
//	base history/<sensor id>/result the history or error frame, unless
//	                        the request named a response topic (as a
//	                        command's)
//
// While connected the bridge is a client of the hub without a socket,
// like a poll session: it holds demand (so plugins sample), wakes at each
// Publish and takes the newest reading of each sensor since its last
// look (fanout.Hub.Readings), so a slow broker makes it skip readings,
// never queue them, and never slows the hub's writers. While the broker
// is unreachable it is detached and retries with backoff; the hub keeps
// the last value of each sensor, which the next connection publishes
// first. A command message becomes a client frame, as a WebSocket
// carries one, which goes through Options.Frames: the supervisor's frame
// path, every transport's (rate, size, UTF-8, decoding, role (mqtt_role),
// schema, run, audit).

// Options configures a Bridge.
type Options struct {
	MQTT config.MQTT // mqtt_url and the other mqtt_ keys
	// Limits returns the limits in force (a reload may change them).
	Limits func() Limits
	// Hub is where the readings and descriptors come from: the bridge is
	// a client of it while connected.
	Hub *fanout.Hub
	// Frames takes one command frame from the broker for who (a client
	// frame, as a WebSocket carries it) through the checks every
	// transport's frames go through (rate, size, UTF-8, decoding, role,
	// schema), runs it and returns its answer: the result or error frame.
	Frames func(ctx context.Context, who auth.Identity, remote string, log *slog.Logger, frame []byte) []byte
	// Described reports whether the plugins have described themselves,
	// and a channel closed when that may have changed (see
	// pluginhost.Host.Described): the first $meta waits for it. Nil:
	// at once.
	Described func() (bool, <-chan struct{})
	Log       *slog.Logger // default: discard
	// The reconnect backoff: doubles from Backoff (default 1 s) to
	// MaxBackoff (default 1 min), and resets after a connection that
	// lasted a minute.
	Backoff, MaxBackoff time.Duration
}

// Limits are the configuration's limits on what clients send.
type Limits struct {
	MaxFrame int64 // bytes of a frame: of a message over MQTT over WebSocket, with 64 KiB more
}

// Bridge is one broker bridge; New makes it, Run runs it.
type Bridge struct {
	o      Options
	m      config.MQTT
	url    *url.URL
	device string
	base   string // "<prefix>/<device>/"
	log    *slog.Logger
	who    auth.Identity
	sem    chan struct{} // commands in flight
	cmdN   atomic.Uint64
	// strays takes the names of the alarms whose state the broker
	// holds, as the bridge's subscription to base$alarm/+ hears them, to
	// the session loop, which clears those no longer configured.
	strays chan string

	// Owned by the session loop.
	//
	// described: the plugins livecgid started with have described
	// themselves (Options.Described), or metaDeadline passed: until then
	// $meta and discovery wait, so that the first retained $meta is not
	// one without the plugins' sensors and commands.
	described    bool
	metaDeadline time.Time
	// What the broker holds of ours (retained), for removals.
	meta      string
	published map[string]bool   // sensor ids with a retained value
	errs      map[string]string // sensor id → the error its retained <id>/$error holds (staleError: unknown)
	discovery map[string]string // discovery config topic → its config ("": to be sent again)
	alarms    map[string]string // alarm name → the state its retained $alarm/<name> holds ("": to be sent again)
}

// Bridge timing.
const (
	mqttConnectTimeout = 10 * time.Second
	mqttMaxInFlight    = 16 // commands from the broker running at once
	// How long $meta waits for the plugins to describe themselves at most
	// (a plugin's first start ends within the plugin host's handshake and
	// describe timeouts).
	mqttDescribeWait = 30 * time.Second
)

// New returns the bridge o.MQTT's mqtt_url asks for, nil without one.
// The files it names (CA, client certificate, password) are read at each
// connection: a missing one is logged and retried, and never stops
// livecgid, whose browsers do not need the broker.
func New(o Options) (*Bridge, error) {
	m := o.MQTT
	if m.URL == "" {
		return nil, nil
	}
	scheme, host, path, err := m.Broker()
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	u := &url.URL{Scheme: scheme, Host: host, Path: path}
	b := &Bridge{
		o: o, m: m, url: u, device: m.Device(), log: o.Log.With("mqtt", u.Redacted()),
		who: auth.Identity{User: "mqtt", Role: m.Role}, sem: make(chan struct{}, mqttMaxInFlight),
		strays: make(chan string, 64),
	}
	b.base = m.Prefix + "/" + b.device + "/"
	if m.Username != "" {
		b.who.User = "mqtt:" + m.Username
	}
	return b, nil
}

// tlsConfig returns the TLS configuration of a tls:// or wss:// broker:
// mqtt_ca's CAs (else the system's) and mqtt_cert; nil for the others.
func (b *Bridge) tlsConfig() (*tls.Config, error) {
	m := b.m
	if !m.TLS() {
		return nil, nil
	}
	c := &tls.Config{ServerName: b.url.Hostname(), MinVersion: tls.VersionTLS12}
	if m.CA != "" {
		pem, err := os.ReadFile(m.CA)
		if err != nil {
			return nil, fmt.Errorf("mqtt_ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt_ca %s: no PEM certificate in it", m.CA)
		}
	}
	if m.Cert != "" {
		if err := trust.Check(m.Key, trust.Options{Secret: true, StickyDirs: true}); err != nil {
			return nil, fmt.Errorf("mqtt_key: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(m.Cert, m.Key)
		if err != nil {
			return nil, fmt.Errorf("mqtt_cert, mqtt_key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Broker is the broker's URL, without its password: the bridge's log
// lines carry it as "mqtt".
func (b *Bridge) Broker() string { return b.url.Redacted() }

// Run keeps the bridge connected until ctx ends, retrying with backoff
// (1 s doubling to 1 min, with jitter; back to 1 s after a connection
// that lasted a minute).
func (b *Bridge) Run(ctx context.Context) {
	b.metaDeadline = time.Now().Add(mqttDescribeWait)
	backoff := b.o.Backoff
	short := 0 // connections in a row the broker closed soon after they were made
	for {
		start := time.Now()
		connected, err := b.session(ctx)
		if ctx.Err() != nil {
			return
		}
		lasted := time.Since(start)
		if lasted > time.Minute {
			backoff = b.o.Backoff
		}
		if connected && lasted < 10*time.Second {
			short++
		} else if connected {
			short = 0
		}
		wait := backoff + rand.N(backoff/4+1)
		b.log.Warn("mqtt: not connected; retrying", "err", err, "in", wait.Round(time.Millisecond))
		if short%10 == 3 {
			// A broker lets one client use a client id at a time: it
			// drops the older connection, which comes back and drops
			// the other in turn.
			b.log.Warn("mqtt: the broker keeps closing the connection soon after it is made: does another device use device_id "+b.device+
				"? (client id livecgi-"+b.device+" can be connected only once; set device_id) Or do the broker's ACLs refuse its topics?",
				"times", short)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, b.o.MaxBackoff)
	}
}

// connect dials the broker and connects as clientID, with the bridge's
// credentials and, for the bridge itself, its last will; received gets
// the messages that arrive, ended why the connection ended.
func (b *Bridge) connect(ctx context.Context, clientID string, will bool, received func(paho.PublishReceived) (bool, error), ended, disconnected func(error)) (*paho.Client, error) {
	password, err := b.m.Password() // read each time: it may have been changed
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, mqttConnectTimeout)
	defer cancel()
	conn, err := b.dial(cctx)
	if err != nil {
		return nil, err
	}
	cc := paho.ClientConfig{
		ClientID: clientID, Conn: packets.NewThreadSafeConn(conn), OnClientError: ended,
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := "broker disconnected: reason code " + strconv.Itoa(int(d.ReasonCode))
			if d.Properties != nil && d.Properties.ReasonString != "" {
				reason += ": " + d.Properties.ReasonString
			}
			disconnected(errors.New(reason))
		},
	}
	if received != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){received}
	}
	cli := paho.NewClient(cc)
	cp := &paho.Connect{ClientID: clientID, KeepAlive: uint16(b.m.KeepAlive / time.Second), CleanStart: true}
	if will {
		cp.WillMessage = &paho.WillMessage{Retain: true, QoS: 1, Topic: b.base + "$state", Payload: []byte("offline")}
	}
	if b.m.Username != "" {
		cp.Username, cp.UsernameFlag = b.m.Username, true
	}
	if b.m.PasswordFile != "" {
		cp.Password, cp.PasswordFlag = []byte(password), true
	}
	if _, err := cli.Connect(cctx, cp); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return cli, nil
}

// session connects once and bridges until the connection or ctx ends;
// connected says whether it got that far.
func (b *Bridge) session(ctx context.Context) (connected bool, err error) {
	// Why the connection ended: the broker's DISCONNECT reason, else the
	// client's first error.
	why, broker := make(chan error, 1), make(chan error, 1)
	first := func(ch chan error) func(error) {
		return func(err error) {
			select {
			case ch <- err:
			default:
			}
		}
	}
	cli, err := b.connect(ctx, "livecgi-"+b.device, true, b.received(ctx), first(why), first(broker))
	if err != nil {
		return false, err
	}
	defer func() {
		if ctx.Err() != nil { // stopping: say so, then leave without the will
			gctx, gcancel := context.WithTimeout(context.Background(), 2*time.Second)
			cli.Publish(gctx, &paho.Publish{Topic: b.base + "$state", Payload: []byte("offline"), QoS: 1, Retain: true}) // waits for the ack
			gcancel()
			cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
			b.log.Info("mqtt: disconnected")
			return
		}
		cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}()
	if _, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: b.base + "cmd/+", QoS: 1}, {Topic: b.base + "history/+", QoS: 1}}}); err != nil {
		return true, fmt.Errorf("subscribe to %scmd/+ and %shistory/+: %w", b.base, b.base, err)
	}
	if err := b.retained(ctx, cli, b.base+"$state", []byte("online")); err != nil {
		return true, err
	}
	// The alarms the broker holds, to clear those removed meanwhile.
	if _, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: b.base + "$alarm/+", QoS: 1}}}); err != nil {
		b.log.Info("mqtt: subscription to "+b.base+"$alarm/+ refused: the state of an alarm removed while livecgid was stopped stays retained", "err", err)
	}
	// Attach as a consumer; hello, snapshot, status and new hellos only
	// mark the metadata to be looked at again.
	dirty := make(chan struct{}, 1)
	c := b.o.Hub.NewClient(fanout.ClientOptions{Who: b.who, Remote: b.url.Host, Log: b.log, Control: func([]byte) {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}})
	if err := b.o.Hub.Attach(c); err != nil {
		return true, fmt.Errorf("attach to the hub: %w", err)
	}
	defer b.o.Hub.Detach(c)
	b.log.Info("mqtt: connected", "device", b.device, "topics", b.base)
	b.meta = "" // the broker may have lost what it held: send it all again
	for t := range b.discovery {
		b.discovery[t] = ""
	}
	for name := range b.alarms {
		b.alarms[name] = ""
	}
	for id := range b.errs {
		b.errs[id] = staleError // set again, or cleared, at the sensor's next reading
	}
	var (
		cursor    uint64
		rs        []wire.Reading
		metaDue   bool
		alarmsDue bool
		settled   <-chan struct{} // while $meta waits: the plugins' startup moved
	)
	var deadline <-chan time.Time // while $meta waits: the longest it waits
	if !b.described {
		t := time.NewTimer(time.Until(b.metaDeadline))
		defer t.Stop()
		deadline = t.C
	}
	for {
		published := b.o.Hub.Published()
		select {
		case <-dirty:
			metaDue, alarmsDue = true, true
		default:
		}
		if alarmsDue {
			if err := b.publishAlarms(ctx, cli); err != nil {
				return true, err
			}
			alarmsDue = false
		}
		if metaDue && !b.described {
			var ok bool
			ok, settled = true, nil
			if b.o.Described != nil {
				ok, settled = b.o.Described()
			}
			if ok || !time.Now().Before(b.metaDeadline) {
				if !ok {
					b.log.Warn("mqtt: plugins still starting: publishing $meta without them", "waited", mqttDescribeWait)
				}
				b.described, settled, deadline = true, nil, nil
			}
		}
		if metaDue && b.described {
			if err := b.publishMeta(ctx, cli); err != nil {
				return true, err
			}
			metaDue = false
		}
		rs, cursor = b.o.Hub.Readings(c, cursor, rs[:0])
		for _, r := range rs {
			if err := b.publishReading(ctx, cli, r); err != nil {
				return true, err
			}
		}
		select {
		case <-ctx.Done():
			return true, nil
		case <-cli.Done():
			// The client calls its handlers after Done, the broker's
			// reason maybe after an error it caused.
			var err error
			select {
			case err = <-broker:
			case err = <-why:
				select {
				case err = <-broker:
				case <-time.After(100 * time.Millisecond):
				}
			case <-time.After(time.Second):
				return true, errors.New("connection lost")
			}
			return true, fmt.Errorf("connection lost: %w", err)
		case <-published:
		case <-dirty:
			metaDue, alarmsDue = true, true
		case name := <-b.strays:
			if err := b.clearStray(ctx, cli, name); err != nil {
				return true, err
			}
		case <-settled:
			metaDue = true
		case <-deadline:
			metaDue = true
		}
	}
}

// Check connects to the broker m names, as the bridge would but under a
// client id of its own (the running bridge keeps its session), and
// disconnects. It says where it connected. maxFrame is max_frame (a
// WebSocket broker's messages may be that large).
func Check(ctx context.Context, m config.MQTT, maxFrame int64) (string, error) {
	b, err := New(Options{MQTT: m, Limits: func() Limits { return Limits{MaxFrame: maxFrame} }})
	if err != nil {
		return "", err
	}
	if b == nil {
		return "", errors.New("no mqtt_url")
	}
	cli, err := b.connect(ctx, "livecgi-"+b.device+"-check", false, nil, func(error) {}, func(error) {})
	if err != nil {
		return "", err
	}
	cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
	return fmt.Sprintf("%s as %q: topics %s…", b.url.Redacted(), "livecgi-"+b.device, b.base), nil
}

// dial opens the connection mqtt_url names.
func (b *Bridge) dial(ctx context.Context) (net.Conn, error) {
	tc, err := b.tlsConfig()
	if err != nil {
		return nil, err
	}
	switch b.url.Scheme {
	case "ws", "wss":
		return wsconn.Dial(ctx, b.url, wsconn.Options{TLS: tc, Subprotocol: "mqtt", MaxPayload: b.o.Limits().MaxFrame + 64<<10})
	}
	var d net.Dialer
	if tc != nil {
		td := tls.Dialer{NetDialer: &d, Config: tc}
		return td.DialContext(ctx, "tcp", b.url.Host)
	}
	return d.DialContext(ctx, "tcp", b.url.Host)
}

// publish sends one message. At QoS 1 it waits only for a free packet
// id (the broker's receive maximum), not for the ack: a broker far away
// costs the bridge no round trip per message, and a stalled one is found
// by the keep-alive.
func (b *Bridge) publish(ctx context.Context, cli *paho.Client, p *paho.Publish) error {
	var err error
	if p.QoS == 0 {
		_, err = cli.Publish(ctx, p)
	} else {
		_, err = cli.PublishWithOptions(ctx, p, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", p.Topic, err)
	}
	return nil
}

// retained publishes payload on topic at QoS 1, retained.
func (b *Bridge) retained(ctx context.Context, cli *paho.Client, topic string, payload []byte) error {
	return b.publish(ctx, cli, &paho.Publish{Topic: topic, Payload: payload, QoS: 1, Retain: true})
}

// publishReading publishes r's value on its sensor's topic: a number as
// the WebSocket's frames write it (wire.AppendNumber), a bool as JSON,
// text as it is. A reading that carries an error instead
// of a value leaves the retained value as it was (the last good one), and
// its error goes to <sensor>/$error, retained, until a reading without
// one clears it: a subscriber can tell a current value from a stale one.
func (b *Bridge) publishReading(ctx context.Context, cli *paho.Client, r wire.Reading) error {
	if err := b.publishError(ctx, cli, r.Sensor, r.Error); err != nil {
		return err
	}
	var payload []byte
	switch v := r.Value.(type) {
	case float64:
		payload = wire.AppendNumber(nil, v)
	case bool:
		payload = strconv.AppendBool(nil, v)
	case string:
		payload = []byte(v)
	default:
		return nil
	}
	if err := b.publish(ctx, cli, &paho.Publish{Topic: b.base + r.Sensor, Payload: payload, QoS: b.m.QoS, Retain: b.m.Retain}); err != nil {
		return err
	}
	if b.m.Retain {
		if b.published == nil {
			b.published = map[string]bool{}
		}
		b.published[r.Sensor] = true
	}
	return nil
}

// staleError stands, in Bridge.errs, for a $error the broker may or may
// not hold (after a reconnect): no error text equals it.
const staleError = "\x00"

// publishError sets sensor's retained $error to msg, or clears it when
// msg is empty, if that changes what the broker holds.
func (b *Bridge) publishError(ctx context.Context, cli *paho.Client, sensor, msg string) error {
	if b.errs[sensor] == msg {
		return nil
	}
	if err := b.retained(ctx, cli, b.base+sensor+"/$error", []byte(msg)); err != nil {
		return err
	}
	if msg == "" {
		delete(b.errs, sensor)
		return nil
	}
	if b.errs == nil {
		b.errs = map[string]string{}
	}
	b.errs[sensor] = msg
	return nil
}

// meta is what base$meta holds.
type meta struct {
	Device   string            `json:"device"`
	Server   string            `json:"server"`
	Sensors  []wire.Sensor     `json:"sensors"`
	Commands []wire.Command    `json:"commands"`
	Plugins  []wire.PluginInfo `json:"plugins"`
}

// publishMeta publishes $meta when it changed, clears the retained value
// of sensors that are gone, and keeps Home Assistant's configs in step.
// It is called once the plugins livecgid started with have described
// themselves (Bridge.described), and again at each change of their
// descriptors.
func (b *Bridge) publishMeta(ctx context.Context, cli *paho.Client) error {
	h := b.o.Hub.Hello()
	m := meta{Device: b.device, Server: h.Server, Sensors: h.Sensors, Commands: h.Commands, Plugins: h.Plugins}
	js, _ := json.Marshal(m)
	if string(js) == b.meta {
		return nil
	}
	if err := b.retained(ctx, cli, b.base+"$meta", js); err != nil {
		return err
	}
	b.meta = string(js)
	known := map[string]bool{}
	for _, s := range h.Sensors {
		known[s.ID] = true
	}
	for id := range b.published {
		if !known[id] { // an empty retained message deletes the retained one
			if err := b.retained(ctx, cli, b.base+id, nil); err != nil {
				return err
			}
			delete(b.published, id)
		}
	}
	for id := range b.errs {
		if !known[id] {
			if err := b.publishError(ctx, cli, id, ""); err != nil {
				return err
			}
		}
	}
	if b.m.HomeAssistant {
		return b.publishDiscovery(ctx, cli, h)
	}
	return nil
}

// received returns the handler of messages from the broker: commands on
// base cmd/<id>. Each runs in a goroutine of its own, at most
// mqttMaxInFlight at once.
func (b *Bridge) received(ctx context.Context) func(paho.PublishReceived) (bool, error) {
	return func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		if name, ok := strings.CutPrefix(p.Topic, b.base+"$alarm/"); ok {
			if len(p.Payload) > 0 {
				select {
				case b.strays <- name:
				default: // full: the next connection looks again
				}
			}
			return true, nil
		}
		take := b.command
		name, ok := strings.CutPrefix(p.Topic, b.base+"cmd/")
		if !ok {
			if name, ok = strings.CutPrefix(p.Topic, b.base+"history/"); !ok {
				return false, nil
			}
			take = b.history
		}
		select {
		case b.sem <- struct{}{}:
			go func() {
				defer func() { <-b.sem }()
				take(ctx, pr.Client, name, p)
			}()
		default: // answered at QoS 0: this goroutine must not wait for an ack
			b.answer(ctx, pr.Client, b.resultTopic(p.Topic, name), p, "", wire.Error{Code: wire.ErrRateLimited,
				Message: fmt.Sprintf("%d requests from the broker already running: request dropped", mqttMaxInFlight)}, 0)
		}
		return true, nil
	}
}

// command makes one command message the client frame a WebSocket would
// carry, {"type": "command", "id": ID, "name": NAME, "args": PAYLOAD}
// (the payload is the arguments, none is {}; the id is the correlation
// data, if any), takes it through Options.Frames and publishes the
// answer.
func (b *Bridge) command(ctx context.Context, cli *paho.Client, name string, p *paho.Publish) {
	id := b.requestID(p)
	to := b.base + "result/" + name
	args := p.Payload
	if len(bytes.TrimSpace(args)) == 0 {
		args = []byte("{}")
	}
	// One JSON value, so that nothing of the payload can be another
	// member of the frame (a "name" of its own).
	if !json.Valid(args) {
		b.answer(ctx, cli, to, p, id, wire.Error{Code: wire.ErrBadJSON, Message: "payload is not JSON: want the command's arguments as an object, e.g. {\"name\": 1}"}, 1)
		return
	}
	frame, _ := json.Marshal(struct {
		Type string          `json:"type"`
		ID   string          `json:"id"`
		Name string          `json:"name"`
		Args json.RawMessage `json:"args"`
	}{wire.TypeCommand, id, name, args})
	b.send(ctx, cli, to, p, frame)
}

// history makes one history message the client frame a WebSocket would
// carry, {"type": "history", "id": ID, "sensor": NAME, "from", "to",
// "points"} (from the payload, each optional; the id is the correlation
// data, if any), takes it through Options.Frames and publishes the
// answer on base history/<name>/result.
func (b *Bridge) history(ctx context.Context, cli *paho.Client, name string, p *paho.Publish) {
	id := b.requestID(p)
	to := b.resultTopic(p.Topic, name)
	var q struct {
		From   int64 `json:"from"`
		To     int64 `json:"to"`
		Points int   `json:"points"`
	}
	if payload := bytes.TrimSpace(p.Payload); len(payload) > 0 {
		dec := json.NewDecoder(bytes.NewReader(payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&q); err != nil {
			b.answer(ctx, cli, to, p, id, wire.Error{Code: wire.ErrBadMessage, Message: "payload: want {\"from\": ms, \"to\": ms, \"points\": n}, each optional: " + err.Error()}, 1)
			return
		}
	}
	frame, _ := json.Marshal(wire.HistoryRequest{Type: wire.TypeHistory, ID: id, Sensor: name, From: q.From, To: q.To, Points: q.Points})
	b.send(ctx, cli, to, p, frame)
}

// requestID is the id of a request message: its correlation data, if
// any (up to 64 bytes of UTF-8), else mqtt-<n>.
func (b *Bridge) requestID(p *paho.Publish) string {
	if p.Properties != nil {
		if cd := p.Properties.CorrelationData; len(cd) > 0 && len(cd) <= 64 && utf8.Valid(cd) {
			return string(cd)
		}
	}
	return "mqtt-" + strconv.FormatUint(b.cmdN.Add(1), 10)
}

// resultTopic is where the answer to a message on topic goes by default:
// base result/<command id> for a command, base history/<sensor id>/result
// for a history request.
func (b *Bridge) resultTopic(topic, name string) string {
	if strings.HasPrefix(topic, b.base+"history/") {
		return b.base + "history/" + name + "/result"
	}
	return b.base + "result/" + name
}

// send takes frame through Options.Frames and publishes its answer to
// to (or the response topic).
func (b *Bridge) send(ctx context.Context, cli *paho.Client, to string, p *paho.Publish, frame []byte) {
	res := b.o.Frames(ctx, b.who, b.url.Host, b.log, frame)
	if len(res) == 0 {
		return
	}
	var e wire.Error
	if json.Unmarshal(res, &e) == nil && e.Type == wire.TypeError {
		b.log.Info("mqtt: request refused", "topic", p.Topic, "code", e.Code, "err", e.Message)
	}
	b.reply(ctx, cli, to, p, res, 1)
}

// answer publishes an error frame for a request that was not taken.
func (b *Bridge) answer(ctx context.Context, cli *paho.Client, to string, p *paho.Publish, id string, e wire.Error, qos byte) {
	e.Type, e.ID = wire.TypeError, id
	res, _ := json.Marshal(e)
	b.log.Info("mqtt: request refused", "topic", p.Topic, "code", e.Code, "err", e.Message)
	b.reply(ctx, cli, to, p, res, qos)
}

// reply publishes an answer, with its correlation data, to its MQTT 5
// response topic when config.MQTT.ResponseTopic allows that one (under
// mqtt_reply_prefix, or the device's own result/), else to to.
func (b *Bridge) reply(ctx context.Context, cli *paho.Client, to string, p *paho.Publish, res []byte, qos byte) {
	out := &paho.Publish{Topic: to, Payload: res, QoS: qos}
	if pp := p.Properties; pp != nil {
		if rt := pp.ResponseTopic; rt != "" {
			if b.m.ResponseTopic(b.device, rt) {
				out.Topic = rt
			} else {
				b.log.Info("mqtt: response topic not used: it is not under mqtt_reply_prefix; result sent to "+out.Topic, "topic", p.Topic, "response_topic", rt)
			}
		}
		if len(pp.CorrelationData) > 0 {
			out.Properties = &paho.PublishProperties{CorrelationData: pp.CorrelationData}
		}
	}
	if _, err := cli.Publish(ctx, out); err != nil {
		b.log.Info("mqtt: result not delivered", "topic", out.Topic, "err", err)
	}
}

// publishAlarms publishes the state of each alarm that changed since
// the broker got it, retained, as JSON (wire.Alarm without its type),
// and clears the retained state of alarms no longer configured. It
// publishes the current states: of transitions that come faster than
// the broker takes them, the last one is published. When alarms came or
// went, Home Assistant's configs follow.
func (b *Bridge) publishAlarms(ctx context.Context, cli *paho.Client) error {
	as := b.o.Hub.Alarms()
	if b.alarms == nil {
		b.alarms = map[string]string{}
	}
	known := make(map[string]bool, len(as))
	changed := false // the set of alarms
	for _, a := range as {
		known[a.Name] = true
		js, _ := json.Marshal(a)
		held, ok := b.alarms[a.Name]
		changed = changed || !ok
		if held == string(js) {
			continue
		}
		if err := b.retained(ctx, cli, b.base+"$alarm/"+a.Name, js); err != nil {
			return err
		}
		b.alarms[a.Name] = string(js)
	}
	for name := range b.alarms {
		if !known[name] {
			if err := b.retained(ctx, cli, b.base+"$alarm/"+name, nil); err != nil {
				return err
			}
			delete(b.alarms, name)
			changed = true
		}
	}
	if changed && b.described && b.m.HomeAssistant {
		return b.publishDiscovery(ctx, cli, b.o.Hub.Hello())
	}
	return nil
}

// clearStray clears the retained state of alarm name, which the broker
// holds, if it is not configured: an alarm removed while livecgid was
// stopped (and its Home Assistant config, with mqtt_homeassistant).
func (b *Bridge) clearStray(ctx context.Context, cli *paho.Client, name string) error {
	for _, a := range b.o.Hub.Alarms() {
		if a.Name == name {
			return nil
		}
	}
	if _, ok := b.alarms[name]; ok {
		return nil // being removed by publishAlarms
	}
	b.log.Info("mqtt: clearing the retained state of an alarm no longer configured", "alarm", name)
	if err := b.retained(ctx, cli, b.base+"$alarm/"+name, nil); err != nil {
		return err
	}
	if b.m.HomeAssistant {
		return b.retained(ctx, cli, haAlarmTopic(b.device, name), nil)
	}
	return nil
}

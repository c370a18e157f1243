package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livecgi/livecgi/proto/auth"
	"github.com/livecgi/livecgi/proto/trust"
)

// MQTT is the broker bridge's configuration (the mqtt_* keys and
// device_id; cmd/livecgid/README.md, "Many devices: MQTT"). With URL empty there is no
// bridge at all.
type MQTT struct {
	URL           string        // tcp://, mqtt://, tls://, mqtts://, ssl://, ws:// or wss:// broker address
	DeviceID      string        // the topic level of this device; "" = DefaultDeviceID
	Prefix        string        // first topic level
	ReplyPrefix   string        // topics (levels joined by '/') under which a command's response topic is used; "" = none: results go to result/
	Username      string        // broker user; "" = none
	PasswordFile  string        // file whose first line is the broker password
	CA            string        // PEM CAs that sign the broker's certificate; "" = the system's
	Cert, Key     string        // PEM client certificate and key, for brokers that ask for one
	QoS           byte          // of readings (0 or 1); $state, $meta, results and discovery use 1
	Retain        bool          // readings are retained
	KeepAlive     time.Duration // MQTT keep-alive; the broker declares the device gone after 1.5 of it
	Role          string        // what the broker's clients may do: viewer (default) or operator
	HomeAssistant bool          // publish Home Assistant discovery configs
}

// DefaultMQTT is the bridge's configuration before the file.
func DefaultMQTT() MQTT {
	return MQTT{Prefix: "livecgi", Retain: true, KeepAlive: 30 * time.Second, Role: auth.RoleViewer}
}

// setMQTT applies the mqtt_* keys and device_id.
func (c *Config) setMQTT(k, v string) (bool, error) {
	m := &c.MQTT
	str := map[string]*string{
		"mqtt_url": &m.URL, "device_id": &m.DeviceID, "mqtt_prefix": &m.Prefix, "mqtt_username": &m.Username,
		"mqtt_password_file": &m.PasswordFile, "mqtt_ca": &m.CA, "mqtt_cert": &m.Cert, "mqtt_key": &m.Key,
		"mqtt_role": &m.Role, "mqtt_reply_prefix": &m.ReplyPrefix,
	}
	if p, ok := str[k]; ok {
		*p = v
		return true, nil
	}
	switch k {
	case "mqtt_qos":
		if v != "0" && v != "1" {
			return true, valueError("want 0 or 1")
		}
		m.QoS = v[0] - '0'
	case "mqtt_retain", "mqtt_homeassistant":
		b, err := parseBool(v)
		if k == "mqtt_retain" {
			m.Retain = b
		} else {
			m.HomeAssistant = b
		}
		return true, err
	case "mqtt_keepalive":
		d, err := parseDuration(v)
		m.KeepAlive = d
		return true, err
	default:
		return false, nil
	}
	return true, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, valueError("want on or off")
}

// validateMQTT checks the bridge's keys together; without mqtt_url the
// others are not looked at.
func (c *Config) validateMQTT() error {
	m := c.MQTT
	if m.URL == "" {
		return nil
	}
	if _, _, _, err := m.Broker(); err != nil {
		return err
	}
	if m.DeviceID != "" && !ValidTopicLevel(m.DeviceID) {
		return fmt.Errorf("device_id %q: want 1-64 letters, digits, '-', '_' or '.'", m.DeviceID)
	}
	if !ValidTopicLevel(m.Prefix) {
		return fmt.Errorf("mqtt_prefix %q: want 1-64 letters, digits, '-', '_' or '.'", m.Prefix)
	}
	if m.ReplyPrefix != "" {
		for _, l := range strings.Split(m.ReplyPrefix, "/") {
			if !ValidTopicLevel(l) {
				return fmt.Errorf("mqtt_reply_prefix %q: want topic levels of 1-64 letters, digits, '-', '_' or '.', joined by '/', e.g. replies", m.ReplyPrefix)
			}
		}
		if first, _, _ := strings.Cut(m.ReplyPrefix, "/"); first == m.Prefix || first == HomeAssistantPrefix {
			return fmt.Errorf("mqtt_reply_prefix %q: not under %s/: a command could make the device write over the topics of devices or of Home Assistant", m.ReplyPrefix, first)
		}
	}
	if !auth.ValidRole(m.Role) {
		return fmt.Errorf("mqtt_role %q: want viewer or operator", m.Role)
	}
	if (m.Cert == "") != (m.Key == "") {
		return errors.New("mqtt_cert and mqtt_key go together: set both or neither")
	}
	if m.KeepAlive < time.Second || m.KeepAlive > 18*time.Hour {
		return errors.New("mqtt_keepalive must be between 1s and 18h")
	}
	for k, p := range map[string]string{"mqtt_password_file": m.PasswordFile, "mqtt_ca": m.CA, "mqtt_cert": m.Cert, "mqtt_key": m.Key} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q: want an absolute path", k, p)
		}
	}
	if (m.CA != "" || m.Cert != "") && !m.TLS() {
		return fmt.Errorf("mqtt_ca and mqtt_cert need a broker over TLS: tls://, mqtts://, ssl:// or wss://, not %s", m.URL)
	}
	if m.PasswordFile != "" && m.Username == "" {
		return errors.New("mqtt_password_file needs mqtt_username")
	}
	return nil
}

// HomeAssistantPrefix is the first level of Home Assistant's discovery
// topics (its default discovery prefix), where mqtt_homeassistant
// publishes.
const HomeAssistantPrefix = "homeassistant"

// ResponseTopic reports whether the bridge of device may publish a
// command's result to topic, a response topic its sender named: only
// under mqtt_reply_prefix, or under the device's own result/ topics. Any
// other topic, however the broker's ACLs would let the device write it,
// is not used (the result goes to result/<command id>): whoever may
// publish a command must not be able to make the device write, with its
// own credentials, over another device's readings or state, or into Home
// Assistant's configuration. Wildcards, NUL and topics over 64 KiB are
// never used.
func (m MQTT) ResponseTopic(device, topic string) bool {
	if topic == "" || len(topic) > 65535 || strings.ContainsAny(topic, "+#\x00") || !utf8.ValidString(topic) {
		return false
	}
	if rest, ok := strings.CutPrefix(topic, m.Prefix+"/"+device+"/result/"); ok && rest != "" {
		return true
	}
	rest, ok := strings.CutPrefix(topic, m.ReplyPrefix+"/")
	return m.ReplyPrefix != "" && ok && rest != ""
}

// Broker returns mqtt_url checked and split: its scheme (one the bridge
// speaks), host:port (the scheme's default port when none is given) and
// path ("" or starting with /). It parses by hand: the stub, which
// validates the same file, links no net/url.
func (m MQTT) Broker() (scheme, hostport, path string, err error) {
	scheme, rest, ok := strings.Cut(m.URL, "://")
	port := map[string]string{"tcp": "1883", "mqtt": "1883", "tls": "8883", "mqtts": "8883", "ssl": "8883", "ws": "80", "wss": "443"}[scheme]
	if !ok || port == "" {
		return "", "", "", fmt.Errorf("mqtt_url %q: want tcp://, mqtt://, tls://, mqtts://, ssl://, ws:// or wss://, e.g. tcp://broker.lan:1883", m.URL)
	}
	hostport, path, slash := strings.Cut(rest, "/")
	if slash {
		path = "/" + path
	}
	host := hostport
	if h, p, found := strings.Cut(strings.TrimPrefix(hostport, "["), "]"); strings.HasPrefix(hostport, "[") && found {
		host = "[" + h + "]"
		if p != "" && (p[0] != ':' || p == ":") {
			host = ""
		}
	} else if h, p, found := strings.Cut(hostport, ":"); found {
		host = h
		if p == "" || strings.Trim(p, "0123456789") != "" {
			host = ""
		}
	}
	if host == "" || host == "[]" || strings.ContainsAny(rest, "@?# \t") {
		return "", "", "", fmt.Errorf("mqtt_url %q: want scheme://host[:port][/path], without user (mqtt_username) or query", m.URL)
	}
	if host == hostport {
		hostport += ":" + port
	}
	return scheme, hostport, path, nil
}

// TLS reports whether the broker is reached over TLS.
func (m MQTT) TLS() bool {
	scheme, _, _, err := m.Broker()
	return err == nil && (scheme == "tls" || scheme == "mqtts" || scheme == "ssl" || scheme == "wss")
}

// Device returns device_id, or the default: the host name's first label,
// with characters a topic level should not hold replaced by '_'.
func (m MQTT) Device() string {
	if m.DeviceID != "" {
		return m.DeviceID
	}
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	b := []byte(h)
	for i, ch := range b {
		if !topicByte(ch) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "device"
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// ValidTopicLevel reports whether s can be one level of the bridge's
// topics: 1 to 64 of [A-Za-z0-9._-] (no MQTT wildcard or separator, and
// nothing a Home Assistant object id would refuse).
func ValidTopicLevel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		if !topicByte(s[i]) {
			return false
		}
	}
	return true
}

func topicByte(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.'
}

// Password reads the broker password: the first line of
// mqtt_password_file, which must be trusted and not readable by others.
func (m MQTT) Password() (string, error) {
	if m.PasswordFile == "" {
		return "", nil
	}
	if err := trust.Check(m.PasswordFile, trust.Options{Secret: true, StickyDirs: true}); err != nil {
		return "", fmt.Errorf("mqtt_password_file: %w", err)
	}
	b, err := os.ReadFile(m.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("mqtt_password_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livecgi/livecgi/proto/auth"
)

func TestMQTTConfig(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		check    func(MQTT) bool
		wantErr  string
	}{
		{"off by default", "", func(m MQTT) bool {
			return m.URL == "" && m.Prefix == "livecgi" && m.Retain && m.QoS == 0 && m.Role == auth.RoleViewer && m.KeepAlive == 30*time.Second && !m.HomeAssistant
		}, ""},
		{"every key", "mqtt_url = mqtts://broker.lan\ndevice_id = pump-3\nmqtt_prefix = plant.a\nmqtt_username = dev\n" +
			"mqtt_password_file = /etc/livecgi/mqtt.pw\nmqtt_ca = /etc/ca.pem\nmqtt_cert = /etc/c.pem\nmqtt_key = /etc/k.pem\n" +
			"mqtt_qos = 1\nmqtt_retain = off\nmqtt_keepalive = 1m\nmqtt_role = operator\nmqtt_homeassistant = on\nmqtt_reply_prefix = plant.a-replies/x", func(m MQTT) bool {
			_, host, _, err := m.Broker()
			return err == nil && host == "broker.lan:8883" && m.TLS() && m.Device() == "pump-3" && m.Prefix == "plant.a" && m.ReplyPrefix == "plant.a-replies/x" &&
				m.QoS == 1 && !m.Retain && m.KeepAlive == time.Minute && m.Role == auth.RoleOperator && m.HomeAssistant
		}, ""},
		{"keys unchecked without a url", "device_id = a/b", func(m MQTT) bool { return m.DeviceID == "a/b" }, ""},
		{"websockets with a path", "mqtt_url = ws://broker.lan:9001/mqtt", func(m MQTT) bool {
			scheme, host, path, _ := m.Broker()
			return scheme+"://"+host+path == "ws://broker.lan:9001/mqtt" && !m.TLS()
		}, ""},
		{"scheme", "mqtt_url = http://broker.lan", nil, "want tcp://, mqtt://, tls://"},
		{"no host", "mqtt_url = tcp://", nil, "want scheme://host[:port]"},
		{"user in url", "mqtt_url = tcp://dev:pw@broker.lan", nil, "without user (mqtt_username)"},
		{"bad port", "mqtt_url = tcp://broker.lan:x", nil, "want scheme://host[:port]"},
		{"empty port", "mqtt_url = tcp://broker.lan:", nil, "want scheme://host[:port]"},
		{"query", "mqtt_url = ws://broker.lan/mqtt?x=1", nil, "without user (mqtt_username) or query"},
		{"wildcard device", "mqtt_url = tcp://b\ndevice_id = +", nil, `device_id "+"`},
		{"separator in prefix", "mqtt_url = tcp://b\nmqtt_prefix = a/b", nil, `mqtt_prefix "a/b"`},
		{"reply prefix with a wildcard", "mqtt_url = tcp://b\nmqtt_reply_prefix = replies/+", nil, `mqtt_reply_prefix "replies/+": want topic levels`},
		{"reply prefix with an empty level", "mqtt_url = tcp://b\nmqtt_reply_prefix = replies/", nil, `mqtt_reply_prefix "replies/": want topic levels`},
		{"reply prefix over the devices", "mqtt_url = tcp://b\nmqtt_reply_prefix = livecgi/replies", nil, `mqtt_reply_prefix "livecgi/replies": not under livecgi/`},
		{"reply prefix over another prefix", "mqtt_url = tcp://b\nmqtt_prefix = plant\nmqtt_reply_prefix = plant", nil, `not under plant/`},
		{"reply prefix over Home Assistant", "mqtt_url = tcp://b\nmqtt_reply_prefix = homeassistant/r", nil, `not under homeassistant/`},
		{"qos 2", "mqtt_qos = 2", nil, "want 0 or 1"},
		{"bool", "mqtt_retain = maybe", nil, "want on or off"},
		{"role", "mqtt_url = tcp://b\nmqtt_role = admin", nil, `mqtt_role "admin"`},
		{"cert without key", "mqtt_url = tls://b\nmqtt_cert = /c.pem", nil, "mqtt_cert and mqtt_key go together"},
		{"relative path", "mqtt_url = tls://b\nmqtt_ca = ca.pem", nil, `mqtt_ca "ca.pem": want an absolute path`},
		{"CA without TLS", "mqtt_url = tcp://b\nmqtt_ca = /ca.pem", nil, "mqtt_ca and mqtt_cert need a broker over TLS"},
		{"password without user", "mqtt_url = tcp://b\nmqtt_password_file = /pw", nil, "mqtt_password_file needs mqtt_username"},
		{"keepalive", "mqtt_url = tcp://b\nmqtt_keepalive = 10ms", nil, "mqtt_keepalive must be between 1s and 18h"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c.MQTT) {
				t.Errorf("got %+v", c.MQTT)
			}
		})
	}
}

func TestMQTTDevice(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	d := MQTT{}.Device()
	if !ValidTopicLevel(d) {
		t.Fatalf("default device id %q (host %q) is not a valid topic level", d, h)
	}
	first, _, _ := strings.Cut(h, ".")
	if len(first) <= 64 && ValidTopicLevel(first) && d != first {
		t.Errorf("default device id %q, want the host name's first label %q", d, first)
	}
	for _, bad := range []string{"", "a/b", "a+", "#", "a b", strings.Repeat("x", 65), "é"} {
		if ValidTopicLevel(bad) {
			t.Errorf("ValidTopicLevel(%q) = true", bad)
		}
	}
}

func TestMQTTPassword(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mqtt.pw")
	if err := os.WriteFile(p, []byte("s3cret\r\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := MQTT{PasswordFile: p}
	if pw, err := m.Password(); err != nil || pw != "s3cret" {
		t.Errorf("Password() = %q, %v; want the first line", pw, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Password(); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Errorf("a password file readable by others: err = %v", err)
	}
	m.PasswordFile = filepath.Join(dir, "missing")
	if _, err := m.Password(); err == nil || !strings.Contains(err.Error(), "mqtt_password_file") {
		t.Errorf("a missing password file: err = %v", err)
	}
}

func TestMQTTBroker(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://broker.lan":      "tcp broker.lan:1883 ",
		"mqtts://10.0.0.1":      "mqtts 10.0.0.1:8883 ",
		"tls://broker.lan:9999": "tls broker.lan:9999 ",
		"ws://[fe80::1]/mqtt":   "ws [fe80::1]:80 /mqtt",
		"wss://[::1]:8443/a/b":  "wss [::1]:8443 /a/b",
		"ssl://b:1/":            "ssl b:1 /",
		"ws://[::1]x/":          "error",
		"tcp://b c":             "error",
		"tcp://[::1":            "error",
		"TCP://b":               "error",
		"tcp:/b":                "error",
	} {
		scheme, host, path, err := MQTT{URL: in}.Broker()
		got := scheme + " " + host + " " + path
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("Broker(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

// TestMQTTResponseTopic: a command's response topic is used only under
// mqtt_reply_prefix or the device's own result/; without a prefix, only
// the latter.
func TestMQTTResponseTopic(t *testing.T) {
	m := DefaultMQTT()
	m.ReplyPrefix = "fleet/replies"
	for topic, want := range map[string]bool{
		"fleet/replies/me":            true,
		"fleet/replies/a/b/c":         true,
		"livecgi/pump-3/result/x":     true,
		"livecgi/pump-3/result/":      false,
		"fleet/replies/":              false,
		"fleet/replies":               false,
		"fleet/repliesX/me":           false,
		"fleet/other":                 false,
		"otherfleet/dev2/$state":      false,
		"livecgi/dev2/$state":         false,
		"livecgi/pump-3/$state":       false,
		"livecgi/pump-3/system.load1": false,
		"livecgi/pump-3/cmd/x":        false,
		"homeassistant/x/y/z/config":  false,
		"fleet/replies/+":             false,
		"fleet/replies/#":             false,
		"fleet/replies/a\x00":         false,
		"fleet/replies/\xff":          false,
		"":                            false,
		"fleet/replies/" + strings.Repeat("x", 65535): false,
	} {
		if got := m.ResponseTopic("pump-3", topic); got != want {
			t.Errorf("ResponseTopic(%.40q) = %v, want %v", topic, got, want)
		}
	}
	m.ReplyPrefix = ""
	for topic, want := range map[string]bool{"livecgi/pump-3/result/x": true, "fleet/replies/me": false, "/me": false, "me": false} {
		if got := m.ResponseTopic("pump-3", topic); got != want {
			t.Errorf("without mqtt_reply_prefix: ResponseTopic(%q) = %v, want %v", topic, got, want)
		}
	}
}

package wire

import "strings"

// MaxID is the longest id: of a plugin, of one of its sensors or
// commands, of a command frame.
const MaxID = 64

// ValidID reports whether id is lower_snake (a letter or _ first, then
// letters, digits and _; at most MaxID bytes): the form of plugin,
// sensor and command ids. Plugins are held to it when they describe
// themselves (proto.CheckDescription), clients when they name a command
// (DecodeClient).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxID {
		return false
	}
	for i, r := range id {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ValidName reports whether name is a sensor or command name as frames
// carry it: "<plugin id>.<id>", both ValidID, so at most 2×MaxID+1
// bytes.
func ValidName(name string) bool {
	p, id, ok := strings.Cut(name, ".")
	return ok && ValidID(p) && ValidID(id)
}

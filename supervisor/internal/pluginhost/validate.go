package pluginhost

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/livecgi/livecgi/proto/wire"
)

// ValidateArgs checks a command's arguments (as decoded with UseNumber)
// against its declared schema and returns them as a JSON object for the
// plugin. Unknown arguments, missing required ones, wrong types, numbers
// out of range and text outside the enum are errors naming the argument.
func ValidateArgs(schema []wire.Arg, args map[string]any) ([]byte, error) {
	out := make(map[string]any, len(args))
	for name := range args {
		if !slices.ContainsFunc(schema, func(a wire.Arg) bool { return a.Name == name }) {
			return nil, fmt.Errorf("unknown argument %q", name)
		}
	}
	for _, a := range schema {
		v, ok := args[a.Name]
		if !ok || v == nil {
			if a.Required {
				return nil, fmt.Errorf("argument %q is required", a.Name)
			}
			continue
		}
		switch a.Type {
		case wire.ValueNumber:
			n, ok := v.(json.Number)
			if !ok {
				return nil, fmt.Errorf("argument %q: want a number, got %s", a.Name, jsonKind(v))
			}
			f, err := n.Float64()
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("argument %q: %s is not a finite number", a.Name, n)
			}
			if a.Min != nil && f < *a.Min || a.Max != nil && f > *a.Max {
				return nil, fmt.Errorf("argument %q: %v out of range [%s, %s]", a.Name, f, bound(a.Min, "-∞"), bound(a.Max, "+∞"))
			}
			out[a.Name] = f
		case wire.ValueText:
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("argument %q: want text, got %s", a.Name, jsonKind(v))
			}
			if len(a.Enum) > 0 && !slices.Contains(a.Enum, s) {
				return nil, fmt.Errorf("argument %q: %q is not one of %s", a.Name, s, strings.Join(a.Enum, ", "))
			}
			out[a.Name] = s
		case wire.ValueBool:
			b, ok := v.(bool)
			if !ok {
				return nil, fmt.Errorf("argument %q: want true or false, got %s", a.Name, jsonKind(v))
			}
			out[a.Name] = b
		default:
			return nil, fmt.Errorf("argument %q: unknown type %q in schema", a.Name, a.Type)
		}
	}
	return json.Marshal(out)
}

func bound(p *float64, inf string) string {
	if p == nil {
		return inf
	}
	return fmt.Sprint(*p)
}

func jsonKind(v any) string {
	switch v.(type) {
	case json.Number:
		return "a number"
	case string:
		return "text"
	case bool:
		return "a bool"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "null"
}

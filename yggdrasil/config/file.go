package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// UnknownKeyError is returned by ReadFile for a file that names keys yggd
// does not know (a typo, or a key of another version).
type UnknownKeyError struct {
	File string
	Keys []string // sorted
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("read config %s: unknown key %s", e.File, strings.Join(e.Keys, ", "))
}

// ReadFile reads the TOML file into cfg over what cfg holds, and sets
// cfg.File. A key of the wrong type is told in words; unknown keys are an
// *UnknownKeyError. It does not validate: see Validate.
func ReadFile(file string, cfg *Config) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read config %s: %w", file, err)
	}
	var generic map[string]any
	if _, err := toml.Decode(string(text), &generic); err != nil {
		return fmt.Errorf("read config %s: %w", file, err)
	}
	if err := checkTypes(generic); err != nil {
		return fmt.Errorf("read config %s: %w", file, err)
	}
	md, err := toml.Decode(string(text), cfg)
	if err != nil {
		return fmt.Errorf("read config %s: %w", file, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return &UnknownKeyError{File: file, Keys: keys}
	}
	cfg.File = file
	return nil
}

// tomlKind is the TOML type a configuration key takes, in words, with an
// example.
type tomlKind struct {
	what    string // "a list of URLs"
	example string // `["tcp://host:1883"]`
	ok      func(v any) bool
}

var (
	kindStrings  = tomlKind{"a list of strings", `["…"]`, isStringList}
	kindString   = tomlKind{"a string in quotes", `"…"`, func(v any) bool { _, ok := v.(string); return ok }}
	kindInt      = tomlKind{"a whole number", "1000", func(v any) bool { _, ok := v.(int64); return ok }}
	kindDuration = tomlKind{"a duration", `"90s"`, func(v any) bool {
		switch v.(type) {
		case string, int64, float64:
			return true
		}
		return false
	}}
)

func isStringList(v any) bool {
	l, ok := v.([]any)
	if !ok {
		return false
	}
	for _, e := range l {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

// keyKinds gives the kind of the keys whose example says more than the
// kind's.
var keyKinds = map[string]tomlKind{
	"broker":    {"a list of URLs", `["tcp://host:1883"]`, isStringList},
	"log-level": {"a string in quotes", `"info"`, kindString.ok},
	"cert-file": {"a file name in quotes", `"/etc/pki/consumer/cert.pem"`, kindString.ok},
	"key-file":  {"a file name in quotes", `"/etc/pki/consumer/key.pem"`, kindString.ok},
}

// checkTypes checks the type of each known key of a decoded configuration
// file, so that a mistake is told in words ("broker must be a list of
// URLs, like broker = [...]") rather than in the decoder's terms. Unknown
// keys are left to the decoder's metadata.
func checkTypes(file map[string]any) error {
	kinds := map[string]tomlKind{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("toml")
		if key == "" || key == "-" {
			continue
		}
		switch {
		case f.Type == reflect.TypeFor[Duration]():
			kinds[key] = kindDuration
		case f.Type.Kind() == reflect.Slice:
			kinds[key] = kindStrings
		case f.Type.Kind() == reflect.String:
			kinds[key] = kindString
		case f.Type.Kind() == reflect.Int:
			kinds[key] = kindInt
		}
		if k, ok := keyKinds[key]; ok {
			kinds[key] = k
		}
	}
	keys := make([]string, 0, len(file))
	for k := range file {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		k, ok := kinds[key]
		if ok && !k.ok(file[key]) {
			return fmt.Errorf("%s must be %s, like %s = %s", key, k.what, key, k.example)
		}
	}
	return nil
}

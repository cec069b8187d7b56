package yggdrasil

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeDataKeepsContentText(t *testing.T) {
	tests := []struct {
		name, payload, content string
	}{
		{"string", `{"type":"data","message_id":"m","version":1,"directive":"d","content":"Hello"}`, `"Hello"`},
		{"object_spacing_kept", `{"type":"data","message_id":"m","version":1,"directive":"d","content":{ "a" : 1 }}`, `{ "a" : 1 }`},
		{"absent", `{"type":"data","message_id":"m","version":1,"directive":"d"}`, ``},
		{"null", `{"type":"data","message_id":"m","version":1,"directive":"d","content":null}`, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecodeData([]byte(tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			if string(d.Content) != tc.content {
				t.Errorf("content = %q, want %q", d.Content, tc.content)
			}
		})
	}
}

// TestDecodeDataFailureKeepsIDs: a message that fails to decode anywhere
// inside is still answered to its top-level message_id.
func TestDecodeDataFailureKeepsIDs(t *testing.T) {
	const head = `{"type":"data","message_id":"m1","version":1,"directive":"echo","content":`
	tests := []struct {
		name, payload, id, directive string
	}{
		{"deep_nesting", head + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, "m1", "echo"},
		{"raw_nul_in_content", head + "\"a\x00b\"}", "m1", "echo"},
		{"bad_escape_elsewhere", `{"metadata":{"k":"\q"},"message_id":"m1","directive":"echo","version":1}`, "m1", "echo"},
		{"ids_after_bad_value", `{"content":[1,2,{"x":"}"}],"message_id":"m1","directive":"echo","type":7}`, "m1", "echo"},
		{"last_duplicate_wins", `{"message_id":"a","message_id":"m1","directive":"echo","version":"1"}`, "m1", "echo"},
		{"truncated_after_id", `{"message_id":"m1","directive":"echo","content":{"a":[`, "m1", "echo"},
		{"id_not_a_string", `{"message_id":5,"directive":"echo","content":[[[}`, "", "echo"},
		{"not_an_object", `["m1"]`, "", ""},
		{"empty", ``, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeData([]byte(tc.payload))
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeData error = %v, want a *DeliveryError", err)
			}
			if de.MessageID != tc.id || de.Directive != tc.directive {
				t.Errorf("ids = %q %q, want %q %q", de.MessageID, de.Directive, tc.id, tc.directive)
			}
		})
	}
}

// FuzzPeekIDs: peekIDs never panics, and whenever encoding/json can read
// the payload as an object it finds the same ids.
func FuzzPeekIDs(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		id, directive := peekIDs(p)
		var m struct {
			MessageID any `json:"message_id"`
			Directive any `json:"directive"`
		}
		if json.Unmarshal(p, &m) != nil || !utf8.Valid(p) {
			return
		}
		wantID, _ := m.MessageID.(string)
		wantDirective, _ := m.Directive.(string)
		if id != wantID || directive != wantDirective {
			t.Fatalf("peekIDs(%q) = %q %q, encoding/json reads %q %q", p, id, directive, wantID, wantDirective)
		}
	})
}

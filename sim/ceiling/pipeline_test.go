package ceiling

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

func TestEncodeAnswer(t *testing.T) {
	sent := time.Date(2026, 12, 1, 6, 0, 0, 123, time.UTC)
	for _, tc := range []struct {
		name    string
		content string
		wantErr bool
	}{
		{name: "string", content: `"hello"`},
		{name: "object", content: `{"a":[1,2,{"b":null}],"c":"<&>"}`},
		{name: "number", content: `42`},
		{name: "large_string", content: `"` + strings.Repeat("x", 64<<10) + `"`},
		{name: "empty_is_null", content: ``},
		{name: "not_json", content: `{"a":`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: "m<1>", ResponseTo: "r&1", Version: yggdrasil.Version,
				Sent: sent, Directive: "echo", Metadata: map[string]string{"k": "v\u2028"}, Content: json.RawMessage(tc.content)}
			got, err := encodeAnswer(d)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("encodeAnswer = %s, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.content == "" {
				d.Content = nil
			}
			want, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			// The same JSON value; json.Marshal also escapes <, > and &
			// inside the content, which encodeAnswer copies as it is.
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("encodeAnswer gave invalid JSON: %v: %.200s", err, got)
			}
			json.Unmarshal(want, &w)
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("encodeAnswer (-json.Marshal +got):\n%s", diff)
			}
			if !strings.ContainsAny(tc.content, "<>&") && !bytes.Equal(got, want) {
				t.Errorf("encodeAnswer:\n got %.200s\nwant %.200s", got, want)
			}
		})
	}
}

package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// warnCounter is a slog handler that counts warnings.
type warnCounter struct{ n atomic.Int64 }

func (w *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

// bigJSON is a JSON object of about n bytes.
func bigJSON(n int) string {
	return fmt.Sprintf(`{"x":%q}`, strings.Repeat("a", n))
}

// onlineStatus is an online connection-status with the given raw values.
func onlineStatus(id, facts, dispatchers, tags string) []byte {
	return fmt.Appendf(nil, `{"type":"connection-status","message_id":%q,"version":1,"sent":"2026-01-02T03:04:05Z",`+
		`"content":{"state":"online","client_name":"yggd","client_version":"1","canonical_facts":%s,"dispatchers":%s,"tags":%s}}`,
		id, facts, dispatchers, tags)
}

// kept is what TestRegistryBounds looks at in a Host.
type kept struct {
	State, CanonicalFacts, Dispatchers, Tags, ClientName string
}

// TestRegistryBounds: what the registry keeps of a host's statuses and
// nacks is bounded whatever the host sends, and a value too large is
// logged once per host.
func TestRegistryBounds(t *testing.T) {
	small := `{"fqdn":"h"}`
	tests := []struct {
		name     string
		payloads [][]byte // statuses, in order
		want     kept
		warnings int64
	}{
		{
			name:     "small_values_kept",
			payloads: [][]byte{onlineStatus("m1", small, small, small)},
			want:     kept{State: yggdrasil.StateOnline, CanonicalFacts: small, Dispatchers: small, Tags: small, ClientName: "yggd"},
		},
		{
			name:     "large_facts_dropped",
			payloads: [][]byte{onlineStatus("m1", bigJSON(maxHostValue), small, small)},
			want:     kept{State: yggdrasil.StateOnline, Dispatchers: small, Tags: small, ClientName: "yggd"},
			warnings: 1,
		},
		{
			name: "large_dispatchers_replace_previous_warned_once",
			payloads: [][]byte{
				onlineStatus("m1", small, small, small),
				onlineStatus("m2", small, bigJSON(maxHostValue), small),
				onlineStatus("m3", small, small, bigJSON(maxHostValue)),
			},
			want:     kept{State: yggdrasil.StateOnline, CanonicalFacts: small, Dispatchers: small, ClientName: "yggd"},
			warnings: 1,
		},
		{
			name:     "payload_too_large_to_read_whole",
			payloads: [][]byte{onlineStatus("m1", small, small, bigJSON(2*maxStatusPayload))},
			want:     kept{State: yggdrasil.StateOnline, ClientName: "yggd"},
			warnings: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestRegistry(t, 0)
			var w warnCounter
			tr.log = slog.New(&w)
			for _, p := range tt.payloads {
				tr.observeAt(yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "h", yggdrasil.KindControl, yggdrasil.DirOut), p)
			}
			h, ok := tr.host("h")
			if !ok {
				t.Fatal("host h unknown")
			}
			got := kept{h.State, string(h.CanonicalFacts), string(h.Dispatchers), string(h.Tags), h.ClientName}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("host (-want +got):\n%s", diff)
			}
			if n := w.n.Load(); n != tt.warnings {
				t.Errorf("warnings = %d, want %d", n, tt.warnings)
			}
		})
	}
}

// nackPayload is a nack whose content's message is text.
func nackPayload(text string) []byte {
	content, _ := json.Marshal(map[string]string{"error": "E", "message": text})
	d := yggdrasil.Data{Type: yggdrasil.TypeData, MessageID: "n1", ResponseTo: "m1", Version: 1, Directive: "echo",
		Metadata: map[string]string{yggdrasil.MetadataError: "E"}, Content: content}
	p, _ := json.Marshal(d)
	return p
}

// TestRegistryNackBounds: a nack's text is cut to maxNackText with a
// marker, and a data message too large for a nack is not read.
func TestRegistryNackBounds(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    string
		noNacks bool
	}{
		{name: "short", text: "no such worker", want: "no such worker"},
		{name: "long_cut", text: strings.Repeat("é", 4<<10),
			want: strings.Repeat("é", (maxNackText-len(nackCut))/2) + nackCut},
		{name: "payload_too_large", text: strings.Repeat("x", maxNackPayload), noNacks: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestRegistry(t, 0)
			tr.observeAt(yggdrasil.Topic(yggdrasil.DefaultTopicPrefix, "h", yggdrasil.KindData, yggdrasil.DirOut), nackPayload(tt.text))
			h, _ := tr.host("h")
			if tt.noNacks {
				if len(h.Nacks) != 0 {
					t.Errorf("nacks = %d, want none", len(h.Nacks))
				}
				return
			}
			if len(h.Nacks) != 1 {
				t.Fatalf("nacks = %d, want 1", len(h.Nacks))
			}
			if got := h.Nacks[0].Message; got != tt.want {
				t.Errorf("nack message = %.40q… (%d bytes), want %.40q… (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
			if len(h.Nacks[0].Message) > maxNackText {
				t.Errorf("nack message is %d bytes, want at most %d", len(h.Nacks[0].Message), maxNackText)
			}
		})
	}
}

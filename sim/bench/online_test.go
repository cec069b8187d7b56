package bench

import (
	"testing"
	"time"
)

// TestOnlineStatus: the load starts once the host's online status lists
// every directive and every handler of Config.Listed.
func TestOnlineStatus(t *testing.T) {
	status := func(state, dispatchers string) []byte {
		return []byte(`{"type":"connection-status","message_id":"s","version":1,"content":{"state":"` + state +
			`","dispatchers":{` + dispatchers + `}}}`)
	}
	tests := []struct {
		name    string
		listed  []string
		payload []byte
		want    bool
	}{
		{"directive_listed", nil, status("online", `"echo":null`), true},
		{"offline", nil, status("offline", `"echo":null`), false},
		{"directive_missing", nil, status("online", `"other":null`), false},
		{"second_handler_not_yet", []string{"echo", "echo-detached"}, status("online", `"echo":null`), false},
		{"second_handler_listed", []string{"echo", "echo-detached"}, status("online", `"echo":null,"echo-detached":null`), true},
		{"not_a_status", nil, []byte(`{"type":"event","content":"pong"}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &run{cfg: Config{Directives: []string{"echo"}, Listed: tt.listed}, pings: map[string]time.Time{}}
			if got := r.control(tt.payload); got != tt.want {
				t.Errorf("control(%s) = %v, want %v", tt.payload, got, tt.want)
			}
		})
	}
}

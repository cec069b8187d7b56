package yggdrasil

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

// answers collects what a local dispatch's answer function gets.
type answers struct {
	mu  sync.Mutex
	got []*Data
}

func (a *answers) add(d *Data) { a.mu.Lock(); a.got = append(a.got, d); a.mu.Unlock() }
func (a *answers) count() int  { a.mu.Lock(); defer a.mu.Unlock(); return len(a.got) }

// eventLog records a router's events.
type eventLog struct {
	mu  sync.Mutex
	evs []control.Event
}

func (l *eventLog) add(ev control.Event) { l.mu.Lock(); l.evs = append(l.evs, ev); l.mu.Unlock() }
func (l *eventLog) kinds() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []string
	for _, ev := range l.evs {
		s := ev.Kind
		if ev.Local {
			s += "(local)"
		}
		k = append(k, s)
	}
	return strings.Join(k, " ")
}

func TestDispatchLocal(t *testing.T) {
	var evs eventLog
	r, tr := newTestRouter(t, RouterConfig{OnEvent: evs.add})
	conn := &fakeConn{}
	r.Registry().Add(&Worker{Handler: "echo", Pid: 7, Conn: conn})

	var got answers
	d := &Data{Directive: "echo", Content: []byte(`"hi"`)}
	done, err := r.DispatchLocal(d, got.add)
	if err != nil {
		t.Fatal(err)
	}
	if d.MessageID == "" || conn.count() != 1 || conn.sent[0].MessageID != d.MessageID {
		t.Fatalf("worker got %d messages for id %q, want the one dispatched", conn.count(), d.MessageID)
	}
	// Two answers (a progress and a result) go back to the caller.
	for _, c := range []string{`{"progress":50}`, `"hi"`} {
		if err := r.HandleAnswer(context.Background(), &Data{MessageID: NewMessageID(), ResponseTo: d.MessageID, Directive: "echo", Content: []byte(c)}); err != nil {
			t.Fatal(err)
		}
	}
	if got.count() != 2 || string(got.got[1].Content) != `"hi"` || got.got[1].ResponseTo != d.MessageID || got.got[1].Type != TypeData {
		t.Fatalf("caller got %d answers (%+v), want 2, the last the echo", got.count(), got.got)
	}
	// An answer that is not JSON is refused to the worker, as for the cloud.
	if err := r.HandleAnswer(context.Background(), &Data{MessageID: NewMessageID(), ResponseTo: d.MessageID, Directive: "echo", Content: []byte(`hi`)}); !errors.Is(err, ErrInvalidAnswer) {
		t.Errorf("answer not JSON: err = %v, want ErrInvalidAnswer", err)
	}
	// Once the caller has gone, a late answer is dropped: not published
	// to the cloud, which never sent the message.
	done()
	if err := r.HandleAnswer(context.Background(), &Data{MessageID: NewMessageID(), ResponseTo: d.MessageID, Directive: "echo", Content: []byte(`"late"`)}); err != nil {
		t.Fatal(err)
	}
	if got.count() != 2 {
		t.Errorf("caller got %d answers after leaving, want 2", got.count())
	}
	// A cloud answer still goes out: the marker proves nothing local went
	// out before it.
	if err := r.HandleAnswer(context.Background(), &Data{MessageID: "marker", ResponseTo: "cloud-1", Directive: "echo", Content: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", 1)
	if len(out) != 1 || !strings.Contains(string(out[0].payload), `"marker"`) {
		t.Errorf("published %d answers (%s), want only the cloud's", len(out), out[0].payload)
	}
	if s := r.Stats(); s.Received != 0 || s.Delivered != 0 || s.Answers != 1 {
		t.Errorf("stats = %+v, want only the cloud's answer counted", s)
	}
	if k, want := evs.kinds(), "received(local) delivered(local) answered(local) answered(local) answered(local) answered"; k != want {
		t.Errorf("events = %s, want %s", k, want)
	}
}

func TestDispatchLocalRefused(t *testing.T) {
	tests := []struct {
		name string
		d    *Data
		conn *fakeConn
		code ErrorCode
	}{
		{"no_directive", &Data{}, nil, CodeMalformed},
		{"unknown_directive", &Data{Directive: "nobody"}, nil, CodeUnknownDirective},
		{"too_large", &Data{Directive: "echo", Content: []byte(`"` + strings.Repeat("x", 2000) + `"`)}, &fakeConn{}, CodeTooLarge},
		{"worker_unavailable", &Data{Directive: "echo"}, &fakeConn{err: errors.New("connection refused")}, CodeWorkerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evs eventLog
			r, tr := newTestRouter(t, RouterConfig{MaxMessageSize: 1000, OnEvent: evs.add})
			if tt.conn != nil {
				r.Registry().Add(&Worker{Handler: "echo", Pid: 7, Conn: tt.conn})
			}
			_, err := r.DispatchLocal(tt.d, func(*Data) { t.Error("answer to a refused message") })
			var de *DeliveryError
			if !errors.As(err, &de) || de.Code != tt.code || de.MessageID != tt.d.MessageID {
				t.Fatalf("err = %v, want a DeliveryError with code %s for %q", err, tt.code, tt.d.MessageID)
			}
			if k := evs.kinds(); k != "received(local) rejected(local)" {
				t.Errorf("events = %s", k)
			}
			// Nothing for the cloud: no negative acknowledgement.
			if err := r.HandleAnswer(context.Background(), &Data{MessageID: "marker", ResponseTo: "x", Directive: "echo", Content: []byte(`1`)}); err != nil {
				t.Fatal(err)
			}
			if out := tr.awaitPublished(t, "yggdrasil/host-1/data/out", 1); len(out) != 1 {
				t.Errorf("published %d messages, want only the marker", len(out))
			}
		})
	}
}

package control

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEventsHistory(t *testing.T) {
	tests := []struct {
		name      string
		published int
		last      int
		want      []string // message ids, oldest first
	}{
		{"none", 0, 5, nil},
		{"fewer_than_asked", 2, 5, []string{"m0", "m1"}},
		{"last_two", 5, 2, []string{"m3", "m4"}},
		{"zero", 5, 0, nil},
		{"wrapped", HistorySize + 3, 3, []string{fmt.Sprint("m", HistorySize), fmt.Sprint("m", HistorySize+1), fmt.Sprint("m", HistorySize+2)}},
		{"wrapped_all", HistorySize + 3, HistorySize + 10, nil}, // checked by length below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEvents()
			for i := range tt.published {
				e.Publish(Event{Kind: EventReceived, MessageID: fmt.Sprint("m", i)})
			}
			past, _, stop := e.Watch(tt.last)
			defer stop()
			if tt.name == "wrapped_all" {
				if len(past) != HistorySize || past[0].MessageID != "m3" {
					t.Errorf("got %d events from %s, want %d from m3", len(past), past[0].MessageID, HistorySize)
				}
				return
			}
			var got []string
			for _, ev := range past {
				got = append(got, ev.MessageID)
				if ev.Time.IsZero() {
					t.Errorf("event %s has no time", ev.MessageID)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("past events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventsSlowWatcher(t *testing.T) {
	e := NewEvents()
	_, events, stop := e.Watch(0)
	if e.Watchers() != 1 {
		t.Fatalf("Watchers = %d, want 1", e.Watchers())
	}
	// Publish never blocks: past the buffer, events are counted as lost,
	// and the next one that fits says how many.
	for i := range watchBuffer + 10 {
		e.Publish(Event{Kind: EventReceived, MessageID: fmt.Sprint("m", i)})
	}
	for range watchBuffer {
		<-events
	}
	e.Publish(Event{Kind: EventReceived, MessageID: "after"})
	if ev := <-events; ev.Kind != EventDropped || ev.Count != 10 {
		t.Errorf("got %+v, want a dropped event counting 10", ev)
	}
	if ev := <-events; ev.MessageID != "after" {
		t.Errorf("got %+v, want the event after the loss", ev)
	}
	stop()
	stop() // twice is harmless
	if e.Watchers() != 0 {
		t.Errorf("Watchers = %d after stop, want 0", e.Watchers())
	}
}

func TestServeEvents(t *testing.T) {
	e := NewEvents()
	e.Publish(Event{Kind: EventReceived, MessageID: "old"})
	_, c := startServer(t, Config{Events: e}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Event, 10)
	done := make(chan error, 1)
	go func() { done <- c.Events(ctx, 1, true, func(ev Event) { got <- ev }) }()
	if ev := <-got; ev.MessageID != "old" {
		t.Fatalf("first event = %+v, want the past one", ev)
	}
	// Followed live once the watch is in place.
	deadline := time.Now().Add(10 * time.Second)
	for e.Watchers() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	e.Publish(Event{Kind: EventDelivered, MessageID: "new", PID: 7})
	if ev := <-got; ev.MessageID != "new" || ev.Kind != EventDelivered || ev.PID != 7 {
		t.Errorf("live event = %+v", ev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Events after cancel: %v, want nil", err)
	}
}

func TestServeEventsEndsWithServer(t *testing.T) {
	e := NewEvents()
	s, c := startServer(t, Config{Events: e}, nil)
	done := make(chan error, 1)
	go func() { done <- c.Events(context.Background(), 0, true, func(Event) {}) }()
	deadline := time.Now().Add(10 * time.Second)
	for e.Watchers() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s.Close()
	if err := <-done; !errors.Is(err, ErrStreamEnded) {
		t.Errorf("Events when yggd stops: %v, want ErrStreamEnded", err)
	}
}

func TestServeEventsNoFollow(t *testing.T) {
	e := NewEvents()
	for i := range 3 {
		e.Publish(Event{Kind: EventReceived, MessageID: fmt.Sprint("m", i)})
	}
	_, c := startServer(t, Config{Events: e}, nil)
	var got []string
	if err := c.Events(context.Background(), 2, false, func(ev Event) { got = append(got, ev.MessageID) }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"m1", "m2"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

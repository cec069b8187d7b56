package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func seqsOf(msgs []Message) []int64 {
	out := []int64{}
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func seqRange(from, to int64) []int64 {
	out := []int64{}
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestJournalBounds(t *testing.T) {
	payload := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	tests := []struct {
		name     string
		limit    int
		maxBytes int64
		adds     int
		size     int
		// want
		held      int
		truncated bool
	}{
		{"under_both", 10, 1 << 20, 5, 100, 5, false},
		{"message_bound", 10, 1 << 20, 1000, 100, 10, false},
		{"message_bound_not_power_of_two", 100, 1 << 20, 1000, 10, 100, false},
		{"byte_bound", 1000, int64(10 * (1000 + entryOverhead + len("t/999"))), 1000, 1000, 10, false},
		{"one_alone_beyond_bytes", 1000, 4096, 3, 8192, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJournal(tt.limit, tt.maxBytes)
			for i := range tt.adds {
				j.add(Message{Topic: fmt.Sprintf("t/%d", i), Payload: payload(tt.size)}, nil)
			}
			st := j.stats()
			if st.Messages != tt.held || st.Bytes > tt.maxBytes {
				t.Errorf("holds %d messages, %d bytes; want %d, at most %d", st.Messages, st.Bytes, tt.held, tt.maxBytes)
			}
			last := int64(tt.adds)
			if st.Last != last || st.Oldest != last-int64(tt.held)+1 || st.Dropped != int64(tt.adds-tt.held) {
				t.Errorf("stats = %+v, want last %d, oldest %d", st, last, last-int64(tt.held)+1)
			}
			msgs, _ := j.since(0)
			if diff := cmp.Diff(seqRange(st.Oldest, last), seqsOf(msgs)); diff != "" {
				t.Errorf("since(0) (-want +got):\n%s", diff)
			}
			if got := msgs[len(msgs)-1]; (got.Truncated > 0) != tt.truncated || got.Topic != fmt.Sprintf("t/%d", tt.adds-1) {
				t.Errorf("latest = %v, want truncated %v", got, tt.truncated)
			}
			// Encoding counts against the bound too.
			for _, e := range j.read(0, 0).entries {
				j.encoded(e)
			}
			if st := j.stats(); st.Bytes > tt.maxBytes {
				t.Errorf("after encoding: %d bytes, want at most %d", st.Bytes, tt.maxBytes)
			}
		})
	}
}

func TestJournalWrapAround(t *testing.T) {
	j := newJournal(8, 1<<20)
	add := func(n int) {
		for range n {
			j.add(Message{Topic: "t"}, nil)
		}
	}
	add(5)
	w := j.read(2, 0)
	if diff := cmp.Diff(seqRange(3, 5), seqsOf(messagesOf(w.entries))); diff != "" || w.missed != 0 {
		t.Errorf("read(2) before the wrap (-want +got):\n%s missed %d", diff, w.missed)
	}

	// A waiter for a message that arrives after the ring has wrapped twice.
	ctx := testContext(t)
	found := make(chan Message, 1)
	go func() {
		var got Message
		j.await(ctx, 5, func(m Message) bool {
			got = m
			return m.Topic == "wanted"
		})
		found <- got
	}()
	add(20)
	j.add(Message{Topic: "wanted"}, nil)
	add(3)
	select {
	case m := <-found:
		if m.Seq != 26 || m.Topic != "wanted" {
			t.Errorf("waiter got %v, want #26 wanted", m)
		}
	case <-ctx.Done():
		t.Fatal("waiter never saw the message after the wrap")
	}

	// 29 messages, 8 held: 22..29.
	tests := []struct {
		name   string
		since  int64
		limit  int
		want   []int64
		missed int64
		reset  bool // since was beyond the end: read from the oldest held
	}{
		{"fell_behind", 2, 0, seqRange(22, 29), 19, false},
		{"just_behind", 20, 0, seqRange(22, 29), 1, false},
		{"oldest_held", 21, 0, seqRange(22, 29), 0, false},
		{"inside", 25, 0, seqRange(26, 29), 0, false},
		{"inside_limited", 23, 2, seqRange(24, 25), 0, false},
		{"behind_limited", 0, 3, seqRange(22, 24), 21, false},
		{"at_end", 29, 0, []int64{}, 0, false},
		{"beyond_end", 40, 0, seqRange(22, 29), 0, true},
		{"beyond_end_limited", 40, 2, seqRange(22, 23), 0, true},
		{"max_int", 1<<63 - 1, 0, seqRange(22, 29), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := j.read(tt.since, tt.limit)
			if diff := cmp.Diff(tt.want, seqsOf(messagesOf(w.entries))); diff != "" {
				t.Errorf("read(%d, %d) (-want +got):\n%s", tt.since, tt.limit, diff)
			}
			if w.missed != tt.missed || w.reset != tt.reset || w.oldest != 22 || w.last != 29 {
				t.Errorf("missed %d reset %t oldest %d last %d, want %d %t 22 29", w.missed, w.reset, w.oldest, w.last, tt.missed, tt.reset)
			}
		})
	}
	if got := seqsOf(messagesOf(j.lookup([]int64{3, 22, 27, 29, 30}))); !cmp.Equal(got, []int64{22, 27, 29}) {
		t.Errorf("lookup = %v, want [22 27 29]", got)
	}
}

// TestJournalEscapedPayloads: a payload's encoding can be six times its
// size (json escapes <, > and & as \u003c…), so whether a message fits
// the byte bound is decided on its encoding, not its raw size: a payload
// of 1 MiB of "<" held 7.3 MB against a bound of 1 MiB.
func TestJournalEscapedPayloads(t *testing.T) {
	const maxBytes = 1 << 20
	tests := []struct {
		name    string
		payload []byte
		kept    bool
	}{
		{"escaped_near_bound", bytes.Repeat([]byte("<"), maxBytes-1000), false},
		{"escaped_six_times_too_big", bytes.Repeat([]byte("<"), 200<<10), false},
		{"control_six_times_too_big", bytes.Repeat([]byte{1}, 200<<10), false},
		{"escaped_fits", bytes.Repeat([]byte("<"), 100<<10), true},
		{"plain_fits_after_encoding", bytes.Repeat([]byte("y"), 400<<10), true},
		{"plain_too_big_encoded", bytes.Repeat([]byte("y"), 600<<10), false},
		{"json_escaped_fits", []byte(`"` + strings.Repeat("<\u2028", 10<<10) + `"`), true},
		{"text_line_separators_fit", bytes.Repeat([]byte("\u2028\"\\\n"), 10<<10), true},
		{"binary_fits", bytes.Repeat([]byte{0xff, 0, '<'}, 100<<10), true},
		{"json_not_utf8_too_big", []byte(`"` + strings.Repeat("<\xff", 200<<10) + `"`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJournal(10, maxBytes)
			j.add(Message{Topic: "yggdrasil/h1/data/out", Payload: tt.payload}, nil)
			w := j.read(0, 0)
			if len(w.entries) != 1 {
				t.Fatalf("journal holds %d messages, want 1", len(w.entries))
			}
			enc := j.encoded(w.entries[0]) // counted against the bound
			m := w.entries[0].msg
			if kept := m.Truncated == 0 && len(m.Payload) == len(tt.payload); kept != tt.kept {
				t.Errorf("payload kept %t (truncated %d), want %t", kept, m.Truncated, tt.kept)
			}
			if b := m.encodedBound(); int64(len(enc)) > b {
				t.Errorf("encoding of %d bytes beyond its bound %d", len(enc), b)
			}
			if st := j.stats(); st.Bytes > maxBytes {
				t.Errorf("journal holds %d bytes (encoding %d), more than its bound %d", st.Bytes, len(enc), maxBytes)
			}
		})
	}
}

// TestJournalLargeMessages publishes 40 messages of 8 MiB from a client on
// the plain listener: the sim keeps within its byte bound, and pages of
// its history stay small.
func TestJournalLargeMessages(t *testing.T) {
	const maxBytes = 32 << 20
	s := MustStart(t, &Server{TLSAddr: Off, JournalMaxBytes: maxBytes})
	h := mustConnectHost(t, hostOpts{broker: s.BrokerURL(), id: "big"})
	payload := bytes.Repeat([]byte("y"), 8<<20)
	for i := range 40 {
		h.mustPublish(h.topic("data", "out"), payload, false)
		if st := s.Journal(); st.Bytes > maxBytes {
			t.Fatalf("after %d messages the journal holds %d bytes, more than %d", i+1, st.Bytes, maxBytes)
		}
	}
	ctx := testContext(t)
	if _, err := s.Await(ctx, 39, func(Message) bool { return true }); err != nil {
		t.Fatal(err)
	}
	st := s.Journal()
	if st.Bytes > maxBytes || st.Messages < 2 || st.Last != 40 {
		t.Errorf("journal = %+v, want at most %d bytes, the latest messages", st, maxBytes)
	}
	if msgs, _ := s.HostMessages("big"); len(msgs) != st.Messages {
		t.Errorf("host history has %d messages, want the %d the journal holds", len(msgs), st.Messages)
	}
	// A page stops after the message that takes it past pageMaxBytes.
	resp, err := http.Get(s.APIURL() + SimPath + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page MessagePage
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 || !page.More || page.Missed != st.Oldest-1 || len(page.Messages[0].Payload) != len(payload) {
		t.Errorf("page: %d messages, more %v, missed %d; want one of %d bytes, more, missed %d",
			len(page.Messages), page.More, page.Missed, len(payload), st.Oldest-1)
	}
	// Encoding it for the page counted too.
	if st := s.Journal(); st.Bytes > maxBytes {
		t.Errorf("after a read the journal holds %d bytes, more than %d", st.Bytes, maxBytes)
	}
}

func getPage(t *testing.T, url string) MessagePage {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	var p MessagePage
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return p
}

// publishN publishes n messages to host's data/in as the cloud and waits
// until they are recorded.
func publishN(t *testing.T, s *Server, host string, n int) {
	t.Helper()
	ctx := testContext(t)
	for i := range n {
		if err := s.Publish(ctx, "yggdrasil/"+host+"/data/in", fmt.Appendf(nil, `{"n":%d}`, i), 1, false); err != nil {
			t.Fatal(err)
		}
	}
	last := s.LastSeq()
	if _, err := s.Await(ctx, last-1, func(Message) bool { return true }); err != nil {
		t.Fatal(err)
	}
}

func TestAPIMessagesPages(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, JournalLimit: 20})
	publishN(t, s, "h1", 25) // 6..25 held
	for _, path := range []string{"/messages", "/hosts/h1/messages"} {
		t.Run(strings.Trim(strings.ReplaceAll(path, "/", "_"), "_"), func(t *testing.T) {
			var got []int64
			since, pages := int64(0), 0
			for pages < 10 {
				p := getPage(t, fmt.Sprintf("%s%s%s?since=%d&limit=7", s.APIURL(), SimPath, path, since))
				pages++
				if pages == 1 && (p.Missed != 5 || p.OldestSeq != 6) {
					t.Errorf("first page: missed %d, oldest %d; want 5, 6", p.Missed, p.OldestSeq)
				}
				if p.LastSeq != 25 || len(p.Messages) > 7 {
					t.Errorf("page %d: last %d, %d messages", pages, p.LastSeq, len(p.Messages))
				}
				got = append(got, seqsOf(p.Messages)...)
				since = p.Next
				if !p.More {
					break
				}
			}
			if diff := cmp.Diff(seqRange(6, 25), got); diff != "" || pages != 3 {
				t.Errorf("paged through %d pages (-want +got):\n%s", pages, diff)
			}
		})
	}
	if status, body := call(t, "GET", s.APIURL()+SimPath+"/messages?limit=0", ""); status != 400 || !strings.Contains(body, "limit") {
		t.Errorf("limit=0: %d %s, want 400", status, body)
	}
	if p := getPage(t, s.APIURL()+SimPath+"/messages?since=25"); len(p.Messages) != 0 || p.Next != 25 || p.More {
		t.Errorf("at the end: %+v, want an empty page with next 25", p)
	}
}

// TestAPISinceBeyondEnd: a since beyond the latest message comes from
// another journal (the sim restarted): the answer starts at the oldest
// message held and says so; a negative one is refused.
func TestAPISinceBeyondEnd(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off})
	publishN(t, s, "h1", 5)
	for _, tc := range []struct {
		name, path string
	}{
		{"messages_past_end", "/messages?since=100"},
		{"messages_max_int", "/messages?since=9223372036854775807"},
		{"host_messages_past_end", "/hosts/h1/messages?since=100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := getPage(t, s.APIURL()+SimPath+tc.path)
			if diff := cmp.Diff(seqRange(1, 5), seqsOf(p.Messages)); diff != "" || !p.Reset || p.Next != 5 || p.Missed != 0 {
				t.Errorf("reset %t, next %d, missed %d, seqs (-want +got):\n%s; want a reset page of 1..5, next 5", p.Reset, p.Next, p.Missed, diff)
			}
		})
	}
	t.Run("messages_negative", func(t *testing.T) {
		if status, body := call(t, "GET", s.APIURL()+SimPath+"/messages?since=-7", ""); status != 400 || !strings.Contains(body, "since") {
			t.Errorf("since=-7: %d %s, want 400", status, body)
		}
	})
	t.Run("messages_at_end", func(t *testing.T) {
		if p := getPage(t, s.APIURL()+SimPath+"/messages?since=5"); len(p.Messages) != 0 || p.Reset || p.Next != 5 {
			t.Errorf("since=5: %+v, want an empty page, no reset", p)
		}
	})

	ctx := testContext(t)
	kinds := func(evs []sseEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.event+" "+e.id)
		}
		return out
	}
	t.Run("events_past_end", func(t *testing.T) {
		evs := readEvents(t, ctx, s.APIURL()+SimPath+"/events", "100", 6)
		want := []string{"reset ", "message 1", "message 2", "message 3", "message 4", "message 5"}
		if diff := cmp.Diff(want, kinds(evs)); diff != "" {
			t.Fatalf("Last-Event-ID 100 (-want +got):\n%s", diff)
		}
		if evs[0].data != `{"since":100,"oldest_seq":1,"last_seq":5}` {
			t.Errorf("reset = %s", evs[0].data)
		}
	})
	t.Run("events_negative_id", func(t *testing.T) {
		evs := readEvents(t, ctx, s.APIURL()+SimPath+"/events?since=3", "-7", 2)
		if diff := cmp.Diff([]string{"message 4", "message 5"}, kinds(evs)); diff != "" {
			t.Errorf("Last-Event-ID -7 with since=3 (-want +got):\n%s", diff)
		}
	})
}

// sseEvent is one server-sent event.
type sseEvent struct{ id, event, data string }

// readEvents reads events until the stream ends or n are read.
func readEvents(t *testing.T, ctx context.Context, url, lastID string, n int) []sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []sseEvent
	var ev sseEvent
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.event != "" {
				out = append(out, ev)
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
	return out
}

func TestAPIEventsPages(t *testing.T) {
	s := MustStart(t, &Server{TLSAddr: Off, JournalLimit: 20})
	publishN(t, s, "h1", 25) // 6..25 held
	ctx := testContext(t)
	url := s.APIURL() + SimPath + "/events?since=0&limit=8"

	// The first page: behind, 8 messages, more.
	evs := readEvents(t, ctx, url, "", 100)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.event+" "+e.id)
	}
	want := []string{"behind "}
	for i := 6; i <= 13; i++ {
		want = append(want, fmt.Sprintf("message %d", i))
	}
	want = append(want, "more 13")
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Fatalf("first page (-want +got):\n%s", diff)
	}
	if evs[0].data != `{"since":0,"oldest_seq":6,"missed":5}` {
		t.Errorf("behind = %s", evs[0].data)
	}

	// Reconnecting with Last-Event-ID goes on where the page ended.
	evs = readEvents(t, ctx, url, "13", 100)
	if len(evs) != 9 || evs[0].id != "14" || evs[7].id != "21" || evs[8].event != "more" {
		t.Errorf("second page = %v", evs)
	}

	// The last page follows new messages after the history.
	got := make(chan []sseEvent, 1)
	go func() { got <- readEvents(t, ctx, url, "21", 5) }()
	publishN(t, s, "h1", 1)
	evs = <-got
	if len(evs) != 5 || evs[0].id != "22" || evs[4].id != "26" || evs[4].event != "message" {
		t.Errorf("last page = %v, want 22..26, the last one live", evs)
	}
}

// BenchmarkJournalAdd appends to a full journal: the cost must not depend
// on how much it holds (it copied every message once full: 64% of the
// sim's CPU under sustained load).
func BenchmarkJournalAdd(b *testing.B) {
	for _, held := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("held_%d", held), func(b *testing.B) {
			j := newJournal(held, DefaultJournalMaxBytes)
			payload := bytes.Repeat([]byte("x"), 100)
			for range held {
				j.add(Message{Topic: "yggdrasil/h1/data/out", Payload: payload}, nil)
			}
			for b.Loop() {
				j.add(Message{Topic: "yggdrasil/h1/data/out", Payload: payload}, nil)
			}
		})
	}
}

// TestJournalEncodesOnce: every reader of a message gets the same
// encoding, made once and counted once.
func TestJournalEncodesOnce(t *testing.T) {
	j := newJournal(10, 1<<20)
	j.add(Message{Topic: "yggdrasil/h1/data/out", Payload: []byte(`{"type":"data"}`)}, nil)
	before := j.stats().Bytes
	first := j.encoded(j.read(0, 0).entries[0])
	second := j.encoded(j.read(0, 0).entries[0])
	if &first[0] != &second[0] {
		t.Error("the second reader got a new encoding")
	}
	if got, want := j.stats().Bytes, before+int64(len(first)); got != want {
		t.Errorf("journal bytes = %d, want %d (the encoding counted once)", got, want)
	}
	var m Message
	if err := json.Unmarshal(first, &m); err != nil || m.Seq != 1 || string(m.Payload) != `{"type":"data"}` {
		t.Errorf("encoding %s decodes to %v (%v)", first, m, err)
	}
}

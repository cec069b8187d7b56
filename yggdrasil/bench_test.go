package yggdrasil

// Micro-benchmarks of the hot paths of one message: decoding the envelope,
// encoding an answer, dedupe and the worker lookup. They are not part of
// make test (run them with make bench-go or go test -bench); the
// end-to-end figures are make bench's (BENCHMARKS.md).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func benchPayload(size int) []byte {
	content := `"` + strings.Repeat("a", max(size-2, 0)) + `"`
	return []byte(`{"type":"data","message_id":"6b1f8f40-7d29-4f0e-8a53-0c6c2b4e9a11","response_to":"","version":1,` +
		`"sent":"2026-11-24T20:00:00.123456789Z","directive":"echo","metadata":{"k":"v"},"content":` + content + `}`)
}

var benchSizes = []int{100, 4 << 10, 64 << 10}

func BenchmarkDecodeData(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			p := benchPayload(size)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeData(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchAnswer(size int) *Data {
	return &Data{Type: TypeData, MessageID: NewMessageID(), ResponseTo: NewMessageID(), Version: Version,
		Sent: time.Now(), Directive: "echo", Metadata: map[string]string{"k": "v"},
		Content: json.RawMessage(`"` + strings.Repeat("a", max(size-2, 0)) + `"`)}
}

// BenchmarkEncodeAnswer compares the answer encoder with json.Marshal of
// the same Data, after checking that both give the same bytes.
func BenchmarkEncodeAnswer(b *testing.B) {
	for _, size := range benchSizes {
		d := benchAnswer(size)
		want, _ := json.Marshal(d)
		got, _ := encodeAnswer(d)
		if string(got) != string(want) {
			b.Fatalf("encodeAnswer differs from json.Marshal:\n got %.200s\nwant %.200s", got, want)
		}
		b.Run(fmt.Sprintf("encodeAnswer/%d", size), func(b *testing.B) {
			b.SetBytes(int64(len(want)))
			b.ReportAllocs()
			for b.Loop() {
				encodeAnswer(d)
			}
		})
		b.Run(fmt.Sprintf("json.Marshal/%d", size), func(b *testing.B) {
			b.SetBytes(int64(len(want)))
			b.ReportAllocs()
			for b.Loop() {
				json.Marshal(d)
			}
		})
	}
}

// BenchmarkHandleAnswer is the whole answer path short of the broker:
// checks, JSON validation, encoding, and the outbox.
func BenchmarkHandleAnswer(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r := NewRouter(RouterConfig{ClientID: "host"}, nil)
			d := benchAnswer(size)
			b.SetBytes(int64(len(d.Content)))
			b.ReportAllocs()
			for b.Loop() {
				a := *d
				if err := r.HandleAnswer(context.Background(), &a); err != nil {
					b.Fatal(err)
				}
				if n, _ := r.out.Len(); n >= 1000 {
					r.out = NewOutbox(OutboxLimits{}, nil)
				}
			}
		})
	}
}

func BenchmarkDedupeSeen(b *testing.B) {
	ids := make([]string, 50_000)
	for i := range ids {
		ids[i] = NewMessageID()
	}
	d := NewDedupe(20_000, 10*time.Minute)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Seen(ids[i%len(ids)])
		i++
	}
}

func BenchmarkRegistryLookup(b *testing.B) {
	reg := NewRegistry(nil)
	for i := range 16 {
		reg.Add(&Worker{Handler: fmt.Sprintf("echo%d", i), Pid: 1000 + i})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := reg.Lookup(handlers16[i%16]); !ok {
				b.Fatal("not found")
			}
			i++
		}
	})
}

var handlers16 = func() []string {
	h := make([]string, 16)
	for i := range h {
		h[i] = fmt.Sprintf("echo%d", i)
	}
	return h
}()

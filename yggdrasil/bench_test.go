package yggdrasil

// Micro-benchmarks of the hot paths of one message: decoding the envelope,
// encoding an answer, JSON validation, dedupe and the worker lookup. They
// are not part of make test (run them with make bench-go or go test
// -bench); the end-to-end figures are make bench's (BENCHMARKS.md). The
// tests and fuzz targets at the end hold the fast paths to encoding/json's
// verdicts.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil/journal"
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
			// The journal drops the oldest answers past 1000: nothing is
			// published here.
			r := NewRouter(RouterConfig{ClientID: "host", Journal: testJournal(b, journal.Options{MaxCount: 1000})}, nil)
			d := benchAnswer(size)
			b.SetBytes(int64(len(d.Content)))
			b.ReportAllocs()
			for b.Loop() {
				a := *d
				if err := r.HandleAnswer(context.Background(), &a); err != nil {
					b.Fatal(err)
				}
			}
		})
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

func BenchmarkDecodeDataFast(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			p := benchPayload(size)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := decodeDataFast(p); !ok {
					b.Fatal("fast path refused the common shape")
				}
			}
		})
	}
}

func BenchmarkValidJSON(b *testing.B) {
	for _, size := range benchSizes {
		c := benchAnswer(size).Content
		b.Run(fmt.Sprintf("validJSON/%d", size), func(b *testing.B) {
			b.SetBytes(int64(len(c)))
			for b.Loop() {
				validJSON(c)
			}
		})
		b.Run(fmt.Sprintf("json.Valid/%d", size), func(b *testing.B) {
			b.SetBytes(int64(len(c)))
			for b.Loop() {
				json.Valid(c)
			}
		})
	}
}

// The fast paths measured above must never change a verdict: these tests
// and fuzz targets hold them to encoding/json's.

var jsonSeeds = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e`, `1e-`, `-1.5e-3`, `123456789012345678901234567890`,
	`"a"`, `"`, `"\"`, `"\\"`, `"\u00e9"`, `"\u00G9"`, `"\x"`, "\"a\tb\"", "\"\x7f\"", "\"\xff\"", `"é"`,
	`"0123456789abcdef0123456789"`, `"01234567\"89"`, `"0123456789\\abcdef"`, "\"01234567\x0189abcdef\"",
	`true`, `tru`, `false`, `null`, `nul`, `nullx`, `[]`, `[1,]`, `[,1]`, `[1 2]`, `[[[]]]`, `{}`, `{"a":1}`,
	`{"a":1,}`, `{"a"}`, `{a:1}`, `{"a":1 "b":2}`, ` {"a" : [ 1 , { "b" : null } ] } `, `{"a":1}x`, `1 2`,
	strings.Repeat("[", 300) + strings.Repeat("]", 300), strings.Repeat("[", 300) + strings.Repeat("]", 299),
}

func TestValidJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%q) = %v, json.Valid = %v", s, got, want)
		}
		if i := skipValue([]byte(s), skipSpace([]byte(s), 0), 0); i >= 0 && skipSpace([]byte(s), i) == len(s) && !json.Valid([]byte(s)) {
			t.Errorf("the scanner accepts %q, which is not JSON", s)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if i := skipValue(b, skipSpace(b, 0), 0); i >= 0 && skipSpace(b, i) == len(b) && !json.Valid(b) {
			t.Errorf("the scanner accepts %q, which is not JSON", b)
		}
	})
}

var dataSeeds = []string{
	string(benchPayload(100)),
	`{"type":"data","message_id":"m","version":1,"directive":"d","content":"Hello"}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","content":{ "a" : 1 }}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d"}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","content":null}`,
	` { "type" : "data" , "message_id" : "m" , "version" : 1 , "directive" : "d" , "metadata" : { "a" : "b" , "c" : "" } , "content" : [1] } `,
	`{"type":"data","message_id":"m","version":1,"directive":"d","metadata":null,"response_to":"r","sent":"2021-01-12T15:30:08+00:00"}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","sent":"2021-01-12T25:30:08+00:00"}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","sent":""}`,
	`{"type":"data","message_id":"m","version":1.0,"directive":"d"}`,
	`{"type":"data","message_id":"m","version":01,"directive":"d"}`,
	`{"type":"data","message_id":"m","version":2,"directive":"d"}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","directive":"e"}`,
	`{"Type":"data","message_id":"m","version":1,"directive":"d"}`,
	`{"type":"data","message_id":"m\u0041","version":1,"directive":"d"}`,
	`{"type":"data","message_id":"","version":1,"directive":"d"}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","extra":1}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","content":"x"}x`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","content":"x",}`,
	`{"type":"data","message_id":"m","version":1,"directive":"d","metadata":{"a":1}}`,
	"{\"type\":\"data\",\"message_id\":\"m\xff\",\"version\":1,\"directive\":\"d\"}",
	`{"type":"event","message_id":"m","version":1,"directive":"d"}`,
	`[]`, `{}`, ``,
}

// checkDecodeFast fails when the fast path accepts a payload that
// DecodeData refuses or decodes differently.
func checkDecodeFast(t *testing.T, p []byte) {
	fast, ok := decodeDataFast(p)
	if !ok {
		return
	}
	slow, err := DecodeData(p)
	if err != nil {
		t.Fatalf("fast path accepts %q, DecodeData refuses it: %v", p, err)
	}
	if diff := cmp.Diff(slow, fast); diff != "" {
		t.Fatalf("fast path decodes %q differently (-DecodeData +fast):\n%s", p, diff)
	}
}

func TestDecodeDataFastAgreesWithDecodeData(t *testing.T) {
	accepted := 0
	for _, s := range dataSeeds {
		checkDecodeFast(t, []byte(s))
		if _, ok := decodeDataFast([]byte(s)); ok {
			accepted++
		}
	}
	if accepted < 6 {
		t.Errorf("the fast path accepts %d of the common payloads, want at least 6", accepted)
	}
}

func FuzzDecodeDataFast(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) { checkDecodeFast(t, p) })
}

package echoworker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil/worker"
	"github.com/ygglab/yggdrasil/yggdrasil/worker/workertest"
)

func start(t *testing.T, w *worker.Worker) (*workertest.Dispatcher, context.Context) {
	t.Helper()
	d := workertest.New(t, w)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return d, ctx
}

func TestEcho(t *testing.T) {
	d, ctx := start(t, Echo(slog.New(slog.DiscardHandler)))
	if got := d.Registration(); got.Handler != "echo" || got.Detached {
		t.Errorf("registered %+v, want echo, not detached", got)
	}
	tests := []struct {
		name string
		in   worker.Message
	}{
		{name: "string", in: worker.Message{ID: "m1", Content: []byte(`"Hello world!"`)}},
		{name: "object_and_metadata", in: worker.Message{ID: "m2", Content: []byte(`{"a": [1, 2]}`), Metadata: map[string]string{"trace": "42"}}},
		{name: "null", in: worker.Message{ID: "m3", Content: []byte(`null`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.Dispatch(ctx, tt.in); err != nil {
				t.Fatal(err)
			}
			got, err := d.Await(ctx, tt.in.ID, 1)
			if err != nil {
				t.Fatal(err)
			}
			want := worker.Message{ID: got[0].ID, ResponseTo: tt.in.ID, Directive: "echo", Metadata: tt.in.Metadata, Content: tt.in.Content}
			if diff := cmp.Diff(want, got[0]); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if got[0].ID == "" || got[0].ID == tt.in.ID {
				t.Errorf("answer id %q, want a new one", got[0].ID)
			}
		})
	}
}

func TestDetached(t *testing.T) {
	d, ctx := start(t, Detached(slog.New(slog.DiscardHandler)))
	if got := d.Registration(); got.Handler != "echo-detached" || !got.Detached {
		t.Errorf("registered %+v, want echo-detached, detached", got)
	}
	tests := []struct {
		name string
		in   worker.Message // Content: as yggd fetched it
		want worker.Message // without ID and ResponseTo
	}{
		{
			name: "return_url",
			in:   worker.Message{ID: "m1", Content: []byte("- name: not JSON\n"), Metadata: map[string]string{"return_url": "http://127.0.0.1:1/answers"}},
			want: worker.Message{Directive: "http://127.0.0.1:1/answers", Content: []byte("- name: not JSON\n"), Metadata: map[string]string{"return_url": "http://127.0.0.1:1/answers"}},
		},
		{
			name: "no_return_url_json_string",
			in:   worker.Message{ID: "m2", Content: []byte("plain \"text\"")},
			want: worker.Message{Directive: "echo-detached", Content: []byte(`"plain \"text\""`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.Dispatch(ctx, tt.in); err != nil {
				t.Fatal(err)
			}
			got, err := d.Await(ctx, tt.in.ID, 1)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.ID, tt.want.ResponseTo = got[0].ID, tt.in.ID
			if diff := cmp.Diff(tt.want, got[0]); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

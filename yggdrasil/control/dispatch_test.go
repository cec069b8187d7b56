package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeDispatch answers each message with n answers, or refuses it.
func fakeDispatch(n int, refuse error) func(DispatchRequest, func(json.RawMessage)) (string, func(), error) {
	return func(req DispatchRequest, answer func(json.RawMessage)) (string, func(), error) {
		if refuse != nil {
			return "m1", func() {}, refuse
		}
		go func() { // the worker answers after Send returned
			for i := range n {
				answer(json.RawMessage(fmt.Sprintf(`{"response_to":"m1","content":%s,"n":%d}`, req.Content, i)))
			}
		}()
		return "m1", func() {}, nil
	}
}

func TestServeDispatch(t *testing.T) {
	tests := []struct {
		name     string
		answers  int // the worker's
		refuse   error
		req      DispatchRequest
		want     []string // kinds of the lines
		wantErr  string
		wantCode string
	}{
		{name: "one_answer", answers: 1, req: DispatchRequest{Directive: "echo", Content: json.RawMessage(`"hi"`), Answers: 1},
			want: []string{DispatchDelivered, DispatchAnswer}},
		{name: "progress_and_result", answers: 3, req: DispatchRequest{Directive: "echo", Answers: 3},
			want: []string{DispatchDelivered, DispatchAnswer, DispatchAnswer, DispatchAnswer}},
		{name: "no_wait", answers: 1, req: DispatchRequest{Directive: "echo"},
			want: []string{DispatchDelivered}},
		{name: "fewer_than_asked", answers: 1, req: DispatchRequest{Directive: "echo", Answers: 2, Timeout: "200ms"},
			want: []string{DispatchDelivered, DispatchAnswer, DispatchTimeout}},
		{name: "refused", refuse: &Refused{Code: "unknown-directive", Message: `no worker handles "x"`}, req: DispatchRequest{Directive: "x", Answers: 1},
			want: []string{DispatchRejected}, wantCode: "unknown-directive"},
		{name: "stopping", refuse: errors.New("yggd is stopping"), req: DispatchRequest{Directive: "x", Answers: 1},
			wantErr: "yggd is stopping"},
		{name: "no_directive", req: DispatchRequest{Directive: " "}, wantErr: "directive is empty"},
		{name: "bad_timeout", req: DispatchRequest{Directive: "echo", Timeout: "soon"}, wantErr: `timeout: "soon" is not a duration`},
		{name: "negative_answers", req: DispatchRequest{Directive: "echo", Answers: -1}, wantErr: "answers: -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := startServer(t, Config{Dispatch: fakeDispatch(tt.answers, tt.refuse)}, nil)
			var kinds []string
			var lines []DispatchLine
			err := c.Dispatch(context.Background(), tt.req, func(l DispatchLine) {
				kinds = append(kinds, l.Kind)
				lines = append(lines, l)
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, kinds); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
			for _, l := range lines {
				if l.MessageID != "m1" {
					t.Errorf("line %+v: message_id is not the dispatched one", l)
				}
				if l.Kind == DispatchAnswer && !json.Valid(l.Answer) {
					t.Errorf("answer %s is not JSON", l.Answer)
				}
				if l.Kind == DispatchRejected && (l.Code != tt.wantCode || l.Error == "") {
					t.Errorf("rejection %+v, want code %s and a message", l, tt.wantCode)
				}
			}
		})
	}
}

func TestServeDispatchUnknownField(t *testing.T) {
	_, c := startServer(t, Config{Dispatch: fakeDispatch(1, nil)}, nil)
	_, err := c.request(context.Background(), "POST", "/v1/dispatch", map[string]any{"directive": "echo", "contnet": 1})
	if err == nil || !strings.Contains(err.Error(), `unknown field "contnet"`) {
		t.Errorf("err = %v, want the unknown field named", err)
	}
}

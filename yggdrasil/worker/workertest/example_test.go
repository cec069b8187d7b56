package workertest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/worker"
	"github.com/ygglab/yggdrasil/yggdrasil/worker/workertest"
)

// A unit test of a worker: in a test, t.Fatal instead of log.Fatal, and
// t.Context() for ctx.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	echo := &worker.Worker{
		Handler: "echo",
		Receive: func(ctx context.Context, w *worker.Worker, m worker.Message) error {
			return w.Reply(ctx, m, m.Content, m.Metadata)
		},
	}
	d, err := workertest.Start(ctx, echo)
	if err != nil {
		log.Fatal(err)
	}
	id, err := d.Dispatch(ctx, worker.Message{ID: "m1", Content: []byte(`{"hello":"world"}`),
		Metadata: map[string]string{"trace": "42"}})
	if err != nil {
		log.Fatal(err)
	}
	answers, err := d.Await(ctx, id, 1)
	if err != nil {
		log.Fatal(err)
	}
	a := answers[0]
	fmt.Println(a.ResponseTo, a.Directive, string(a.Content), a.Metadata)
	if err := d.Close(); err != nil { // stops the worker; Run's error
		log.Fatal(err)
	}
	// Output: m1 echo {"hello":"world"} map[trace:42]
}

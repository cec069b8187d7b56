package fleet

import (
	"context"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// echoConn is the in-process echo worker: a yggdrasil.WorkerConn that
// answers each message with its content and metadata, as the echo-worker
// program does, by handing the answer to the router as the dispatcher
// does with a worker's answer. It answers inside Send, which the router
// allows (a worker may answer before its Send returns).
type echoConn struct{ router *yggdrasil.Router }

var _ yggdrasil.WorkerConn = echoConn{}

func (c echoConn) Send(ctx context.Context, d *yggdrasil.Data) error {
	return c.router.HandleAnswer(ctx, &yggdrasil.Data{
		MessageID:  yggdrasil.NewMessageID(),
		ResponseTo: d.MessageID,
		Directive:  d.Directive,
		Metadata:   d.Metadata,
		Content:    d.Content,
	})
}

func (echoConn) Close() error { return nil }

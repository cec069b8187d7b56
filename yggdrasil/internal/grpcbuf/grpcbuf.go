// Package grpcbuf holds the gRPC buffer pool and codec that yggd's
// dispatcher and the worker SDK share. gRPC's default pool jumps from
// 32 KiB to 1 MiB and clears a pooled buffer in full each time it is
// reused, so a 64 KiB message costs a cleared 1 MiB buffer: CPU in yggd,
// and memory in a worker with many messages in flight. Pool has every
// power of two from 256 B to 1 MiB and hands buffers out as they are.
// Codec also sends a large bytes field (a content of LargeField bytes or
// more) without copying it, and decodes it straight from gRPC's frames
// into a buffer of GetLarge's, which the content's last user may give
// back with ReleaseLarge.
//
// Use both on each side of a connection:
//
//	grpc.NewServer(experimental.BufferPool(grpcbuf.Pool), grpc.ForceServerCodecV2(grpcbuf.Codec{}))
//	grpc.NewClient(target, experimental.WithBufferPool(grpcbuf.Pool),
//		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(grpcbuf.Codec{})))
package grpcbuf

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Headroom is what a gRPC message needs beyond its content: add it to a
// content limit to get gRPC's message size limit.
const Headroom = 1 << 20

// Pool holds gRPC's message buffers. gRPC's default pool jumps from
// 32 KiB to 1 MiB and clears a pooled buffer in full each time it is
// reused: every 64 KiB message cleared 1 MiB, 13% of yggd's CPU at that
// size. This pool has every power of two from 256 B to 1 MiB and hands
// buffers out as they are: gRPC overwrites the length it asks for before
// reading it (the same contract as gRPC's own internal "dirty" pools).
var Pool mem.BufferPool = newTieredPool(8, 20)

// Codec is gRPC's proto codec with its buffers from Pool: gRPC's own
// takes them from the default pool whatever the connection's pool is.
type Codec struct{}

func (Codec) Name() string { return "proto" }

func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("proto: cannot marshal %T", v)
	}
	if large := largeFields(m.ProtoReflect()); large != nil {
		return marshalSplit(m.ProtoReflect(), large)
	}
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true} // safe: Size was just computed
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := Pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		Pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, Pool)}, nil
}

func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("proto: cannot unmarshal into %T", v)
	}
	if data.Len() >= LargeField {
		if done, err := unmarshalSplit(data, m.ProtoReflect()); done {
			return err
		}
	}
	buf := data.MaterializeToBuffer(Pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

// tieredPool is a mem.BufferPool of one sync.Pool per power of two.
type tieredPool struct {
	minExp, maxExp int
	pools          []sync.Pool
}

func newTieredPool(minExp, maxExp int) *tieredPool {
	return &tieredPool{minExp: minExp, maxExp: maxExp, pools: make([]sync.Pool, maxExp-minExp+1)}
}

// tier returns the index of the smallest pool whose buffers hold n bytes.
func (p *tieredPool) tier(n int) int {
	e := bits.Len(uint(max(n, 1) - 1))
	return max(e, p.minExp) - p.minExp
}

func (p *tieredPool) Get(n int) *[]byte {
	t := p.tier(n)
	if t >= len(p.pools) {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.pools[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(t+p.minExp))
	return &b
}

func (p *tieredPool) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 {
		return // not one of ours
	}
	if t := p.tier(c); t < len(p.pools) && 1<<(t+p.minExp) == c {
		p.pools[t].Put(b)
	}
}

package grpcbuf

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/ygglab/yggdrasil/proto"
)

// BenchmarkCodec measures a message through Marshal, and through
// Unmarshal from 16 KiB frames (as gRPC hands a received message over).
func BenchmarkCodec(b *testing.B) {
	for _, size := range []int{100, 4 << 10, 64 << 10, 1 << 20} {
		in := &pb.Data{MessageId: "0190f4a6-1f3b-7c2d-8000-000000000001", Directive: "echo",
			Metadata: map[string]string{"return_url": "http://127.0.0.1:1/bench/return/x"}, Content: content(size)}
		b.Run(fmt.Sprintf("marshal/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				bs, err := Codec{}.Marshal(in)
				if err != nil {
					b.Fatal(err)
				}
				bs.Free()
			}
		})
		wire, _ := proto.Marshal(in)
		fr := frames(wire, 16<<10)
		b.Run(fmt.Sprintf("unmarshal/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				var out pb.Data
				if err := (Codec{}).Unmarshal(fr, &out); err != nil {
					b.Fatal(err)
				}
				ReleaseLarge(out.Content)
			}
		})
	}
}

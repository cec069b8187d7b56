package testscript

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"time"
)

// conditions are our script conditions, "[name]" and "[!name]" in a script.
// Each is computed once per test binary.
var conditions = map[string]func() bool{
	"python-grpc": pythonGRPC,
}

// pythonGRPC reports whether /usr/bin/python3 can import grpc, which the
// Python workers of the interop scripts need (Debian: python3-grpcio). It
// runs with the environment yggd gives its workers, so that a PYTHONPATH of
// the test's own cannot make it true.
var pythonGRPC = sync.OnceValue(func() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", "import grpc")
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd.Run() == nil
})

// condition answers our conditions and hands any other to prev, the
// Params.Condition that was there before Setup.
func condition(prev func(string) (bool, error)) func(string) (bool, error) {
	return func(cond string) (bool, error) {
		if c, ok := conditions[cond]; ok {
			return c(), nil
		}
		if prev != nil {
			return prev(cond)
		}
		return false, fmt.Errorf("unknown condition %q", cond)
	}
}

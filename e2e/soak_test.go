package e2e

import (
	"os"
	"testing"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/testscript"
)

// TestSoak runs testdata/soak: yggd under a steady load for minutes, with
// broker restarts. It runs only with YGG_SOAK=1 (make soak), so that the
// ordinary test run stays fast. SOAK_DURATION (default 10m), SOAK_RATE
// (messages a second, default 20) and SOAK_RESTART_EVERY (default 2m) shape
// it.
func TestSoak(t *testing.T) {
	if os.Getenv("YGG_SOAK") != "1" {
		t.Skip("the soak runs only with YGG_SOAK=1 (make soak)")
	}
	p := goscript.Params{
		Dir:                 "testdata/soak",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *goscript.Env) error {
			for name, def := range map[string]string{
				"SOAK_DURATION":      "10m",
				"SOAK_RATE":          "20",
				"SOAK_RESTART_EVERY": "2m",
			} {
				v := os.Getenv(name)
				if v == "" {
					v = def
				}
				env.Setenv(name, v)
			}
			return nil
		},
	}
	if err := testscript.Setup(&p); err != nil {
		t.Fatal(err)
	}
	goscript.Run(t, p)
}

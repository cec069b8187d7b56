// Package e2e runs the scenario scripts in testdata/script against the real
// programs: yggd, ygg, yggsim and echo-worker run as child processes of the
// test binary, against the simulated cloud and the fakes that our
// testscript package starts in-process.
package e2e

import (
	"os"
	"testing"

	goscript "github.com/rogpeppe/go-internal/testscript"

	"github.com/ygglab/yggdrasil/cmd/echo-worker/echoworker"
	"github.com/ygglab/yggdrasil/cmd/ygg/yggcmd"
	"github.com/ygglab/yggdrasil/cmd/yggd/yggdcmd"
	"github.com/ygglab/yggdrasil/cmd/yggsim/yggsimcmd"
	"github.com/ygglab/yggdrasil/testscript"
)

func TestMain(m *testing.M) {
	programs := map[string]func(){
		"yggd":        exit(yggdcmd.Main),
		"ygg":         exit(yggcmd.Main),
		"yggsim":      exit(yggsimcmd.Main),
		"echo-worker": exit(echoworker.Main),
	}
	for _, set := range []map[string]func() int{testPrograms, testPrograms2, testPrograms3, testPrograms4, testPrograms5} {
		for name, main := range set {
			programs[name] = exit(main)
		}
	}
	goscript.Main(m, programs)
}

func exit(main func() int) func() { return func() { os.Exit(main()) } }

// updateGolden reports whether cmp should rewrite the archives' golden files
// (YGG_UPDATE=1 go test ./e2e).
func updateGolden() bool { return os.Getenv("YGG_UPDATE") == "1" }

func TestScript(t *testing.T) {
	p := goscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       updateGolden(),
	}
	if err := testscript.Setup(&p); err != nil {
		t.Fatal(err)
	}
	goscript.Run(t, p)
}

package yggcmd

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/ygglab/yggdrasil/cmd/ygg/internal/check"
	"github.com/ygglab/yggdrasil/cmd/ygg/internal/rhsm"
	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/config"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
	"github.com/ygglab/yggdrasil/yggdrasil/fileperm"
)

// checkConfigFlag is check's --config: the file checked, not only where
// the control socket is.
var checkConfigFlag = flagSpec{long: "config", arg: "FILE", complete: "file",
	help: "Check this configuration file of yggd. Default: the file yggd reads, " + config.DefaultFile() + ", when it exists."}

// checkDesc is check's help: the checks, how the test connection keeps
// off yggd's session, the exit status and the JSON document.
func checkDesc() string {
	return fmt.Sprintf("Test, one check at a time, what %[1]sd needs, and say what to do about each problem, in the manner of iotedge check. "+
		"The configuration is %[1]sd's (--config, else the file it reads by default), read with %[1]sd's own code. The checks, by name:\n\n"+
		"config: the file parses, names no unknown key, and %[1]sd accepts its values.\n\n"+
		"certificate: cert-file and key-file exist, load and match.\n\n"+
		"key-file: only its owner may read the key (mode 600), and that owner is root or %[1]sd's user.\n\n"+
		"validity: the certificate is valid now (error) and for 30 more days (warning).\n\n"+
		"client-id: its CN (or client-id without a certificate) is a valid client id, a topic level.\n\n"+
		"broker (one per broker): the host name resolves, the broker accepts connections and, for ssl:// and wss://, its certificate verifies with ca-root.\n\n"+
		"topics: a connection with this identity may subscribe to its own control/in and data/in and publish to its data/out, and is refused another host's topic; "+
		"accepting that is a warning (the broker does not enforce ACLs).\n\n"+
		"worker-dir and worker-files: the worker directory exists, and it and each worker file pass the rules %[1]sd's supervisor applies (owned by root or %[1]sd's user, writable by nobody else, executable).\n\n"+
		"%[1]sd: %[1]sd answers on its control socket and is connected with this identity.\n\n"+
		"%[1]sd-workers: none of its workers is in backoff or failed, and each running one registered its handlers.\n\n"+
		"rhsm: the RHSM consumer is the certificate's CN (a warning when RHSM cannot be asked).\n\n"+
		"The check never disturbs a running %[1]sd: its test connection uses the host's client id followed by %[2]q, with a clean session, never %[1]sd's own, "+
		"whose session a second connection would take over. A broker must let that client id act for the host's certificate; "+
		"when it refuses it while %[1]sd is connected, topics is a warning, not an error.\n\n"+
		"Each check is ok, warning, error or skipped (an earlier check failed, or it does not apply); one that is not ok comes with one line of advice. "+
		"The exit status is 0 when no check is an error (warnings allowed), 1 when one is, 2 on a usage error.\n\n"+
		"With --format json, print {\"version\": 1, \"config\": FILE, \"checks\": [{\"name\", \"status\", \"message\", \"advice\"}, ...]}: "+
		"status is ok, warning, error or skipped, advice is absent when ok; keys are added, never renamed or removed, while version is 1.",
		build.ShortName, yggdrasil.CheckClientSuffix)
}

// runCheck runs the self-test (cmd/ygg/internal/check) and prints it; exit
// status 1 when a check is an error.
func runCheck(ctx context.Context, a *app, p *parsed) error {
	r := check.Run(ctx, check.Env{
		ConfigFile: p.get("config"),
		Euid:       os.Geteuid(),
		Unit:       build.UnitName(),
		Status: func(ctx context.Context, path string) (control.Status, error) {
			return control.Dial(path).Status(ctx)
		},
		RHSMConsumer: func(ctx context.Context) (string, error) {
			conn, err := systemBus()
			if err != nil {
				return "", err
			}
			defer conn.Close()
			return rhsm.New(conn).UUID(ctx)
		},
		ProcessUID: func(pid int) (int, bool) {
			fi, err := os.Stat("/proc/" + strconv.Itoa(pid))
			if err != nil {
				return 0, false
			}
			return fileperm.Owner(fi)
		},
	})
	var err error
	if p.get("format") == "json" {
		err = check.WriteJSON(a.stdout, r)
	} else {
		err = check.WriteTable(a.stdout, r)
	}
	if err != nil {
		return fmt.Errorf("print the report: %w", err)
	}
	if r.Failed() {
		return errSilent
	}
	return nil
}

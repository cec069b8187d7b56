package check

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/supervisor"
)

// WorkerDir checks the worker directory and its worker files by the rules
// yggd's supervisor applies (yggdrasil/supervisor: CheckDir, CheckFile)
// for yggd running as yggdUID: the directory exists and no user but root
// and yggd's may change it, and each file whose name ends in "worker" is
// a regular file they alone may change, and that yggd may execute.
func WorkerDir(dir string, yggdUID int) []Result {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return []Result{
				failed(NameWorkerDir, fmt.Sprintf("install the workers into %s, or set worker-dir to where they are", dir),
					"worker directory %s does not exist", dir),
				skipped(NameWorkerFiles, "needs the worker directory"),
			}
		}
		return []Result{failed(NameWorkerDir, "make it readable by yggd", "worker directory: %v", err), skipped(NameWorkerFiles, "needs the worker directory")}
	}
	if err := supervisor.CheckDir(dir, yggdUID); err != nil {
		return []Result{refusal(NameWorkerDir, err), skipped(NameWorkerFiles, "needs a worker directory yggd accepts")}
	}
	res := []Result{ok(NameWorkerDir, "%s exists and only root or yggd's user may change it", dir)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return append(res, failed(NameWorkerFiles, "make it readable by yggd", "read worker directory: %v", err))
	}
	var names, refused []string
	var first error
	for _, e := range entries {
		if !supervisor.IsWorkerName(e.Name()) {
			continue
		}
		skip, err := supervisor.CheckFile(filepath.Join(dir, e.Name()), yggdUID)
		switch {
		case skip:
		case err != nil:
			refused = append(refused, e.Name())
			if first == nil {
				first = err
			}
		default:
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	switch {
	case first != nil:
		r := refusal(NameWorkerFiles, first)
		if len(refused) > 1 {
			r.Message = fmt.Sprintf("%d worker files refused (%s); the first: %s", len(refused), strings.Join(refused, ", "), r.Message)
		}
		return append(res, r)
	case len(names) == 0:
		return append(res, warning(NameWorkerFiles, "install a worker (a program whose name ends in \"worker\") into "+dir,
			"no worker in %s: yggd has nothing to hand data messages to", dir))
	}
	return append(res, ok(NameWorkerFiles, "%d worker files yggd may run: %s", len(names), strings.Join(names, ", ")))
}

// refusal turns a supervisor.Refusal into an error result with its fix.
func refusal(name string, err error) Result {
	var r *supervisor.Refusal
	if errors.As(err, &r) {
		advice := r.Fix
		if advice == "" {
			advice = "fix the file or remove it"
		}
		return failed(name, advice, "%s", r.Error())
	}
	return failed(name, "see the error", "%v", err)
}

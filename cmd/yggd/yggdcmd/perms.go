package yggdcmd

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/fileperm"
)

// warnLoosePermissions warns about what yggd reads at start that another
// user could change: the configuration file (it names the brokers, the
// certificates and the worker directory) and the directories holding the
// certificate, key and CA files (whoever may write such a directory can
// swap the file in it). It logs one WARN line for each, with the path, the
// mode and the fix; yggd starts anyway. The worker files and their
// directory are the supervisor's business, which refuses them instead.
func warnLoosePermissions(cfg Config, log *slog.Logger) {
	if log == nil {
		return
	}
	euid := os.Geteuid()
	if cfg.File != "" {
		if fi, err := os.Stat(cfg.File); err == nil {
			var why, fix []string
			if uid, ok := fileperm.Owner(fi); ok && uid != 0 && uid != euid {
				why = append(why, fmt.Sprintf("owned by uid %d", uid))
				fix = append(fix, "chown root "+cfg.File)
			}
			if w := fileperm.Writers(fi); w != "" {
				why = append(why, "writable by "+w)
				fix = append(fix, "chmod go-w "+cfg.File)
			}
			if len(why) > 0 {
				log.Warn("configuration file can be changed by other users",
					"path", cfg.File, "mode", fileperm.Mode(fi), "reason", strings.Join(why, ", "), "fix", strings.Join(fix, " && "))
			}
		}
	}
	seen := map[string]bool{}
	for _, f := range []struct{ key, path string }{
		{"cert-file", cfg.CertFile},
		{"key-file", cfg.KeyFile},
		{"ca-root", cfg.CARoot},
	} {
		if f.path == "" {
			continue
		}
		dir, err := filepath.Abs(filepath.Dir(f.path))
		if err != nil || seen[dir] {
			continue
		}
		seen[dir] = true
		fi, err := os.Stat(dir)
		if err != nil {
			continue // reading the file will say why
		}
		if w := fileperm.Writers(fi); w != "" {
			log.Warn("certificate directory can be changed by other users",
				"path", dir, "mode", fileperm.Mode(fi), "reason", "writable by "+w, "holds", f.key, "fix", "chmod go-w "+dir)
		}
	}
}

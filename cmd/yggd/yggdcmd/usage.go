package yggdcmd

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

// flagDoc documents one flag; usage and the man page are made from it.
type flagDoc struct {
	name, arg, text string
}

var flagDocs = []flagDoc{
	{"config", "FILE", "read the configuration from FILE (TOML; default " + DefaultConfigFile() + " when it exists)"},
	{"broker", "URI", "MQTT broker to connect to, tried in order; repeat for several (tcp://host:1883, ssl://host:8883, ws://host/path, wss://host/path)"},
	{"cert-file", "FILE", "client certificate (PEM or DER); its CN is the client id"},
	{"key-file", "FILE", "private key of the certificate (PEM or DER); should be mode 600"},
	{"ca-root", "FILE", "extra CA certificates (PEM) trusted for the broker and for content URLs"},
	{"client-id", "ID", "client id when there is no certificate (local use, for example with yggsim)"},
	{"topic-prefix", "PREFIX", "first segment of every topic (default " + build.TopicPrefix + ")"},
	{"data-host", "HOST", "replace the host of every content URL by HOST"},
	{"worker-dir", "DIR", "directory of the worker executables (names ending in \"worker\")"},
	{"worker-config-dir", "DIR", "directory of the per-worker settings, NAME.toml for worker NAME: enabled, env, proxy (default " + filepath.Join(build.ConfigDir(), "workers") + "; empty for none)"},
	{"runtime-dir", "DIR", "runtime directory; the worker sockets go in DIR/workers, mode 0700 (default $RUNTIME_DIRECTORY, else /run/" + build.LongName + ")"},
	{"state-dir", "DIR", "state directory: the journal of messages and answers kept across restarts (default $STATE_DIRECTORY, else " + filepath.Join(build.LocalstateDir, "lib", build.LongName) + ")"},
	{"dispatch-timeout", "DURATION", "how long a worker may take to accept a message (default 60s)"},
	{"max-message-size", "BYTES", "largest data message accepted or sent, over MQTT and gRPC (default 33554432)"},
	{"keepalive", "DURATION", "MQTT keep-alive interval (default 30s)"},
	{"queue-max-count", "N", "answers kept while the broker is unreachable (default 10000)"},
	{"queue-max-bytes", "BYTES", "bytes of answers kept while the broker is unreachable (default 268435456)"},
	{"fetch-timeout", "DURATION", "total time allowed to fetch detached content (default 30s)"},
	{"control-socket", "PATH", "the control socket that ygg status and ygg workers use, mode 0600 (default RUNTIME-DIR/control.sock)"},
	{"control-group", "GROUP", "also let the members of GROUP read through the control socket (mode 0660; default: only root and yggd's user)"},
	{"metrics-listen", "HOST:PORT", "also serve GET /metrics over TCP at HOST:PORT, to anyone who can reach it (default: off; the control socket always serves it)"},
	{"log-level", "LEVEL", "error, warn, info, debug or trace (default info)"},
	{"version", "", "print the version and exit"},
	{"help", "", "print this help and exit"},
}

const description = `yggd keeps this host connected to the cloud's MQTT broker. It publishes the
host's connection status (retained, with a retained offline will), answers
the ping, disconnect and reconnect commands, and routes every data message
to the worker that serves its directive, over gRPC on a UNIX socket. Worker
answers go back on the data/out topic, or by HTTP POST when their directive
is a URL. yggd starts every executable in its worker directory whose name
ends in "worker", restarts it when it dies, and stops it on exit.

Every flag can be set in the TOML configuration file under the same name;
flags win over the file, the file wins over the defaults.`

const signals = `SIGINT and SIGTERM stop yggd cleanly: workers get SIGTERM (SIGKILL after a
grace period), queued answers are sent, a retained offline status is
published, and yggd exits 0.`

func usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: yggd [flags]\n\n%s\n\nFlags:\n", description)
	for _, f := range flagDocs {
		left := "--" + f.name
		if f.arg != "" {
			left += " " + f.arg
		}
		fmt.Fprintf(&b, "  %-28s %s\n", left, f.text)
	}
	fmt.Fprintf(&b, "\nSignals:\n%s\n\nExit status: 0 after a clean stop, 1 when yggd cannot run, 2 for a usage or configuration error (a restart cannot fix it).\n", indent(signals))
	return b.String()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// manPage returns yggd(8) in troff, from the same text as usage.
func manPage() string {
	esc := func(s string) string { return strings.ReplaceAll(s, "-", `\-`) }
	var b strings.Builder
	fmt.Fprintf(&b, ".TH YGGD 1 \"\" \"yggd %s\" \"User Commands\"\n", build.Version)
	fmt.Fprintf(&b, ".SH NAME\nyggd \\- the yggdrasil host agent\n.SH SYNOPSIS\n.B yggd\n[\\fIflags\\fR]\n")
	fmt.Fprintf(&b, ".SH DESCRIPTION\n%s\n.SH OPTIONS\n", esc(description))
	for _, f := range flagDocs {
		fmt.Fprintf(&b, ".TP\n.BR \\-\\-%s", esc(f.name))
		if f.arg != "" {
			fmt.Fprintf(&b, " \" \\fI%s\\fR\"", f.arg)
		}
		fmt.Fprintf(&b, "\n%s\n", esc(f.text))
	}
	fmt.Fprintf(&b, ".SH SIGNALS\n%s\n.SH FILES\n.TP\n%s\nconfiguration file\n", esc(signals), esc(DefaultConfigFile()))
	fmt.Fprintf(&b, ".SH EXIT STATUS\n0 after a clean stop, 1 when yggd cannot run, 2 for a usage or configuration error (a restart cannot fix it).\n.SH SEE ALSO\n.BR ygg (1)\n")
	return b.String()
}

// bashCompletion returns a bash completion script for yggd's flags.
func bashCompletion() string {
	var words []string
	for _, f := range flagDocs {
		words = append(words, "--"+f.name)
	}
	return fmt.Sprintf(`# bash completion for yggd
_yggd() {
	local cur prev
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	case "$prev" in
	--config|--cert-file|--key-file|--ca-root|--control-socket)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--worker-dir|--worker-config-dir|--runtime-dir|--state-dir)
		COMPREPLY=($(compgen -d -- "$cur")); return ;;
	--log-level)
		COMPREPLY=($(compgen -W "error warn info debug trace" -- "$cur")); return ;;
	esac
	COMPREPLY=($(compgen -W "%s" -- "$cur"))
}
complete -F _yggd yggd
`, strings.Join(words, " "))
}

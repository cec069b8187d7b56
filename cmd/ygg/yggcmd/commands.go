package yggcmd

import (
	"context"
	"fmt"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
	"github.com/ygglab/yggdrasil/yggdrasil/control"
)

func overview() string {
	return fmt.Sprintf("%[1]s connects this host to %[2]s: it registers the host with Red Hat "+
		"Subscription Management (RHSM), which gives it the identity certificate that %[1]sd uses to "+
		"talk to %[2]s, and enables and starts the %[1]sd daemon (%[3]s). It also shows the state of "+
		"both and prints the host's canonical facts.", build.ShortName, build.Provider, build.UnitName())
}

var formatFlag = flagSpec{long: "format", short: "f", arg: "FORMAT", help: "Output format.", values: []string{"table", "json"}}

var factsFlags = []flagSpec{
	{long: "root", arg: "DIR", complete: "dir",
		help: "Read the fact files (etc/machine-id, etc/insights-client/machine-id, sys/devices/virtual/dmi/id/product_uuid, etc/pki/consumer/cert.pem) under DIR instead of /. Default: $YGG_FACTS_ROOT, else /."},
	{long: "consumer-cert", arg: "FILE", complete: "file",
		help: "Read subscription_manager_id from the CN of this certificate (PEM or DER). Default: <root>/etc/pki/consumer/cert.pem."},
}

// commands returns the command table, in the order help lists it.
func commands() []command {
	unit := build.UnitName()
	return []command{
		{
			name: "register", aliases: []string{"connect"},
			summary: "register with RHSM and start " + unit,
			desc: fmt.Sprintf("Register this host with Red Hat Subscription Management, then enable and start %[1]s.\n\n"+
				"Give either --username and --password (and --organization when the account belongs to several organizations), "+
				"or --organization and one or more --activation-key. On a terminal, %[2]s asks for what is missing, the password without echo; "+
				"otherwise missing credentials are an error. The credentials go to RHSM over its private peer-to-peer socket, never over the shared system bus.\n\n"+
				"RHSM writes the consumer certificate and key (/etc/pki/consumer/cert.pem and key.pem) that %[2]sd uses as its identity. "+
				"On a host that is already registered, %[2]s does not register again: it only makes sure that %[1]s is enabled and running.\n\n"+
				"When RHSM refuses the registration, its message is printed and nothing is enabled. "+
				"%[2]s waits until systemd reports %[1]s active (up to 30 seconds after its start job); "+
				"when it fails to start or stops instead, the host stays registered and the message gives the unit's state and what to run to find out why. "+
				"The exit status is 0 only when the host is registered and %[1]s is active.",
				unit, build.ShortName),
			flags: []flagSpec{
				{long: "username", short: "u", arg: "USERNAME", help: "Register as this RHSM user."},
				{long: "password", short: "p", arg: "PASSWORD", help: "The user's password. Prefer the prompt: a password on the command line is visible to other users."},
				{long: "organization", short: "o", arg: "ID", help: "Register into this organization (required with --activation-key)."},
				{long: "activation-key", short: "a", arg: "KEY", repeat: true, help: "Register with this activation key of the organization."},
				{long: "server", arg: "URL", help: "Set the RHSM server (host name, or URL with port and prefix) in rhsm.conf before registering."},
			},
			run: runRegister,
		},
		{
			name: "unregister", aliases: []string{"disconnect"},
			summary: "stop " + unit + " and unregister from RHSM",
			desc: fmt.Sprintf("Stop and disable %[1]s, then unregister this host from Red Hat Subscription Management, which deletes its consumer certificate.\n\n"+
				"Every step runs even when an earlier one fails, and all failures are listed. "+
				"Steps that are already done are reported as such, so running unregister on an unregistered host succeeds.", unit),
			run: runUnregister,
		},
		{
			name:    "status",
			summary: "show the registration, " + unit + " and its connection and workers",
			desc: fmt.Sprintf("Show whether this host is registered with Red Hat Subscription Management (and its consumer id), the state of %[1]s, "+
				"and what the running %[2]sd says on its control socket: its connection to the broker, its client id and certificate, its answer queue, and its workers.\n\n"+
				"The control socket is control-socket of %[2]sd's configuration (--config, else the file %[2]sd reads by default), "+
				"else control.sock in its runtime directory (runtime-dir, else $RUNTIME_DIRECTORY, else /run/%[3]s). "+
				"Only root, %[2]sd's user and the members of its control-group may use it.\n\n"+
				"The exit status is 0 when the host is registered, %[1]s is active, %[2]sd answers and is connected, and none of its workers is in state backoff or failed; 1 otherwise.\n\n"+
				"With --format json, print one JSON object with the keys hostname, registered, consumer_id, unit, active_state, unit_file_state, yggd_running and control_socket, "+
				"plus rhsm_error and unit_error when a state could not be read, and yggd (the control socket's status document, whose version key says its schema) or yggd_error.",
				unit, build.ShortName, build.LongName),
			flags: []flagSpec{formatFlag, configFlag},
			run:   runStatus,
		},
		{
			name:    "workers",
			summary: "show the workers of the running " + build.ShortName + "d",
			desc: fmt.Sprintf("Show the workers of the running %[1]sd, from its control socket (found as status finds it): for each worker executable, "+
				"its state (starting, running, backoff, failed or stopped), its pid, how many times it was restarted, the handlers (directives) its processes registered, "+
				"and how its last process ended. A handler registered by a process %[1]sd did not start is listed as (unsupervised).\n\n"+
				"The exit status is 0 when %[1]sd answers and no worker is in state backoff or failed; 1 otherwise.\n\n"+
				"With --format json, print the control socket's workers document: {\"version\": 1, \"workers\": [...]}.", build.ShortName),
			flags: []flagSpec{formatFlag, configFlag},
			run:   runWorkers,
		},
		{
			name: "log-level", args: "[LEVEL]", maxArgs: 1, argValues: logLevels,
			summary: "show or change the log level of the running " + build.ShortName + "d",
			desc: fmt.Sprintf("Without LEVEL, print the log level of the running %[1]sd. With LEVEL (%[2]s), set it and print the level now in force. "+
				"The change lasts until %[1]sd stops: its configuration (log-level) is not modified.\n\n"+
				"It goes through %[1]sd's control socket, found as status finds it.\n\n"+
				"The exit status is 0 when %[1]sd answered (and accepted LEVEL), 1 when it does not answer or refuses LEVEL, 2 on a usage error.",
				build.ShortName, strings.Join(logLevels, ", ")),
			flags: []flagSpec{configFlag},
			run:   runLogLevel,
		},
		{
			name:    "check",
			summary: "check the host's configuration, certificate, broker, workers and " + build.ShortName + "d",
			desc:    checkDesc(),
			flags:   []flagSpec{formatFlag, checkConfigFlag},
			run:     runCheck,
		},
		{
			name:    "dispatch",
			summary: "send a data message to a local worker and print its answers",
			desc: fmt.Sprintf("Hand a data message to the worker that handles --directive, through the running %[1]sd's control socket (found as status finds it), "+
				"as if the cloud had sent it, and print the worker's answers: no broker or cloud is needed, so a worker author can try a worker on the host alone. "+
				"The message is made up on the host: it gets a new message id, is not kept in %[1]sd's journal, and its answers come back here instead of going to the cloud.\n\n"+
				"--content is the message's content: JSON as it is, any other text as a JSON string (so --content hello sends \"hello\"); --content-file reads it from a file, - for stdin. "+
				"Each answer's content is printed on one line, followed by its metadata as KEY=VALUE lines; a line on stderr says when the worker took the message. "+
				"With --format json, each line of the control socket's answer is printed instead: {\"kind\": \"delivered\"|\"answer\"|\"rejected\"|\"timeout\", \"message_id\", \"answer\" (the whole data message), \"code\", \"error\"}.\n\n"+
				"%[2]s waits for --answers answers (default 1; a worker may send several, the first ones as progress), at most --timeout. "+
				"With --no-wait it returns once the worker has taken the message.\n\n"+
				"The exit status is 0 when the worker took the message and the answers came; 1 when the message was refused (the error names the code the cloud would have got, "+
				"such as unknown-directive), fewer answers came within the timeout, or %[1]sd does not answer; 2 on a usage error.",
				build.ShortName, build.ShortName),
			flags: []flagSpec{
				{long: "directive", short: "d", arg: "DIRECTIVE", help: "The directive (handler) of the worker to send the message to; required."},
				{long: "content", short: "c", arg: "TEXT", help: "The content: JSON, or text sent as a JSON string. Default: null."},
				{long: "content-file", arg: "FILE", complete: "file", help: "Read the content from FILE (- for stdin) instead."},
				{long: "metadata", short: "m", arg: "KEY=VALUE", repeat: true, help: "Add this metadata entry to the message."},
				{long: "answers", short: "n", arg: "N", help: "Wait for N answers (default 1)."},
				{long: "no-wait", help: "Return once the worker has taken the message, without waiting for answers."},
				{long: "timeout", short: "t", arg: "DURATION", help: "Wait at most this long for the answers, such as 30s or 5m (default 1m)."},
				formatFlag, configFlag,
			},
			run: runDispatch,
		},
		{
			name:    "listen",
			summary: "follow what the running " + build.ShortName + "d does",
			desc: fmt.Sprintf("Print the events of the running %[1]sd as they happen, from its control socket (found as status finds it), until interrupted: "+
				"a data message received (from the cloud, or local from dispatch), dropped as a duplicate, delivered to its worker (with the worker's pid), answered, "+
				"or rejected (with the code the cloud gets), a worker changing state (starting, running, backoff, stopped), and the connection changing state.\n\n"+
				"Each event is one line: the time, the kind, then what it is about. With --format json, each event is a JSON object on its own line, "+
				"with the keys time, kind, and as they apply message_id, response_to, directive, local, pid, code, error, worker (as in status's worker list), connection (as in status) and count. "+
				"%[1]sd keeps its last %[2]d events: --last N prints up to N of them first; with --no-follow, %[3]s then exits.\n\n"+
				"A listener that cannot keep up does not slow %[1]sd down: it loses events, and a line of kind dropped says how many.\n\n"+
				"The exit status is 0 when interrupted, after --count events, or with --no-follow; 1 when %[1]sd does not answer or stops; 2 on a usage error.",
				build.ShortName, control.HistorySize, build.ShortName),
			flags: []flagSpec{
				{long: "last", arg: "N", help: "First print up to N of the events that happened before."},
				{long: "count", arg: "N", help: "Exit after N events."},
				{long: "no-follow", help: "Exit after the past events of --last, instead of following."},
				formatFlag, configFlag,
			},
			run: runListen,
		},
		{
			name:    "facts",
			summary: "print the host's canonical facts",
			desc: fmt.Sprintf("Print the canonical facts that identify this host to %[1]s, read from the host as %[2]sd reads them: "+
				"insights_id, machine_id, bios_uuid, subscription_manager_id (the CN of the consumer certificate), ip_addresses (IPv4 and IPv6 of non-loopback interfaces), "+
				"mac_addresses and fqdn.\n\n"+
				"A fact that cannot be read is left empty and a warning says why; the exit status is still 0.", build.Provider, build.ShortName),
			flags: append([]flagSpec{formatFlag}, factsFlags...),
			run:   runFacts,
		},
		{
			name:    "canonical-facts",
			summary: "print the canonical facts as compact JSON",
			desc: "Print the canonical facts as one compact JSON object without a trailing newline, as ygg 0.1.x does. " +
				"See facts for what is collected.",
			flags: factsFlags,
			run:   runCanonicalFacts,
		},
		{
			name:    "version",
			summary: "print the version",
			desc:    "Print the version of " + build.ShortName + ".",
			run: func(ctx context.Context, a *app, p *parsed) error {
				fmt.Fprintf(a.stdout, "%s version %s\n", build.ShortName, build.Version)
				return nil
			},
		},
		{
			name: "help", args: "[COMMAND]", maxArgs: 1,
			summary: "show help for a command",
			desc:    "Show the help of COMMAND, or the list of commands.",
			run: func(ctx context.Context, a *app, p *parsed) error {
				if len(p.args) == 0 {
					return a.printHelp(nil)
				}
				c := lookup(p.args[0])
				if c == nil {
					return usagef("help: unknown command %q", p.args[0])
				}
				return a.printHelp(c)
			},
		},
	}
}

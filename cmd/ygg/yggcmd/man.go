package yggcmd

import (
	"fmt"
	"io"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

// roff escapes text for a man page: backslashes, dashes (so they render as
// ASCII hyphen-minus and can be searched for), and leading dots or quotes.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

func roffFlag(f flagSpec) string {
	s := `\fB\-\-` + roff(f.long) + `\fR`
	if f.short != "" {
		s = `\fB\-` + f.short + `\fR, ` + s
	}
	if f.arg != "" {
		s += ` \fI` + f.arg + `\fR`
	}
	return s
}

func roffFlags(w io.Writer, flags []flagSpec) {
	for _, f := range flags {
		if f.hidden {
			continue
		}
		help := f.help
		if len(f.values) > 0 {
			help += " One of: " + strings.Join(f.values, ", ") + "."
		}
		if f.repeat {
			help += " May be repeated."
		}
		fmt.Fprintf(w, ".TP\n%s\n%s\n", roffFlag(f), roff(help))
	}
}

// writeManPage prints ygg(1) in roff, from the command table.
func writeManPage(w io.Writer, cmds []command) error {
	name, unit := build.ShortName, build.UnitName()
	up := strings.ToUpper(name)
	fmt.Fprintf(w, ".TH %s 1 \"\" \"%s %s\" \"User Commands\"\n", up, roff(name), roff(build.Version))
	fmt.Fprintf(w, ".nh\n.ad l\n")
	fmt.Fprintf(w, ".SH NAME\n%s \\- connect this host to %s and manage the %sd daemon\n", roff(name), roff(build.Provider), roff(name))
	fmt.Fprintf(w, ".SH SYNOPSIS\n.B %s\n[\\fB\\-\\-help\\fR] [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]\n", roff(name))
	fmt.Fprintf(w, ".SH DESCRIPTION\n%s\n", roff(overview()))
	fmt.Fprintf(w, ".SH OPTIONS\n")
	roffFlags(w, globalFlags)
	fmt.Fprintf(w, ".SH COMMANDS\n")
	for _, c := range cmds {
		if c.hidden {
			continue
		}
		fmt.Fprintf(w, ".SS %s\n", roff(c.name))
		fmt.Fprintf(w, "\\fB%s %s\\fR", roff(name), roff(c.name))
		for _, f := range c.flags {
			if f.hidden {
				continue
			}
			label := `\fB\-\-` + roff(f.long) + `\fR`
			if f.arg != "" {
				label += ` \fI` + f.arg + `\fR`
			}
			fmt.Fprintf(w, " [%s]", label)
			if f.repeat {
				fmt.Fprintf(w, "...")
			}
		}
		if c.args != "" {
			fmt.Fprintf(w, " %s", roff(c.args))
		}
		fmt.Fprintf(w, "\n.PP\n")
		if len(c.aliases) > 0 {
			fmt.Fprintf(w, "Alias: \\fB%s\\fR.\n.PP\n", roff(strings.Join(c.aliases, ", ")))
		}
		for i, para := range strings.Split(c.desc, "\n\n") {
			if i > 0 {
				fmt.Fprintf(w, ".PP\n")
			}
			fmt.Fprintf(w, "%s\n", roff(para))
		}
		if len(c.flags) > 0 {
			fmt.Fprintf(w, ".PP\nOptions:\n.RS\n")
			roffFlags(w, c.flags)
			fmt.Fprintf(w, ".RE\n")
		}
	}
	fmt.Fprintf(w, `.SH EXIT STATUS
.TP
.B 0
Success; for \fBstatus\fR, the host is registered and %[1]s is active.
.TP
.B 1
The command failed (the message says why), or \fBstatus\fR found something down.
.TP
.B 2
The command line is wrong.
.SH ENVIRONMENT
.TP
.B DBUS_SYSTEM_BUS_ADDRESS
The address of the system bus, on which %[2]s talks to RHSM (com.redhat.RHSM1) and systemd (org.freedesktop.systemd1).
Default: unix:path=/run/dbus/system_bus_socket.
.TP
.B YGG_FACTS_ROOT
The directory under which \fBfacts\fR and \fBcanonical\-facts\fR read the fact files, instead of /.
.SH FILES
.TP
.I /etc/pki/consumer/cert.pem, /etc/pki/consumer/key.pem
The RHSM consumer certificate and key, written by registration; the certificate's CN is the consumer id.
.TP
.I %[3]s
The %[2]sd configuration file.
.SH NOTES
Registering, unregistering and managing %[1]s need the rights of root on the system bus.
.SH SEE ALSO
.BR %[2]sd (1),
.BR subscription\-manager (8),
.BR systemctl (1)
`, roff(unit), roff(name), roff(build.ConfigDir()+"/config.toml"))
	return nil
}

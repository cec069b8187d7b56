package testscript

import (
	goscript "github.com/rogpeppe/go-internal/testscript"
)

// aclCommands returns the commands that make the sim's broker refuse a
// host its own topics, the fault of a broker whose ACL is wrong.
func aclCommands() map[string]command {
	return map[string]command{
		"acl-deny": {
			usage: "acl-deny host-id",
			run:   func(ts *goscript.TestScript, args []string) error { return denyHost(ts, args, true) },
		},
		"acl-allow": {
			usage: "acl-allow host-id",
			run:   func(ts *goscript.TestScript, args []string) error { return denyHost(ts, args, false) },
		},
	}
}

func denyHost(ts *goscript.TestScript, args []string, deny bool) error {
	if len(args) != 1 {
		return ErrUsage
	}
	s, err := simOf(ts)
	if err != nil {
		return err
	}
	return s.DenyHost(args[0], deny)
}

package yggcmd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/ygglab/yggdrasil/cmd/ygg/internal/rhsm"
	"github.com/ygglab/yggdrasil/cmd/ygg/internal/systemd"
	"github.com/ygglab/yggdrasil/yggdrasil/build"
)

const rhsmName = "Red Hat Subscription Management"

// systemBus connects to the system bus as every D-Bus client does:
// DBUS_SYSTEM_BUS_ADDRESS when set, else the well-known socket.
func systemBus() (*dbus.Conn, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	return conn, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "this host"
	}
	return h
}

// credentials are what register sends to RHSM.
type credentials struct {
	username, password, org string
	keys                    []string
}

// credentials checks the flags. With ask false it only checks that they
// do not contradict each other; with ask true it also requires what is
// missing, asking for it when stdin is a terminal.
func (a *app) credentials(p *parsed, ask bool) (credentials, error) {
	c := credentials{username: p.get("username"), password: p.get("password"), org: p.get("organization"), keys: p.getList("activation-key")}
	if len(c.keys) > 0 {
		if c.username != "" || c.password != "" {
			return c, usagef("register: give either --username and --password, or --organization and --activation-key, not both")
		}
		if c.org == "" {
			return c, usagef("register: --activation-key needs --organization")
		}
		return c, nil
	}
	if !ask || c.username != "" && c.password != "" {
		return c, nil
	}
	pr, ok := a.prompter()
	if !ok {
		if c.org != "" && c.username == "" {
			return c, usagef("register: --organization needs --activation-key, or --username and --password")
		}
		return c, usagef("register: --username and --password are required when standard input is not a terminal")
	}
	var err error
	if c.username == "" {
		if c.username, err = pr.ask("Username: "); err != nil {
			return c, err
		}
	}
	if c.password == "" {
		if c.password, err = pr.askSecret("Password: "); err != nil {
			return c, err
		}
	}
	if c.username == "" || c.password == "" {
		return c, usagef("register: a username and a password are required")
	}
	return c, nil
}

// serverConfig turns --server into rhsm.conf keys: a bare host name sets
// server.hostname; a URL also sets server.port and server.prefix when it has
// them.
func serverConfig(s string) (map[string]string, error) {
	if !strings.Contains(s, "://") {
		return map[string]string{"server.hostname": s}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		return nil, usagef("register: --server %q: not a host name or URL", s)
	}
	m := map[string]string{"server.hostname": u.Hostname()}
	if u.Port() != "" {
		m["server.port"] = u.Port()
	}
	if u.Path != "" {
		m["server.prefix"] = u.Path
	}
	return m, nil
}

func runRegister(ctx context.Context, a *app, p *parsed) error {
	unit := build.UnitName()
	// Check the command line before touching anything.
	var config map[string]string
	if s := p.get("server"); s != "" {
		var err error
		if config, err = serverConfig(s); err != nil {
			return err
		}
	}
	if _, err := a.credentials(p, false); err != nil {
		return err
	}

	fmt.Fprintf(a.stdout, "Registering %s with %s and starting %s.\n", hostname(), rhsmName, unit)
	conn, err := systemBus()
	if err != nil {
		return err
	}
	defer conn.Close()
	rc, sd := rhsm.New(conn), systemd.New(conn)

	uuid, err := rc.UUID(ctx)
	if err != nil {
		return err
	}
	if uuid != "" {
		fmt.Fprintf(a.stdout, "This system is already registered with %s (consumer %s); not registering again.\n", rhsmName, uuid)
	} else {
		creds, err := a.credentials(p, true)
		if err != nil {
			return err
		}
		for _, k := range []string{"server.hostname", "server.port", "server.prefix"} {
			if v, ok := config[k]; ok {
				if err := rc.SetConfig(ctx, k, v); err != nil {
					return err
				}
			}
		}
		pr := a.step("Registering with " + rhsmName)
		if len(creds.keys) > 0 {
			uuid, err = rc.RegisterWithActivationKeys(ctx, creds.org, creds.keys)
		} else {
			uuid, err = rc.Register(ctx, creds.org, creds.username, creds.password)
		}
		if err != nil {
			pr.done(false, "")
			var re *rhsm.Error
			if errors.As(err, &re) && re.Exception == "OrgNotSpecifiedException" {
				return fmt.Errorf("register with %s: %w (use --organization)", rhsmName, err)
			}
			return fmt.Errorf("register with %s: %w", rhsmName, err)
		}
		pr.done(true, fmt.Sprintf("Registered with %s (consumer %s).", rhsmName, uuid))
	}

	pr := a.step("Enabling and starting " + unit)
	if err := activate(ctx, sd, unit); err != nil {
		pr.done(false, "")
		fmt.Fprintf(a.stderr, "%s: %v\n", build.ShortName, err)
		fmt.Fprintf(a.stderr, "%s: this system is registered; once the problem is fixed, run '%s register' again to start %s\n",
			build.ShortName, build.ShortName, unit)
		return errSilent
	}
	pr.done(true, fmt.Sprintf("%s is enabled and running.", unit))
	return nil
}

// activate enables and starts unit, reloading systemd when enabling changed
// anything, as systemctl enable --now does.
func activate(ctx context.Context, sd *systemd.Client, unit string) error {
	changed, err := sd.Enable(ctx, unit)
	if err != nil {
		return err
	}
	if changed {
		if err := sd.Reload(ctx); err != nil {
			return err
		}
	}
	return sd.Start(ctx, unit)
}

func runUnregister(ctx context.Context, a *app, p *parsed) error {
	unit := build.UnitName()
	fmt.Fprintf(a.stdout, "Stopping %s and unregistering %s from %s.\n", unit, hostname(), rhsmName)
	conn, err := systemBus()
	if err != nil {
		return err
	}
	defer conn.Close()
	rc, sd := rhsm.New(conn), systemd.New(conn)
	var errs []error

	// 1. Stop the daemon.
	if st, err := sd.State(ctx, unit); err != nil {
		errs = append(errs, err)
	} else if st.ActiveState == "inactive" {
		fmt.Fprintf(a.stdout, "%s is already stopped.\n", unit)
	} else {
		pr := a.step("Stopping " + unit)
		if err := sd.Stop(ctx, unit); err != nil {
			pr.done(false, "")
			errs = append(errs, err)
		} else {
			pr.done(true, fmt.Sprintf("Stopped %s.", unit))
		}
	}

	// 2. Disable it.
	if changed, err := sd.Disable(ctx, unit); err != nil {
		errs = append(errs, err)
	} else if !changed {
		fmt.Fprintf(a.stdout, "%s is already disabled.\n", unit)
	} else if err := sd.Reload(ctx); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(a.stdout, "Disabled %s.\n", unit)
	}

	// 3. Unregister.
	if uuid, err := rc.UUID(ctx); err != nil {
		errs = append(errs, err)
	} else if uuid == "" {
		fmt.Fprintf(a.stdout, "This system is already unregistered from %s.\n", rhsmName)
	} else {
		pr := a.step("Unregistering from " + rhsmName)
		if err := rc.Unregister(ctx); err != nil {
			pr.done(false, "")
			errs = append(errs, fmt.Errorf("unregister from %s: %w", rhsmName, err))
		} else {
			pr.done(true, fmt.Sprintf("Unregistered from %s (consumer %s).", rhsmName, uuid))
		}
	}

	if len(errs) > 0 {
		for _, err := range errs {
			fmt.Fprintf(a.stderr, "%s: %v\n", build.ShortName, err)
		}
		return errSilent
	}
	return nil
}

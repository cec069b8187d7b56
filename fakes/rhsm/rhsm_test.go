package rhsm

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/fakes/dbusd"
	"github.com/ygglab/yggdrasil/yggdrasil/facts"
)

// mustStart starts a private bus and a fake on it, and a client connection.
func mustStart(t *testing.T, s *Server) *dbus.Conn {
	t.Helper()
	d := dbusd.MustStart(t)
	s.Bus = d.Addr()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return d.MustConnect(t)
}

func rhsmError(t *testing.T, err error) Error {
	t.Helper()
	var de dbus.Error
	if !errors.As(err, &de) {
		var dep *dbus.Error
		if !errors.As(err, &dep) {
			t.Fatalf("error %v (%T): want a D-Bus error", err, err)
		}
		de = *dep
	}
	if de.Name != ErrorName {
		t.Fatalf("error name %s (%v): want %s", de.Name, de.Body, ErrorName)
	}
	var e Error
	if err := json.Unmarshal([]byte(de.Body[0].(string)), &e); err != nil {
		t.Fatalf("error body %q: %v", de.Body, err)
	}
	return e
}

func obj(c *dbus.Conn, leaf string) dbus.BusObject {
	return c.Object(BusName, dbus.ObjectPath(rootPath+"/"+leaf))
}

// privateRegister opens the private socket the way ygg does and calls
// method on it.
func privateRegister(t *testing.T, c *dbus.Conn, method string, args ...any) (string, error) {
	t.Helper()
	var addr string
	if err := obj(c, "RegisterServer").Call(BusName+".RegisterServer.Start", 0, "").Store(&addr); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer obj(c, "RegisterServer").Go(BusName+".RegisterServer.Stop", dbus.FlagNoReplyExpected, nil, "")
	p, err := dbus.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer p.Close()
	if err := p.Auth(nil); err != nil {
		t.Fatalf("auth on %s: %v", addr, err)
	}
	var consumer string
	err = p.Object(BusName, rootPath+"/Register").Call(BusName+".Register."+method, 0, args...).Store(&consumer)
	return consumer, err
}

func TestRegisterUnregister(t *testing.T) {
	s := &Server{ConsumerDir: filepath.Join(t.TempDir(), "consumer")}
	c := mustStart(t, s)
	var uuid string
	if err := obj(c, "Consumer").Call(BusName+".Consumer.GetUuid", 0, "").Store(&uuid); err != nil || uuid != "" {
		t.Fatalf("GetUuid before registering = %q, %v; want \"\"", uuid, err)
	}

	// Bad credentials: an RHSM error with the server's message.
	_, err := privateRegister(t, c, "Register", "", "admin", "wrong", map[string]string{}, map[string]string{}, "")
	if e := rhsmError(t, err); e.Message != BadCredentials || e.Severity != "error" {
		t.Errorf("bad credentials: got %+v", e)
	}

	// Good credentials, options sent as a{ss} like real clients do.
	consumer, err := privateRegister(t, c, "Register", "", "admin", "secret", map[string]string{}, map[string]string{}, "")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	var cj struct {
		UUID string `json:"uuid"`
	}
	json.Unmarshal([]byte(consumer), &cj)
	cn, err := facts.CertCN(filepath.Join(s.ConsumerDir, "cert.pem"))
	if err != nil || cn != cj.UUID || cn == "" {
		t.Fatalf("cert CN = %q, %v; want the consumer uuid %q", cn, err, cj.UUID)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		if fi, err := os.Stat(filepath.Join(s.ConsumerDir, f)); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: %v, mode %v; want 0640", f, err, fi.Mode())
		}
	}
	if err := obj(c, "Consumer").Call(BusName+".Consumer.GetUuid", 0, "").Store(&uuid); err != nil || uuid != cn {
		t.Errorf("GetUuid = %q, %v; want %q", uuid, err, cn)
	}

	// Again: already registered.
	_, err = privateRegister(t, c, "Register", "", "admin", "secret", map[string]dbus.Variant{}, map[string]dbus.Variant{}, "")
	if e := rhsmError(t, err); e.Message != "This system is already registered." {
		t.Errorf("second Register: got %+v", e)
	}

	// Unregister, twice.
	if err := obj(c, "Unregister").Call(BusName+".Unregister.Unregister", 0, map[string]string{}, "").Err; err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.ConsumerDir, "cert.pem")); !os.IsNotExist(err) {
		t.Errorf("cert.pem after Unregister: %v, want it gone", err)
	}
	err = obj(c, "Unregister").Call(BusName+".Unregister.Unregister", 0, map[string]string{}, "").Err
	if e := rhsmError(t, err); !strings.Contains(e.Message, "requires the consumer to be registered") {
		t.Errorf("second Unregister: got %+v", e)
	}

	// Activation keys.
	_, err = privateRegister(t, c, "RegisterWithActivationKeys", "acme", []string{"nope"}, map[string]string{}, map[string]string{}, "")
	if e := rhsmError(t, err); !strings.Contains(e.Message, "activation keys") {
		t.Errorf("bad key: got %+v", e)
	}
	if _, err := privateRegister(t, c, "RegisterWithActivationKeys", "acme", []string{"ygg-key"}, map[string]string{}, map[string]string{}, ""); err != nil {
		t.Errorf("RegisterWithActivationKeys: %v", err)
	}
	if s.UUID() == "" {
		t.Errorf("not registered after RegisterWithActivationKeys")
	}

	var got []string
	for _, call := range s.Calls() {
		if call.Private {
			got = append(got, call.String())
		}
	}
	want := []string{
		"com.redhat.RHSM1.Register.Register(sssa{ss}a{ss}s) private",
		"com.redhat.RHSM1.Register.Register(sssa{ss}a{ss}s) private",
		"com.redhat.RHSM1.Register.Register(sssa{sv}a{sv}s) private",
		"com.redhat.RHSM1.Register.RegisterWithActivationKeys(sasa{ss}a{ss}s) private",
		"com.redhat.RHSM1.Register.RegisterWithActivationKeys(sasa{ss}a{ss}s) private",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("private calls (-want +got):\n%s", diff)
	}
}

func TestPrivateConnectionRefusesHello(t *testing.T) {
	c := mustStart(t, &Server{})
	var addr string
	if err := obj(c, "RegisterServer").Call(BusName+".RegisterServer.Start", 0, "").Store(&addr); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "unix:path=") || !strings.Contains(addr, ",guid=") {
		t.Errorf("address %q: want unix:path=…,guid=…", addr)
	}
	if p, err := dbus.Connect(addr); err == nil {
		p.Close()
		t.Errorf("Connect (with Hello) to the private socket succeeded, want failure")
	}
	var stopped bool
	if err := obj(c, "RegisterServer").Call(BusName+".RegisterServer.Stop", 0, "").Store(&stopped); err != nil || !stopped {
		t.Errorf("Stop = %v, %v; want true", stopped, err)
	}
	err := obj(c, "RegisterServer").Call(BusName+".RegisterServer.Stop", 0, "").Err
	if e := rhsmError(t, err); e.Message != "No domain socket server is running" {
		t.Errorf("Stop without server: %+v", e)
	}
}

func TestSlowAndHook(t *testing.T) {
	hookErr := &Error{"DBusException", "error", "injected"}
	s := &Server{Delay: 50 * time.Millisecond, Hook: func(c Call) error {
		if strings.HasSuffix(c.Method, ".Unregister") {
			return hookErr
		}
		return nil
	}}
	c := mustStart(t, s)
	if _, err := privateRegister(t, c, "Register", "", "admin", "secret", map[string]string{}, map[string]string{}, ""); err != nil {
		t.Fatalf("slow Register: %v", err)
	}
	err := obj(c, "Unregister").Call(BusName+".Unregister.Unregister", 0, map[string]string{}, "").Err
	if e := rhsmError(t, err); e != *hookErr {
		t.Errorf("hooked Unregister: got %+v, want %+v", e, *hookErr)
	}
}

func TestFactsAndIntrospection(t *testing.T) {
	c := mustStart(t, &Server{Facts: map[string]string{"uname.machine": "riscv64"}})
	var f map[string]string
	if err := c.Object(FactsBusName, rootPath+"/Facts").Call(BusName+".Facts.GetFacts", 0).Store(&f); err != nil {
		t.Fatal(err)
	}
	if f["uname.machine"] != "riscv64" {
		t.Errorf("GetFacts = %v", f)
	}
	var xml string
	if err := obj(c, "Consumer").Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xml); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<method name="GetUuid"><arg name="locale" type="s" direction="in"></arg><arg type="s" direction="out"></arg></method>`, `<signal name="ConsumerChanged">`} {
		if !strings.Contains(strings.ReplaceAll(xml, "\n", ""), want) {
			t.Errorf("introspection lacks %s:\n%s", want, xml)
		}
	}
	var props map[string]dbus.Variant
	if err := obj(c, "Config").Call("org.freedesktop.DBus.Properties.GetAll", 0, BusName+".Config").Store(&props); err != nil || len(props) != 0 {
		t.Errorf("GetAll = %v, %v; want empty", props, err)
	}
	if err := obj(c, "Config").Call(BusName+".Config.Set", 0, "server.hostname", "example.com", "").Err; err != nil {
		t.Errorf("Config.Set(sss): %v", err)
	}
	var v dbus.Variant
	if err := obj(c, "Config").Call(BusName+".Config.Get", 0, "server.hostname", "").Store(&v); err != nil || v.Value() != "example.com" {
		t.Errorf("Config.Get = %v, %v", v, err)
	}
}

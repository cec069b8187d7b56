// Package rhsm is a fake of subscription-manager's D-Bus services
// (com.redhat.RHSM1 and com.redhat.RHSM1.Facts) for tests and the demo. It
// serves, on a real bus, the objects, methods, signatures, errors and the
// private peer-to-peer registration socket that ygg and rhc use, as described
// in docs/rhsm-dbus.md: Consumer, RegisterServer, Register (on the private
// connection only), Unregister, Config and Facts.
//
// Registering writes a real X.509 consumer certificate and key (CN = the new
// consumer UUID), signed by Issue, into ConsumerDir, exactly where
// subscription-manager writes them; GetUuid reads the CN back from the file,
// and Unregister deletes both files.
package rhsm

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/ygglab/yggdrasil/yggdrasil/facts"
)

// Bus names, paths and the error name of the real service.
const (
	BusName      = "com.redhat.RHSM1"
	FactsBusName = "com.redhat.RHSM1.Facts"
	ErrorName    = "com.redhat.RHSM1.Error"
	rootPath     = "/com/redhat/RHSM1"
)

// Account is a user of the fake entitlement server.
type Account struct {
	Username, Password string
	Orgs               []string // the org keys the user belongs to
}

// The defaults used when Server.Accounts or Server.ActivationKeys are nil.
var (
	DefaultAccounts       = []Account{{Username: "admin", Password: "secret", Orgs: []string{"acme"}}}
	DefaultActivationKeys = map[string][]string{"acme": {"ygg-key"}}
)

// BadCredentials is the message the entitlement server gives for a wrong
// username or password.
const BadCredentials = "Invalid username or password. To create a login, please visit https://www.redhat.com/wapps/ugc/register.html"

// Error is an RHSM error: on the wire, a D-Bus error named
// com.redhat.RHSM1.Error whose body is this value as a JSON string.
type Error struct {
	Exception string `json:"exception"`
	Severity  string `json:"severity"`
	Message   string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

func (e *Error) dbusError() *dbus.Error {
	b, _ := json.Marshal(e)
	return dbus.NewError(ErrorName, []any{string(b)})
}

// Errors the real service gives, for Hook.
func ErrAlreadyRegistered() *Error {
	return &Error{"DBusException", "error", "This system is already registered."}
}
func ErrNotRegistered() *Error {
	return &Error{"DBusException", "error", "This object requires the consumer to be registered before it can be used."}
}
func ErrBadCredentials() *Error { return &Error{"RestlibException", "error", BadCredentials} }

// Call is one method call the fake received.
type Call struct {
	Path      string // object path
	Method    string // interface.member
	Signature string // the body signature the client actually sent
	Sender    string // unique bus name; "" on the private connection
	Private   bool   // received on a private registration connection
}

func (c Call) String() string {
	s := c.Method + "(" + c.Signature + ")"
	if c.Private {
		s += " private"
	}
	return s
}

// Server is the fake service. The zero value works: Start connects to the
// system bus (DBUS_SYSTEM_BUS_ADDRESS), uses a temporary consumer directory
// and a throwaway CA, and knows DefaultAccounts.
type Server struct {
	// Bus is the address of the bus to serve on; "" means the system bus.
	Bus string
	// ConsumerDir is where cert.pem and key.pem are written; "" means a
	// temporary directory removed by Close.
	ConsumerDir string
	// Issue signs consumer certificates; nil means a throwaway CA of the
	// Server's own.
	Issue func(cn string) (certPEM, keyPEM []byte, err error)
	// Accounts and ActivationKeys (org → keys) are the entitlement server's
	// users; nil means DefaultAccounts and DefaultActivationKeys.
	Accounts       []Account
	ActivationKeys map[string][]string
	// Delay is added before Register, RegisterWithActivationKeys and
	// Unregister answer (a slow entitlement server).
	Delay time.Duration
	// Hook, when set, is called before each method runs; a non-nil result
	// is the method's error (an *Error is sent as com.redhat.RHSM1.Error,
	// anything else as org.freedesktop.DBus.Error.Failed).
	Hook func(Call) error
	// Facts answers GetFacts; nil means a small set of plausible facts.
	Facts map[string]string
	// Logger logs each call (nil = discarded).
	Logger *slog.Logger

	mu        sync.Mutex
	conn      *dbus.Conn
	dir       string
	tempDir   bool
	calls     []Call
	config    map[string]map[string]string
	p2p       *p2pServer
	p2pUsers  map[string]int // Starts not yet Stopped, by caller
	p2pStarts int            // Starts ever, to notice one during a Stop
	ca        throwawayCA
	org       string // org of the current consumer
	closing   chan struct{}
	closed    bool
}

// Start connects to the bus, exports the objects and takes both bus names.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil || s.closed {
		return errors.New("start rhsm: already started")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	s.Logger = s.Logger.With("component", "fake-rhsm")
	s.dir = s.ConsumerDir
	if s.dir == "" {
		d, err := os.MkdirTemp("", "consumer")
		if err != nil {
			return fmt.Errorf("start rhsm: %w", err)
		}
		s.dir, s.tempDir = d, true
	}
	s.config = map[string]map[string]string{
		"server": {"hostname": "subscription.rhsm.redhat.com", "port": "443", "prefix": "/subscription", "insecure": "0"},
		"rhsm":   {"consumerCertDir": s.dir, "manage_repos": "1", "baseurl": "https://cdn.redhat.com"},
	}
	s.closing = make(chan struct{})
	s.p2pUsers = map[string]int{}

	var conn *dbus.Conn
	var err error
	if s.Bus == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(s.Bus)
	}
	if err != nil {
		s.cleanupLocked()
		return fmt.Errorf("start rhsm: connect bus: %w", err)
	}
	s.conn = conn
	if err := s.exportAll(conn); err != nil {
		s.cleanupLocked()
		return fmt.Errorf("start rhsm: %w", err)
	}
	for _, name := range []string{BusName, FactsBusName} {
		reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
		if err != nil {
			s.cleanupLocked()
			return fmt.Errorf("start rhsm: request name %s: %w", name, err)
		}
		if reply != dbus.RequestNameReplyPrimaryOwner {
			s.cleanupLocked()
			return fmt.Errorf("start rhsm: request name %s: already owned", name)
		}
	}
	return nil
}

// Close releases the names, stops the private server and, if it made it,
// removes the consumer directory. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cleanupLocked()
	return nil
}

func (s *Server) cleanupLocked() {
	if s.closing != nil {
		select {
		case <-s.closing:
		default:
			close(s.closing)
		}
	}
	if s.p2p != nil {
		s.p2p.close()
		s.p2p = nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.tempDir {
		os.RemoveAll(s.dir)
		s.tempDir = false
	}
}

// Dir is the consumer certificate directory in use (valid after Start).
func (s *Server) Dir() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir
}

// Calls returns the calls received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// UUID returns the current consumer UUID, "" when not registered.
func (s *Server) UUID() string {
	uuid, _ := facts.CertCN(filepath.Join(s.Dir(), "cert.pem"))
	return uuid
}

// Config returns the value of "section.key" of the fake rhsm.conf.
func (s *Server) Config(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, k, _ := strings.Cut(key, ".")
	return s.config[sec][k]
}

// RegisterConsumer registers the host directly, as if an administrator had
// run subscription-manager, and returns the new UUID. Tests use it to start
// from a registered host.
func (s *Server) RegisterConsumer(org string) (string, error) {
	_, uuid, err := s.writeConsumer(org)
	if err != nil {
		return "", err
	}
	s.emitConsumerChanged()
	return uuid, nil
}

// --- bookkeeping shared by the methods ---

// begin records a call and runs Hook.
func (s *Server) begin(path, method string, msg dbus.Message, private bool) *dbus.Error {
	c := Call{Path: path, Method: method, Private: private}
	if sig, ok := msg.Headers[dbus.FieldSignature]; ok {
		c.Signature = sig.Value().(dbus.Signature).String()
	}
	if snd, ok := msg.Headers[dbus.FieldSender]; ok {
		c.Sender, _ = snd.Value().(string)
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	hook := s.Hook
	s.mu.Unlock()
	s.Logger.Info("call", "method", method, "signature", c.Signature, "private", private)
	if hook != nil {
		if err := hook(c); err != nil {
			return toDBus(err)
		}
	}
	return nil
}

func toDBus(err error) *dbus.Error {
	var re *Error
	if errors.As(err, &re) {
		return re.dbusError()
	}
	return dbus.MakeFailedError(err)
}

// wait applies Delay; it gives up when the Server closes.
func (s *Server) wait() {
	if s.Delay <= 0 {
		return
	}
	t := time.NewTimer(s.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closing:
	}
}

func (s *Server) accounts() []Account {
	if s.Accounts != nil {
		return s.Accounts
	}
	return DefaultAccounts
}

func (s *Server) activationKeys() map[string][]string {
	if s.ActivationKeys != nil {
		return s.ActivationKeys
	}
	return DefaultActivationKeys
}

func (s *Server) emitConsumerChanged() {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Emit(rootPath+"/Consumer", BusName+".Consumer.ConsumerChanged")
	}
}

// writeConsumer makes a consumer: key.pem first, then cert.pem, both 0640,
// as subscription-manager does. It returns the consumer JSON.
func (s *Server) writeConsumer(org string) (string, string, error) {
	uuid := newUUID()
	issue := s.Issue
	if issue == nil {
		issue = s.ca.issue
	}
	certPEM, keyPEM, err := issue(uuid)
	if err != nil {
		return "", "", fmt.Errorf("issue consumer certificate: %w", err)
	}
	dir := s.Dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("write consumer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o640); err != nil {
		return "", "", fmt.Errorf("write consumer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o640); err != nil {
		return "", "", fmt.Errorf("write consumer: %w", err)
	}
	s.mu.Lock()
	s.org = org
	s.mu.Unlock()
	host, _ := os.Hostname()
	b, _ := json.Marshal(map[string]any{
		"uuid": uuid, "name": host,
		"owner":  map[string]any{"key": org, "contentAccessMode": "org_environment"},
		"idCert": map[string]any{"cert": string(certPEM), "key": string(keyPEM)},
	})
	return string(b), uuid, nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// --- export and introspection ---

type object struct {
	leaf    string // "" for the root object
	iface   string
	value   any
	signals []introspect.Signal
}

func (s *Server) objects() []object {
	return []object{
		{leaf: "", iface: BusName, value: &rootObj{}},
		{leaf: "Consumer", iface: BusName + ".Consumer", value: &consumerObj{s},
			signals: []introspect.Signal{{Name: "ConsumerChanged"}}},
		{leaf: "RegisterServer", iface: BusName + ".RegisterServer", value: &registerServerObj{s}},
		{leaf: "Unregister", iface: BusName + ".Unregister", value: &unregisterObj{s}},
		{leaf: "Config", iface: BusName + ".Config", value: &configObj{s},
			signals: []introspect.Signal{{Name: "ConfigChanged"}}},
		{leaf: "Facts", iface: BusName + ".Facts", value: &factsObj{s}},
	}
}

func (s *Server) exportAll(conn *dbus.Conn) error {
	objs := s.objects()
	var children []introspect.Node
	for _, o := range objs {
		if o.leaf != "" {
			children = append(children, introspect.Node{Name: o.leaf})
		}
	}
	for _, o := range objs {
		path := rootPath
		var kids []introspect.Node
		if o.leaf == "" {
			kids = children
		} else {
			path += "/" + o.leaf
		}
		if err := exportObject(conn, dbus.ObjectPath(path), o, kids); err != nil {
			return err
		}
	}
	return nil
}

// exportObject exports o with Introspectable and an always-empty Properties,
// as every RHSM object has.
func exportObject(conn *dbus.Conn, path dbus.ObjectPath, o object, children []introspect.Node) error {
	if err := conn.Export(o.value, path, o.iface); err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	if err := conn.Export(emptyProps{}, path, "org.freedesktop.DBus.Properties"); err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	node := &introspect.Node{
		Name: string(path),
		Interfaces: []introspect.Interface{
			{Name: o.iface, Methods: namedArgs(introspect.Methods(o.value)), Signals: o.signals},
			{Name: "org.freedesktop.DBus.Properties", Methods: introspect.Methods(emptyProps{}),
				Signals: []introspect.Signal{{Name: "PropertiesChanged", Args: []introspect.Arg{
					{Name: "interface_name", Type: "s"}, {Name: "changed_properties", Type: "a{sv}"},
					{Name: "invalidated_properties", Type: "as"}}}}},
			introspect.IntrospectData,
		},
		Children: children,
	}
	if err := conn.Export(introspect.NewIntrospectable(node), path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	return nil
}

// argNames names the in-arguments in the introspection data, as the real
// service does.
var argNames = map[string][]string{
	"GetUuid":                    {"locale"},
	"GetOrg":                     {"locale"},
	"Start":                      {"locale"},
	"Stop":                       {"locale"},
	"Register":                   {"org", "username", "password", "options", "connection_options", "locale"},
	"RegisterWithActivationKeys": {"org", "activation_keys", "options", "connection_options", "locale"},
	"GetOrgs":                    {"username", "password", "connection_options", "locale"},
	"Unregister":                 {"proxy_options", "locale"},
	"Set":                        {"property_name", "new_value", "locale"},
	"SetAll":                     {"configs", "locale"},
	"Get":                        {"property_name", "locale"},
	"GetAll":                     {"locale"},
}

func namedArgs(ms []introspect.Method) []introspect.Method {
	for i := range ms {
		names := argNames[ms[i].Name]
		in := 0
		for j := range ms[i].Args {
			if ms[i].Args[j].Direction == "in" && in < len(names) {
				ms[i].Args[j].Name = names[in]
				in++
			}
		}
	}
	return ms
}

// emptyProps is org.freedesktop.DBus.Properties as RHSM has it: no
// properties at all.
type emptyProps struct{}

func (emptyProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"no such property " + name})
}
func (emptyProps) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	return map[string]dbus.Variant{}, nil
}
func (emptyProps) Set(iface, name string, v dbus.Variant) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{"no such property " + name})
}

type rootObj struct{}

// --- com.redhat.RHSM1.Consumer ---

type consumerObj struct{ s *Server }

func (o *consumerObj) GetUuid(locale string, msg dbus.Message) (string, *dbus.Error) {
	if err := o.s.begin(rootPath+"/Consumer", BusName+".Consumer.GetUuid", msg, false); err != nil {
		return "", err
	}
	return o.s.UUID(), nil
}

func (o *consumerObj) GetOrg(locale string, msg dbus.Message) (string, *dbus.Error) {
	if err := o.s.begin(rootPath+"/Consumer", BusName+".Consumer.GetOrg", msg, false); err != nil {
		return "", err
	}
	if o.s.UUID() == "" {
		return "", ErrNotRegistered().dbusError()
	}
	b, _ := json.Marshal(map[string]string{"key": o.s.orgOf(), "displayName": o.s.orgOf()})
	return string(b), nil
}

// orgOf is the org of the current consumer as recorded at registration.
func (s *Server) orgOf() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.org
}

// --- com.redhat.RHSM1.RegisterServer ---

type registerServerObj struct{ s *Server }

func (o *registerServerObj) Start(locale string, sender dbus.Sender, msg dbus.Message) (string, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/RegisterServer", BusName+".RegisterServer.Start", msg, false); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", dbus.MakeFailedError(errors.New("service is shutting down"))
	}
	if s.p2p == nil {
		p, err := startP2P(s.exportRegister, s.Logger.Info)
		if err != nil {
			return "", (&Error{"Failed", "error", err.Error()}).dbusError()
		}
		s.p2p = p
	}
	s.p2pUsers[string(sender)]++
	s.p2pStarts++
	return s.p2p.addr, nil
}

func (o *registerServerObj) Stop(locale string, sender dbus.Sender, msg dbus.Message) (bool, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/RegisterServer", BusName+".RegisterServer.Stop", msg, false); err != nil {
		return false, err
	}
	s.mu.Lock()
	if s.p2p == nil {
		s.mu.Unlock()
		return false, (&Error{"Failed", "error", "No domain socket server is running"}).dbusError()
	}
	if s.p2pUsers[string(sender)]--; s.p2pUsers[string(sender)] <= 0 {
		delete(s.p2pUsers, string(sender))
	}
	users := make([]string, 0, len(s.p2pUsers))
	for u := range s.p2pUsers {
		users = append(users, u)
	}
	conn, starts := s.conn, s.p2pStarts
	s.mu.Unlock()
	// Shut down only when no remaining user is still connected.
	for _, u := range users {
		var has bool
		if conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, u).Store(&has) == nil && has {
			return false, nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p2pStarts != starts {
		// A Start came in while we looked (D-Bus calls are served
		// concurrently): that caller has the address, keep serving.
		return false, nil
	}
	if s.p2p != nil {
		s.p2p.close()
		s.p2p = nil
	}
	clear(s.p2pUsers)
	return true, nil
}

// exportRegister exports a fresh Register object on a private connection.
func (s *Server) exportRegister(conn *dbus.Conn) error {
	o := object{leaf: "Register", iface: BusName + ".Register", value: &registerObj{s: s, conn: conn},
		signals: []introspect.Signal{{Name: "UserMemberOfOrgs", Args: []introspect.Arg{{Name: "orgs", Type: "s"}}}}}
	return exportObject(conn, rootPath+"/Register", o, nil)
}

// --- com.redhat.RHSM1.Register (private connection only) ---

type registerObj struct {
	s    *Server
	conn *dbus.Conn
}

var registerOptions = []string{"force", "name", "consumerid", "consumer_type", "environments", "environment_names",
	"environment_type", "role", "addons", "service_level", "usage", "jwt_token", "enable_content"}

var connectionOptions = []string{"host", "port", "handler", "proxy_hostname", "proxy_port", "proxy_user",
	"proxy_password", "no_proxy"}

func unknownKeys(m map[string]dbus.Variant, allowed []string) []string {
	var bad []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	return bad
}

// variantString reads an option the way the service does: clients send
// strings ("true", comma-joined lists) where variants are declared.
func variantString(v dbus.Variant) string {
	switch x := v.Value().(type) {
	case string:
		return x
	case bool:
		if x {
			return "true"
		}
		return "false"
	default:
		return fmt.Sprint(x)
	}
}

// prepare checks the options and the registration state shared by both
// register methods.
func (o *registerObj) prepare(options, conn map[string]dbus.Variant) *Error {
	if bad := unknownKeys(options, registerOptions); len(bad) > 0 {
		return &Error{"ValidationError", "error", "Unknown arguments: " + strings.Join(bad, ", ")}
	}
	if bad := unknownKeys(conn, connectionOptions); len(bad) > 0 {
		return &Error{"ValidationError", "error", "Unknown arguments: " + strings.Join(bad, ", ")}
	}
	if o.s.UUID() != "" {
		if f, ok := options["force"]; ok && variantString(f) == "true" {
			o.s.removeConsumer()
		} else {
			return ErrAlreadyRegistered()
		}
	}
	return nil
}

func (o *registerObj) Register(org, username, password string, options, connOptions map[string]dbus.Variant, locale string, msg dbus.Message) (string, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/Register", BusName+".Register.Register", msg, true); err != nil {
		return "", err
	}
	s.wait()
	if e := o.prepare(options, connOptions); e != nil {
		return "", e.dbusError()
	}
	var acct *Account
	for i, a := range s.accounts() {
		if a.Username == username && a.Password == password {
			acct = &s.accounts()[i]
		}
	}
	if acct == nil {
		return "", ErrBadCredentials().dbusError()
	}
	switch {
	case org == "" && len(acct.Orgs) == 0:
		return "", (&Error{"NoOrganizationException", "error",
			fmt.Sprintf("User %s is not able to register with any orgs.", username)}).dbusError()
	case org == "" && len(acct.Orgs) > 1:
		b, _ := json.Marshal(acct.Orgs)
		o.conn.Emit(rootPath+"/Register", BusName+".Register.UserMemberOfOrgs", string(b))
		return "", (&Error{"OrgNotSpecifiedException", "info",
			fmt.Sprintf("User %s is member of more organizations, but no organization was selected", username)}).dbusError()
	case org == "":
		org = acct.Orgs[0]
	case !slices.Contains(acct.Orgs, org):
		return "", (&Error{"RestlibException", "error",
			fmt.Sprintf("Organization %s does not exist.", org)}).dbusError()
	}
	return s.register(org)
}

func (o *registerObj) RegisterWithActivationKeys(org string, keys []string, options, connOptions map[string]dbus.Variant, locale string, msg dbus.Message) (string, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/Register", BusName+".Register.RegisterWithActivationKeys", msg, true); err != nil {
		return "", err
	}
	s.wait()
	if e := o.prepare(options, connOptions); e != nil {
		return "", e.dbusError()
	}
	known, ok := s.activationKeys()[org]
	if !ok {
		return "", (&Error{"RestlibException", "error", fmt.Sprintf("Organization %s does not exist.", org)}).dbusError()
	}
	if len(keys) == 0 {
		return "", (&Error{"RestlibException", "error", "Must specify at least one activation key"}).dbusError()
	}
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return "", (&Error{"RestlibException", "error",
				"None of the activation keys specified exist for this org."}).dbusError()
		}
	}
	return s.register(org)
}

func (o *registerObj) GetOrgs(username, password string, connOptions map[string]dbus.Variant, locale string, msg dbus.Message) (string, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/Register", BusName+".Register.GetOrgs", msg, true); err != nil {
		return "", err
	}
	for _, a := range s.accounts() {
		if a.Username == username && a.Password == password {
			orgs := []map[string]string{}
			for _, org := range a.Orgs {
				orgs = append(orgs, map[string]string{"key": org, "displayName": org})
			}
			b, _ := json.Marshal(orgs)
			return string(b), nil
		}
	}
	return "", ErrBadCredentials().dbusError()
}

func (s *Server) register(org string) (string, *dbus.Error) {
	consumer, _, err := s.writeConsumer(org)
	if err != nil {
		return "", (&Error{"Exception", "error", err.Error()}).dbusError()
	}
	s.emitConsumerChanged()
	return consumer, nil
}

func (s *Server) removeConsumer() {
	dir := s.Dir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		os.Remove(filepath.Join(dir, f))
	}
}

// --- com.redhat.RHSM1.Unregister ---

type unregisterObj struct{ s *Server }

var proxyOptions = []string{"proxy_hostname", "proxy_port", "proxy_user", "proxy_password", "no_proxy"}

func (o *unregisterObj) Unregister(options map[string]dbus.Variant, locale string, msg dbus.Message) *dbus.Error {
	s := o.s
	if err := s.begin(rootPath+"/Unregister", BusName+".Unregister.Unregister", msg, false); err != nil {
		return err
	}
	s.wait()
	if bad := unknownKeys(options, proxyOptions); len(bad) > 0 {
		return (&Error{"Exception", "error", fmt.Sprintf("Error: %s is not a valid proxy option", bad[0])}).dbusError()
	}
	if s.UUID() == "" {
		return ErrNotRegistered().dbusError()
	}
	s.removeConsumer()
	s.emitConsumerChanged()
	return nil
}

// --- com.redhat.RHSM1.Config ---

type configObj struct{ s *Server }

func (o *configObj) Set(key string, value dbus.Variant, locale string, msg dbus.Message) *dbus.Error {
	if err := o.s.begin(rootPath+"/Config", BusName+".Config.Set", msg, false); err != nil {
		return err
	}
	if e := o.s.setConfig(key, variantString(value)); e != nil {
		return e.dbusError()
	}
	o.s.conn.Emit(rootPath+"/Config", BusName+".Config.ConfigChanged")
	return nil
}

func (o *configObj) SetAll(values map[string]dbus.Variant, locale string, msg dbus.Message) *dbus.Error {
	if err := o.s.begin(rootPath+"/Config", BusName+".Config.SetAll", msg, false); err != nil {
		return err
	}
	for k, v := range values {
		if e := o.s.setConfig(k, variantString(v)); e != nil {
			return e.dbusError()
		}
	}
	o.s.conn.Emit(rootPath+"/Config", BusName+".Config.ConfigChanged")
	return nil
}

func (s *Server) setConfig(key, value string) *Error {
	sec, k, ok := strings.Cut(key, ".")
	if !ok {
		return &Error{"DBusException", "error", "Setting an entire section is not supported.  Use 'section.property' format."}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.config[sec] == nil {
		s.config[sec] = map[string]string{}
	}
	s.config[sec][k] = value
	return nil
}

func (o *configObj) Get(key, locale string, msg dbus.Message) (dbus.Variant, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/Config", BusName+".Config.Get", msg, false); err != nil {
		return dbus.Variant{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, k, ok := strings.Cut(key, ".")
	if !ok {
		section, found := s.config[sec]
		if !found {
			return dbus.Variant{}, (&Error{"DBusException", "error", fmt.Sprintf("Section %s does not exist", sec)}).dbusError()
		}
		m := map[string]dbus.Variant{}
		for kk, v := range section {
			m[kk] = dbus.MakeVariant(v)
		}
		return dbus.MakeVariant(m), nil
	}
	v, found := s.config[sec][k]
	if !found {
		return dbus.Variant{}, (&Error{"DBusException", "error", fmt.Sprintf("Key %s does not exist", key)}).dbusError()
	}
	return dbus.MakeVariant(v), nil
}

func (o *configObj) GetAll(locale string, msg dbus.Message) (map[string]dbus.Variant, *dbus.Error) {
	s := o.s
	if err := s.begin(rootPath+"/Config", BusName+".Config.GetAll", msg, false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]dbus.Variant{}
	for sec, kv := range s.config {
		out[sec] = dbus.MakeVariant(maps(kv))
	}
	return out, nil
}

func maps(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// --- com.redhat.RHSM1.Facts (bus name com.redhat.RHSM1.Facts) ---

type factsObj struct{ s *Server }

// GetFacts has no locale argument, unlike every other method.
func (o *factsObj) GetFacts(msg dbus.Message) (map[string]string, *dbus.Error) {
	if err := o.s.begin(rootPath+"/Facts", BusName+".Facts.GetFacts", msg, false); err != nil {
		return nil, err
	}
	if o.s.Facts != nil {
		return maps(o.s.Facts), nil
	}
	host, _ := os.Hostname()
	return map[string]string{
		"distribution.name":    "Fake Linux",
		"distribution.version": "1.0",
		"network.fqdn":         host,
		"network.hostname":     host,
		"uname.machine":        "x86_64",
		"virt.is_guest":        "False",
		"cpu.cpu_socket(s)":    "1",
	}, nil
}

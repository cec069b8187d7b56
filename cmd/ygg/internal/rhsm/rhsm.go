// Package rhsm is ygg's client of subscription-manager's D-Bus service
// (com.redhat.RHSM1 on the system bus): whether the host is registered,
// registering over the private peer-to-peer socket that
// RegisterServer.Start opens (credentials never cross the shared bus),
// unregistering, and setting rhsm.conf keys. It sends what ygg 0.1.x and rhc
// send, including a{ss} option dictionaries where the service declares a{sv}
// (docs/rhsm-dbus.md §3, §4).
package rhsm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"
)

const (
	busName   = "com.redhat.RHSM1"
	rootPath  = "/com/redhat/RHSM1"
	errorName = "com.redhat.RHSM1.Error"
)

// Error is an error reported by the RHSM service itself: a D-Bus error named
// com.redhat.RHSM1.Error whose body is JSON. Error() is the service's
// message, verbatim.
type Error struct {
	Exception string `json:"exception"`
	Severity  string `json:"severity"`
	Message   string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// decode turns a com.redhat.RHSM1.Error into an *Error and leaves any other
// error as it is.
func decode(err error) error {
	var de dbus.Error
	var dep *dbus.Error
	switch {
	case errors.As(err, &dep):
		de = *dep
	case errors.As(err, &de):
	default:
		return err
	}
	if de.Name != errorName || len(de.Body) == 0 {
		return err
	}
	body, _ := de.Body[0].(string)
	var e Error
	if jerr := json.Unmarshal([]byte(body), &e); jerr != nil || e.Message == "" {
		return fmt.Errorf("%s: undecodable error body %q", errorName, body)
	}
	return &e
}

// Client calls RHSM over conn, a connection to the system bus.
type Client struct {
	conn *dbus.Conn
	// Locale is the last argument of every call; "" is the service's
	// default language.
	Locale string
}

// New returns a client on conn.
func New(conn *dbus.Conn) *Client { return &Client{conn: conn} }

func (c *Client) obj(leaf string) dbus.BusObject {
	return c.conn.Object(busName, dbus.ObjectPath(rootPath+"/"+leaf))
}

// UUID returns the consumer UUID, "" when the host is not registered.
func (c *Client) UUID(ctx context.Context) (string, error) {
	var uuid string
	if err := c.obj("Consumer").CallWithContext(ctx, busName+".Consumer.GetUuid", 0, c.Locale).Store(&uuid); err != nil {
		return "", fmt.Errorf("get consumer uuid: %w", decode(err))
	}
	return uuid, nil
}

// Register registers with a username and password; org may be "" when the
// user belongs to one organization. It returns the new consumer UUID.
func (c *Client) Register(ctx context.Context, org, username, password string) (string, error) {
	return c.private(ctx, "Register", org, username, password, map[string]string{}, map[string]string{}, c.Locale)
}

// RegisterWithActivationKeys registers with activation keys of org and
// returns the new consumer UUID.
func (c *Client) RegisterWithActivationKeys(ctx context.Context, org string, keys []string) (string, error) {
	return c.private(ctx, "RegisterWithActivationKeys", org, keys, map[string]string{}, map[string]string{}, c.Locale)
}

// private opens the private registration socket, calls method on it, closes
// it, and tells the service it may stop the socket server.
func (c *Client) private(ctx context.Context, method string, args ...any) (string, error) {
	var addr string
	if err := c.obj("RegisterServer").CallWithContext(ctx, busName+".RegisterServer.Start", 0, c.Locale).Store(&addr); err != nil {
		return "", fmt.Errorf("start registration server: %w", decode(err))
	}
	// Like every client: Stop without waiting for a reply, after closing
	// the private connection.
	defer c.obj("RegisterServer").Go(busName+".RegisterServer.Stop", dbus.FlagNoReplyExpected, nil, c.Locale)

	p, err := dbus.Dial(addr)
	if err != nil {
		return "", fmt.Errorf("connect registration server: %w", err)
	}
	defer p.Close()
	if err := p.Auth(nil); err != nil { // no Hello: there is no bus
		return "", fmt.Errorf("connect registration server: %w", err)
	}
	var consumer string
	call := p.Object(busName, rootPath+"/Register").CallWithContext(ctx, busName+".Register."+method, 0, args...)
	if err := call.Store(&consumer); err != nil {
		return "", decode(err)
	}
	var cj struct {
		UUID string `json:"uuid"`
	}
	if err := json.Unmarshal([]byte(consumer), &cj); err != nil {
		return "", fmt.Errorf("read registered consumer: %w", err)
	}
	return cj.UUID, nil
}

// Unregister unregisters the host; the service deletes the identity.
func (c *Client) Unregister(ctx context.Context) error {
	if err := c.obj("Unregister").CallWithContext(ctx, busName+".Unregister.Unregister", 0, map[string]string{}, c.Locale).Err; err != nil {
		return decode(err)
	}
	return nil
}

// SetConfig sets one "section.key" of rhsm.conf, sent as a plain string as
// ygg 0.1.x does.
func (c *Client) SetConfig(ctx context.Context, key, value string) error {
	if err := c.obj("Config").CallWithContext(ctx, busName+".Config.Set", 0, key, value, c.Locale).Err; err != nil {
		return fmt.Errorf("set rhsm config %s: %w", key, decode(err))
	}
	return nil
}

package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// NetMode is the state of a Proxy's network.
type NetMode string

// The modes of a Proxy.
const (
	NetHealthy   NetMode = "healthy"   // bytes pass (after the configured delay)
	NetCut       NetMode = "cut"       // connections closed, new ones reset at once
	NetBlackhole NetMode = "blackhole" // connections stay open but no byte passes
)

// NetState is a Proxy's mode and added latency.
type NetState struct {
	Mode  NetMode       `json:"mode"`
	Delay time.Duration `json:"delay"`
}

// Proxy is a TCP proxy in front of the broker that can break the network
// the way real networks break: Cut closes every connection and resets new
// ones, Blackhole keeps connections open but passes no byte (TCP flow
// control holds them, as a dropped route would, until Heal), Delay adds
// latency to every byte in both directions. The zero value needs only
// Target.
type Proxy struct {
	Target string       // address to forward to
	Listen string       // address to listen on; "" means 127.0.0.1:0
	Logger *slog.Logger // nil means slog.Default()

	mu      sync.Mutex
	ln      net.Listener
	state   NetState
	changed chan struct{} // closed and replaced when state changes
	conns   map[*proxyConn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Start listens and serves in the background until Close.
func (p *Proxy) Start() error {
	addr := p.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	p.mu.Lock()
	p.ln = ln
	p.state = NetState{Mode: NetHealthy}
	p.changed = make(chan struct{})
	p.conns = map[*proxyConn]struct{}{}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	p.mu.Unlock()
	p.wg.Add(1)
	go p.serve()
	return nil
}

// Addr returns the address the proxy listens on.
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// Close stops listening, closes every connection and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed || p.ln == nil {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// State returns the current mode and delay.
func (p *Proxy) State() NetState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// Cut closes every connection and resets new ones until Heal.
func (p *Proxy) Cut() {
	p.set(func(s *NetState) { s.Mode = NetCut })
	p.mu.Lock()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
}

// Blackhole stops every byte, in both directions, until Heal.
func (p *Proxy) Blackhole() { p.set(func(s *NetState) { s.Mode = NetBlackhole }) }

// Delay holds every byte for d before passing it on; 0 removes the delay.
func (p *Proxy) Delay(d time.Duration) { p.set(func(s *NetState) { s.Delay = d }) }

// Heal restores the network: bytes pass again and the delay is removed.
// Connections closed by Cut stay closed; clients reconnect.
func (p *Proxy) Heal() { p.set(func(s *NetState) { *s = NetState{Mode: NetHealthy} }) }

func (p *Proxy) set(change func(*NetState)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	change(&p.state)
	close(p.changed)
	p.changed = make(chan struct{})
	if p.Logger != nil {
		p.Logger.Info("network "+string(p.state.Mode), "delay", p.state.Delay, "listen", p.ln.Addr().String(), "target", p.Target)
	}
}

func (p *Proxy) current() (NetState, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.changed
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.Logger.Error("proxy accept", "error", err)
			}
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			conn.Close()
			return
		}
		if p.state.Mode == NetCut {
			p.mu.Unlock()
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset, as a refused connection would be
			}
			conn.Close()
			continue
		}
		c := &proxyConn{client: conn, done: make(chan struct{})}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handle(c)
	}
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client, target net.Conn
	once           sync.Once
	done           chan struct{}
	mu             sync.Mutex
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.client.Close()
		if c.target != nil {
			c.target.Close()
		}
	})
}

func (p *Proxy) handle(c *proxyConn) {
	defer p.wg.Done()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	target, err := net.DialTimeout("tcp", p.Target, 10*time.Second)
	if err != nil {
		p.Logger.Warn("proxy dial target", "target", p.Target, "error", err)
		return
	}
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		target.Close()
		return
	default:
	}
	c.target = target
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(c, c.client, target) }()
	go func() { defer wg.Done(); p.pipe(c, target, c.client) }()
	wg.Wait()
}

type chunk struct {
	at   time.Time
	data []byte
}

// pipe copies src to dst through the proxy's state: a reader goroutine
// stamps each chunk with its arrival, the writer holds it while the network
// is black-holed and until its delay has passed. Either side ending ends
// the connection.
func (p *Proxy) pipe(c *proxyConn, src, dst net.Conn) {
	defer c.close()
	chunks := make(chan chunk, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{time.Now(), buf[:n]}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer c.close() // unblocks the reader when the writer stops first
	for ch := range chunks {
		if !p.hold(c, ch.at) {
			return
		}
		if _, err := dst.Write(ch.data); err != nil {
			return
		}
	}
}

// hold waits until a chunk that arrived at may pass; false when the
// connection ends first.
func (p *Proxy) hold(c *proxyConn, at time.Time) bool {
	for {
		st, changed := p.current()
		var timer *time.Timer
		var fire <-chan time.Time
		switch {
		case st.Mode == NetCut:
			return false
		case st.Mode == NetBlackhole:
		case time.Until(at.Add(st.Delay)) > 0:
			timer = time.NewTimer(time.Until(at.Add(st.Delay)))
			fire = timer.C
		default:
			return true
		}
		select {
		case <-c.done:
		case <-changed:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		select {
		case <-c.done:
			return false
		default:
		}
	}
}

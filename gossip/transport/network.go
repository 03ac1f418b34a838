package transport

import (
	"context"
	"net"
	"time"
)

// Network carries replication streams: TCP in production (TCPNetwork), an
// in-process network in tests (package fakenet).
type Network interface {
	// Listen listens for streams at addr ("host:port").
	Listen(addr string) (net.Listener, error)
	// Dial opens a stream to addr; ctx bounds the attempt.
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// TCPNetwork is the production Network.
type TCPNetwork struct {
	// KeepAlive is the TCP keep-alive period (0: Go's default of 15 s).
	KeepAlive time.Duration
}

// Listen implements Network.
func (t TCPNetwork) Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: t.KeepAlive}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Dial implements Network.
func (t TCPNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: t.KeepAlive}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true) // frames are flushed whole; no Nagle delay on acks
	}
	return c, nil
}

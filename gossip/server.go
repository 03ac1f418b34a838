package gossip

import (
	"fmt"

	"github.com/countmesh/countmesh/gossip/transport"
	"go.uber.org/zap"
)

// serveStream applies the batches a peer streams, acknowledging each once
// the replica has made it durable, and relays those marked for relay.
func (m *Mesh) serveStream(fc *transport.Conn, h transport.Hello) error {
	for {
		var msg transport.BatchMsg
		// A stream is idle while its sender has nothing to send; one idle
		// for long is closed (the sender reconnects when it has data), so a
		// sender that vanished without a reset does not pin this goroutine.
		typ, body, err := fc.ReadFrame(transport.IdleTimeoutFactor * m.cfg.IOTimeout)
		if err != nil {
			return err
		}
		if typ != transport.FrameBatch {
			return fmt.Errorf("%w: frame type %d on a stream, want a batch", ErrProtocol, typ)
		}
		if err := transport.Decode(body, &msg); err != nil {
			return err
		}
		b, err := transport.FromWire(msg.Batch)
		if err != nil {
			return err
		}
		if !b.Empty() {
			if err := m.replica.Apply(b); err != nil {
				m.stats.ApplyErrors.Add(1)
				m.log.Warn("replication: replica refused a batch; the sender will retry", zap.String("peer", h.Name), zap.Error(err))
				return err
			}
		}
		m.stats.DeltasReceived.Add(uint64(len(b.Deltas)))
		if msg.Relay {
			m.forward(b, h.Name)
		}
		if err := fc.WriteFrame(transport.FrameAck, &transport.AckMsg{ID: msg.ID}); err != nil {
			return err
		}
		if err := fc.Flush(); err != nil {
			return err
		}
	}
}

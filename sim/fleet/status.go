package fleet

import (
	"context"
	"encoding/json"

	"github.com/ygglab/yggdrasil/yggdrasil"
	"github.com/ygglab/yggdrasil/yggdrasil/mqtt"
)

// statusTransport is a host's transport, watched: once the broker has
// acknowledged a connection status, the host counts as online or not.
// The broker records a publish before it acknowledges it, so a host
// counted online is online for the cloud side as well.
type statusTransport struct {
	*mqtt.Transport
	topic  string        // the host's control/out
	status func(up bool) // told each acknowledged status
}

func (t *statusTransport) Publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	err := t.Transport.Publish(ctx, topic, payload, retained)
	if err == nil && topic == t.topic {
		var st struct {
			Type    string `json:"type"`
			Content struct {
				State string `json:"state"`
			} `json:"content"`
		}
		if json.Unmarshal(payload, &st) == nil && st.Type == yggdrasil.TypeConnectionStatus {
			t.status(st.Content.State == yggdrasil.StateOnline)
		}
	}
	return err
}

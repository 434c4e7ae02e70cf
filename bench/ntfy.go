package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// APIs the tool can drive. meshbox's native API is the default (the
// no-storage floor in bench/floor speaks it too); ntfy is the nearest
// peer, driven through its own publish and subscribe endpoints so the two
// can be put side by side (-compare).
const (
	apiMeshbox = "meshbox"
	apiNtfy    = "ntfy"
)

// ntfy has no groups, nodes or cursors: a group is a topic, joining is
// free, and the tool numbers what it publishes itself, in the message
// title, so readers can check loss, duplicates and order the same way.
// The numbers are taken when a publish is sent, and two publishes in flight
// at once may be stored by ntfy in the other order, so for ntfy readers
// check loss and duplicates exactly but not order (tracker.unordered).

// ntfyMessage is the part of an ntfy message the tool looks at.
type ntfyMessage struct {
	Event   string `json:"event"`
	Title   string `json:"title"`
	Message string `json:"message"`
}

// ntfyTopic returns a fresh topic for the run's group i.
func ntfyTopic(name string) member { return member{Group: name} }

// ntfyPublish posts each event to the topic, one request each (ntfy takes
// one message per request), and returns the numbers it gave them.
func (c *client) ntfyPublish(ctx context.Context, m member, events []event) ([]int64, error) {
	cursors := make([]int64, len(events))
	for i, ev := range events {
		seq := c.seq.Add(1)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/"+url.PathEscape(m.Group), bytes.NewReader([]byte(ev.Payload)))
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Title", strconv.FormatInt(seq, 10))
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("publish: read answer: %w", err)
		}
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("publish: %w", apiError(resp, b))
		}
		cursors[i] = seq
	}
	return cursors, nil
}

// ntfyItem turns an ntfy message into a stream item; ok is false for
// open and keepalive events.
func ntfyItem(b []byte, it *item) (ok bool, err error) {
	var m ntfyMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return false, fmt.Errorf("ntfy message: %w", err)
	}
	if m.Event != "message" {
		return false, nil
	}
	n, err := strconv.ParseInt(m.Title, 10, 64)
	if err != nil {
		return false, fmt.Errorf("ntfy message title %q: not a bench sequence number", m.Title)
	}
	*it = item{Cursor: n, Kind: "event", Payload: m.Message}
	return true, nil
}

// ntfyStreamURL is the subscribe URL of a topic for transport (ws or sse).
func (c *client) ntfyStreamURL(m member, transport string) string {
	return c.base + "/" + url.PathEscape(m.Group) + "/" + transport
}

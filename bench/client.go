package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// client speaks meshbox's native API (DESIGN.md §3) over one shared,
// generously pooled HTTP transport, so connections are reused and the
// tool measures the server rather than TCP handshakes.
type client struct {
	base string // scheme://host[:port] without a trailing slash
	http *http.Client
	api  string       // apiMeshbox or apiNtfy
	seq  atomic.Int64 // ntfy: the last number given to a published message
}

// newClient builds a client whose pool can keep conns connections to the
// server alive at once (every long-poll or SSE reader holds one).
func newClient(base, api string, conns int) (*client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server url %q: want http://host:port", base)
	}
	tr := &http.Transport{
		Proxy:               nil, // a classroom box is local; never detour through a proxy
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     16 << 10,
		ReadBufferSize:      16 << 10,
	}
	return &client{
		base: strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"),
		http: &http.Client{Transport: tr},
		api:  api,
	}, nil
}

// close drops the pooled connections.
func (c *client) close() { c.http.CloseIdleConnections() }

// member is a node's credentials in one group, as returned by create/join.
type member struct {
	Group  string
	Node   string
	Token  string
	Cursor int64
}

// joinResponse is the body of create-group and join answers.
type joinResponse struct {
	Group struct {
		ID string `json:"id"`
	} `json:"group"`
	Node struct {
		ID string `json:"id"`
	} `json:"node"`
	Token  string `json:"token"`
	Cursor int64  `json:"cursor"`
}

// APIError is an error answer from the server.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// Error formats the status and the server's code and message.
func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// createGroup creates a group in domain and returns the host's credentials.
func (c *client) createGroup(ctx context.Context, domain, name string) (member, error) {
	if c.api == apiNtfy {
		return ntfyTopic(name), nil
	}
	body := map[string]any{"name": name, "nodeName": name + "-host"}
	if domain != "" {
		body["domain"] = domain
	}
	var r joinResponse
	if err := c.do(ctx, http.MethodPost, "/api/v1/groups", "", body, &r); err != nil {
		return member{}, fmt.Errorf("create group: %w", err)
	}
	return member{Group: r.Group.ID, Node: r.Node.ID, Token: r.Token, Cursor: r.Cursor}, nil
}

// join adds a node named name to group gid.
func (c *client) join(ctx context.Context, gid, name string) (member, error) {
	if c.api == apiNtfy {
		return ntfyTopic(gid), nil
	}
	var r joinResponse
	path := "/api/v1/groups/" + url.PathEscape(gid) + "/nodes"
	if err := c.do(ctx, http.MethodPost, path, "", map[string]any{"name": name}, &r); err != nil {
		return member{}, fmt.Errorf("join group: %w", err)
	}
	return member{Group: r.Group.ID, Node: r.Node.ID, Token: r.Token, Cursor: r.Cursor}, nil
}

// event is one event to publish.
type event struct {
	Name    string `json:"name"`
	Payload string `json:"payload"`
}

// publish posts events and returns their cursors once the server has
// committed them.
func (c *client) publish(ctx context.Context, m member, events []event) ([]int64, error) {
	if c.api == apiNtfy {
		return c.ntfyPublish(ctx, m, events)
	}
	var r struct {
		Cursors []int64 `json:"cursors"`
	}
	path := "/api/v1/groups/" + url.PathEscape(m.Group) + "/events"
	if err := c.do(ctx, http.MethodPost, path, m.Token, map[string]any{"events": events}, &r); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if len(r.Cursors) != len(events) {
		return nil, fmt.Errorf("publish: %d cursors for %d events", len(r.Cursors), len(events))
	}
	return r.Cursors, nil
}

// putData sets the node's data keys and returns the item's cursor.
func (c *client) putData(ctx context.Context, m member, data map[string]string) (int64, error) {
	var r struct {
		Cursor int64 `json:"cursor"`
	}
	path := "/api/v1/groups/" + url.PathEscape(m.Group) + "/data"
	if err := c.do(ctx, http.MethodPut, path, m.Token, map[string]any{"data": data}, &r); err != nil {
		return 0, fmt.Errorf("set data: %w", err)
	}
	return r.Cursor, nil
}

// dissolve ends the group (host token).
func (c *client) dissolve(ctx context.Context, m member) error {
	if c.api == apiNtfy {
		return nil // topics are forgotten by themselves
	}
	path := "/api/v1/groups/" + url.PathEscape(m.Group)
	if err := c.do(ctx, http.MethodDelete, path, m.Token, nil, nil); err != nil {
		return fmt.Errorf("dissolve group: %w", err)
	}
	return nil
}

// do sends one JSON request and decodes a 2xx answer into out (if not nil).
func (c *client) do(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp, b)
	}
	if out == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// apiError turns a non-2xx answer into an *APIError.
func apiError(resp *http.Response, body []byte) error {
	e := &APIError{Status: resp.StatusCode}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
	} else {
		e.Code = http.StatusText(resp.StatusCode)
		e.Message = strings.TrimSpace(string(body))
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// retryAfter returns how long to back off after err: the server's hint for
// a 429/503, a short pause for other failures.
func retryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return ae.RetryAfter
	}
	return 100 * time.Millisecond
}

// errorCode condenses err to a short label for the report's error tally.
func errorCode(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return strconv.Itoa(ae.Status) + " " + ae.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "network"
	}
	return "other"
}

// download saves the body of GET path to file.
func (c *client) download(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("download %s: %w", path, apiError(resp, b))
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("download %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	return nil
}

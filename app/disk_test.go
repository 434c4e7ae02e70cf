package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
	"meshbox/mountns"
)

// diskBox is a real meshbox on a small filesystem, driven over its HTTP API.
type diskBox struct {
	t      *testing.T
	fsSize int64 // the filesystem's size
	a      *app.App
	base   string
	logs   *lockedBuffer
}

func startDiskBox(t *testing.T, dir string, edit func(*config.Config)) *diskBox {
	t.Helper()
	cfg := app.TestConfig(dir)
	// The rates per node would hold the publishers back (and refuse the first write after the
	// fill); these tests are about the disk (TestFloodCostsTheFloodersGroup sets its own).
	cfg.NodeByteRate, cfg.PublishRate = 0, 0
	if edit != nil {
		edit(&cfg)
	}
	logs := &lockedBuffer{}
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), "test")
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	b := &diskBox{t: t, a: a, base: a.URL(), logs: logs}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		b.fsSize = int64(st.Blocks) * st.Bsize
	}
	t.Cleanup(func() { b.stop() })
	return b
}

func (b *diskBox) stop() {
	if b.a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.a.Shutdown(ctx); err != nil {
		b.t.Errorf("shutdown: %v", err)
	}
	b.a = nil
	b.logs.mu.Lock()
	b.t.Logf("server log:\n%s", b.logs.b.String())
	b.logs.mu.Unlock()
}

type member struct {
	group, token string
	// client, when set, sends the member's requests (from an address of its own).
	client *http.Client
}

func (b *diskBox) create(name string) member {
	b.t.Helper()
	resp, err := http.Post(b.base+"/api/v1/groups", "application/json", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var j struct {
		Group struct{ ID string }
		Token string
	}
	json.NewDecoder(resp.Body).Decode(&j)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		b.t.Fatalf("create group: %d", resp.StatusCode)
	}
	return member{group: j.Group.ID, token: j.Token}
}

// publish sends events and returns the status, the error code and the cursors.
func (b *diskBox) publish(m member, body string) (int, string, []int64) {
	req, _ := http.NewRequest(http.MethodPost, b.base+"/api/v1/groups/"+m.group+"/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+m.token)
	c := m.client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Errorf("publish: %v", err)
		return 0, "", nil
	}
	defer resp.Body.Close()
	var out struct {
		Cursors []int64
		Error   struct{ Code string }
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Error.Code, out.Cursors
}

func events(n, size int) string {
	payload := strings.Repeat("p", size)
	var sb strings.Builder
	sb.WriteString(`{"events":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"name":"e","payload":%q}`, payload)
	}
	sb.WriteString(`]}`)
	return sb.String()
}

// history publishes rounds publishes of 8 events of 16 KiB to each group, every one
// acknowledged, and returns their cursors by group.
func (b *diskBox) history(groups []member, rounds int) map[string][]int64 {
	b.t.Helper()
	acked := map[string][]int64{}
	for range rounds {
		for _, m := range groups {
			status, code, cursors := b.publish(m, events(8, 16<<10))
			if status != http.StatusOK {
				b.t.Fatalf("publish: %d %s", status, code)
			}
			acked[m.group] = append(acked[m.group], cursors...)
		}
	}
	return acked
}

// fill publishes from several groups at once until every publisher has been refused with 507,
// or (a budget whose purge keeps up never refuses) until they sent three times the
// filesystem's size in all; it returns the acknowledged cursors per group.
func (b *diskBox) fill(groups []member, body string) map[string][]int64 {
	b.t.Helper()
	acked := map[string][]int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var refused atomic.Int64
	each := 3 * b.fsSize / int64(len(groups)*len(body))
	for _, m := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				status, code, cursors := b.publish(m, body)
				switch {
				case status == http.StatusOK:
					mu.Lock()
					acked[m.group] = append(acked[m.group], cursors...)
					mu.Unlock()
				case status == http.StatusInsufficientStorage && code == "storage_full":
					refused.Add(1)
					return
				case status == http.StatusTooManyRequests:
					time.Sleep(10 * time.Millisecond) // the publish rate: wait and go on
				default:
					b.t.Errorf("publish: %d %s", status, code)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.t.Logf("%d of %d publishers refused with 507 after three times the filesystem's size was sent", refused.Load(), len(groups))
	return acked
}

// readyWithin polls /readyz until it answers 200; the deadline is an outer bound for a box
// that heals itself, not a timing assertion.
func (b *diskBox) readyWithin(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(b.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// readFrom reads one page of the group after since and reports the items' count and whether the
// reader was told items were purged.
func (b *diskBox) readFrom(m member, since int64) (int, bool) {
	b.t.Helper()
	resp, err := http.Get(b.base + fmt.Sprintf("/api/v1/groups/%s/events?since=%d&limit=10&token=%s", m.group, since, m.token))
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Items     []json.RawMessage
		Truncated bool
	}
	json.NewDecoder(resp.Body).Decode(&page)
	return len(page.Items), page.Truncated
}

// checkKept reads each group from its start and checks that no acknowledged item was lost:
// what is readable is every acknowledged item from the oldest one kept (older ones were
// purged, and the reader was told: truncated), in order, and nothing else.
func (b *diskBox) checkKept(groups []member, acked map[string][]int64) {
	b.t.Helper()
	for _, m := range groups {
		var got []int64
		since, truncated := int64(0), false
		for {
			resp, err := http.Get(b.base + fmt.Sprintf("/api/v1/groups/%s/events?since=%d&limit=500&token=%s", m.group, since, m.token))
			if err != nil {
				b.t.Fatal(err)
			}
			var page struct {
				Items []struct {
					Cursor int64
					Kind   string
				}
				Next      int64
				Truncated bool
			}
			json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.t.Fatalf("read group %s: %d", m.group, resp.StatusCode)
			}
			truncated = truncated || page.Truncated
			for _, it := range page.Items {
				if it.Kind == "event" {
					got = append(got, it.Cursor)
				}
			}
			if page.Next <= since || len(page.Items) == 0 {
				break
			}
			since = page.Next
		}
		want := acked[m.group]
		if len(got) > 0 {
			var from []int64
			for _, c := range want {
				if c >= got[0] {
					from = append(from, c)
				}
			}
			want = from
		} else if len(want) > 0 && !truncated {
			b.t.Errorf("group %s: none of its %d acknowledged items readable, and the reader was not told it was truncated", m.group, len(want))
		}
		if len(got) < len(acked[m.group]) && !truncated {
			b.t.Errorf("group %s: %d of %d acknowledged items readable without truncation", m.group, len(got), len(acked[m.group]))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			b.t.Errorf("group %s: readable %d items %v…, want the %d acknowledged from the oldest kept", m.group, len(got), head(got), len(want))
		}
	}
}

func head(c []int64) []int64 { return c[:min(len(c), 8)] }

// healsWithin waits (with an outer bound) for /readyz to answer 200 again with nobody doing
// anything, then checks that a write is acknowledged and nothing acknowledged was lost.
func (b *diskBox) heals(groups []member, acked map[string][]int64) {
	b.t.Helper()
	if !b.readyWithin(60 * time.Second) {
		b.t.Fatalf("/readyz not back to 200 within 60 s of the disk filling, with nothing freed")
	}
	for _, m := range groups {
		status, code, cursors := b.publish(m, events(1, 100))
		if status != http.StatusOK {
			b.t.Fatalf("publish after recovery: %d %s", status, code)
		}
		acked[m.group] = append(acked[m.group], cursors...)
	}
	b.checkKept(groups, acked)
}

// TestFullDiskHeals fills real small filesystems through the HTTP API, three groups
// publishing at once until each is refused (507), and then touches nothing: meshbox makes room
// from its own data and accepts writes again, /readyz is back to 200, and no acknowledged item
// was lost. (a) 8 MiB and (b) 40 MiB with the default budget, which the free space lowers to
// half the filesystem: there the purge, woken past the high-water mark, keeps up and the
// publishers are rarely refused at all; and both with no budget, so the disk itself fills.
func TestFullDiskHeals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int64
		budget int64
	}{{"8MiB", 8 << 20, -1}, {"8MiB-no-budget", 8 << 20, 0}, {"40MiB", 40 << 20, -1}, {"40MiB-no-budget", 40 << 20, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, ok := mountns.Run(t, tc.size)
			if !ok {
				return
			}
			b := startDiskBox(t, dir, func(c *config.Config) {
				if tc.budget >= 0 {
					c.MaxDBSize = tc.budget
				}
			})
			groups := []member{b.create("a"), b.create("b"), b.create("c")}
			acked := b.fill(groups, events(8, 16<<10))
			b.heals(groups, acked)
		})
	}
}

// readyz returns /readyz's status and storage state.
func (b *diskBox) readyz() (int, string) {
	resp, err := http.Get(b.base + "/readyz")
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var j struct {
		Storage struct{ State string }
	}
	json.NewDecoder(resp.Body).Decode(&j)
	return resp.StatusCode, j.Storage.State
}

func (b *diskBox) metrics() string {
	resp, err := http.Get(b.base + "/metrics")
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// fillWithFile writes a file until the filesystem has no room left: another program filling
// the disk meshbox is on.
func fillWithFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	// The last pages a write could not take whole.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
}

// TestFullDiskFilledByAnotherProgram: (c) another program fills the disk, then meshbox's
// publishers are refused: meshbox heals from its own data with the other file still there,
// and once that file is deleted it takes its reserve back and is "ok" again.
func TestFullDiskFilledByAnotherProgram(t *testing.T) {
	dir, ok := mountns.Run(t, 40<<20)
	if !ok {
		return
	}
	b := startDiskBox(t, dir, nil)
	groups := []member{b.create("a"), b.create("b")}
	// Some history first, so meshbox has data of its own to purge.
	acked := b.history(groups, 20)
	filler := filepath.Join(dir, "other-program.bin")
	fillWithFile(t, filler)
	more := b.fill(groups, events(8, 16<<10))
	for g, c := range more {
		acked[g] = append(acked[g], c...)
	}
	b.heals(groups, acked)
	// The other file is still there: meshbox says it is recovering (no reserve, its file may
	// not grow), on /readyz and in its metrics, and since when.
	if status, state := b.readyz(); status != http.StatusOK || state != "recovering" {
		t.Errorf("readyz with the other file still there: %d %q, want 200 recovering", status, state)
	}
	if m := b.metrics(); !strings.Contains(m, `meshbox_storage_state{state="recovering"} 1`) || !strings.Contains(m, `meshbox_storage_state{state="full"} 0`) || !strings.Contains(m, "meshbox_storage_state_since_seconds ") {
		t.Errorf("metrics while recovering:\n%s", grepLines(m, "meshbox_storage"))
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// With room again the reserve comes back and the file may grow: the state ends "ok". (The
	// purge pass, every 2 s, is what moves it; 60 s is an outer bound.)
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, state := b.readyz()
		if status == http.StatusOK && state == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage state %q (readyz %d) 60 s after the other file was deleted, want ok", state, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "meshbox.db-reserve")); err != nil {
		t.Errorf("reserve not taken back once the disk had room: %v", err)
	}
	b.heals(groups, acked)
}

// TestFullDiskRestart: (d) meshbox is restarted on a full disk and heals by itself, with
// nothing freed: once after its own publishers filled the disk (no budget, so the disk itself
// is the limit), once after another program filled it while meshbox was stopped.
func TestFullDiskRestart(t *testing.T) {
	noBudget := func(c *config.Config) { c.MaxDBSize = 0 }
	t.Run("filled-by-meshbox", func(t *testing.T) {
		dir, ok := mountns.Run(t, 40<<20)
		if !ok {
			return
		}
		b := startDiskBox(t, dir, noBudget)
		groups := []member{b.create("a"), b.create("b")}
		acked := b.fill(groups, events(8, 16<<10))
		b.stop()
		b2 := startDiskBox(t, dir, noBudget)
		b2.heals(groups, acked)
	})
	t.Run("filled-while-stopped", func(t *testing.T) {
		dir, ok := mountns.Run(t, 40<<20)
		if !ok {
			return
		}
		b := startDiskBox(t, dir, nil)
		groups := []member{b.create("a"), b.create("b")}
		acked := b.history(groups, 40)
		b.stop()
		fillWithFile(t, filepath.Join(dir, "other-program.bin"))
		b2 := startDiskBox(t, dir, nil)
		b2.heals(groups, acked)
		// Keep writing past what the restart freed: the purge keeps making room.
		more := b2.fill(groups, events(8, 16<<10))
		for g, c := range more {
			acked[g] = append(acked[g], c...)
		}
		b2.heals(groups, acked)
	})
}

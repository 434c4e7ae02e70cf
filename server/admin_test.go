package server_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
	"meshbox/testclock"
)

// adminCheckFrom asks /api/v1/admin/check with tok from hc; it returns the status and the
// Retry-After in seconds (0 when absent).
func adminCheckFrom(t *testing.T, hc *http.Client, base, tok string) (int, int) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/admin/check", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, ra
}

// TestAdminGuessesBackOff: a pupil guessing the teacher's password from 127.0.0.2 gets five
// free tries, then waits after each wrong guess, twice as long each time (up to a minute); while it
// waits even the right password is refused alike (the answers tell it nothing). The teacher,
// from 127.0.0.1, is never held up; the guesser's own right password works once its wait is
// over. The same back-off covers the admin actions (a wrong token on DELETE) and the
// dashboard's details (the overview with a token). The clock is the test's: no waiting.
func TestAdminGuessesBackOff(t *testing.T) {
	t.Parallel()
	const teacher = "teacher-password-2026"
	clock := testclock.New()
	a := app.StartTestWith(t, func(cfg *config.Config) {
		cfg.AdminToken = teacher
		cfg.IPRate = 0
	}, app.Options{Now: clock.Now})
	pupil := httpFrom("127.0.0.2")
	teacherHC := httpFrom("127.0.0.1")

	for i := range 5 {
		if st, _ := adminCheckFrom(t, pupil, a.URL(), "guess-"+strconv.Itoa(i)); st != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401 (a free try)", i, st)
		}
	}
	// Each wrong guess past the free tries starts a wait twice the last.
	wantWaits := []int{1, 2, 4, 8, 16, 32, 60, 60}
	for i, want := range wantWaits {
		st, ra := adminCheckFrom(t, pupil, a.URL(), "guess-more-"+strconv.Itoa(i))
		if st != http.StatusTooManyRequests || ra != want {
			t.Fatalf("guess during wait %d: %d Retry-After %d, want 429 and %d", i, st, ra, want)
		}
		// While it waits, the right password from the same address is refused alike.
		if st, _ := adminCheckFrom(t, pupil, a.URL(), teacher); st != http.StatusTooManyRequests {
			t.Fatalf("the right password during the back-off: %d, want 429 like any other", st)
		}
		// The teacher, from another address, is not held up.
		if st, _ := adminCheckFrom(t, teacherHC, a.URL(), teacher); st != http.StatusNoContent {
			t.Fatalf("the teacher's check during the pupil's back-off: %d, want 204", st)
		}
		clock.Advance(time.Duration(want) * time.Second)
		if st, _ := adminCheckFrom(t, pupil, a.URL(), "late-guess-"+strconv.Itoa(i)); st != http.StatusUnauthorized {
			t.Fatalf("a wrong guess after wait %d: %d, want 401 (checked, and the next wait begins)", i, st)
		}
	}

	// Other admin entrances count and obey the same back-off: a wrong token on an admin
	// action from a third address, then the dashboard's details.
	c := &client{t: t, base: a.URL()}
	host := c.create("class")
	third := httpFrom("127.0.0.3")
	for i := range 6 {
		req, _ := http.NewRequest("DELETE", a.URL()+"/api/v1/groups/"+host.Group.ID, nil)
		req.Header.Set("Authorization", "Bearer wrong-"+strconv.Itoa(i))
		resp, err := third.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("wrong admin token %d on DELETE: %d, want %d", i, resp.StatusCode, want)
		}
	}
	if st, _ := adminCheckFrom(t, third, a.URL(), teacher); st != http.StatusTooManyRequests {
		t.Fatalf("admin check after wrong DELETE tokens: %d, want 429 (one back-off for every entrance)", st)
	}
	// The dashboard's overview with the right password shows no details while the address waits.
	if details := overviewDetails(t, third, a.URL(), teacher); details {
		t.Fatal("the dashboard showed its details to an address that is backing off")
	}
	if details := overviewDetails(t, teacherHC, a.URL(), teacher); !details {
		t.Fatal("the teacher's dashboard shows no details")
	}
	clock.Advance(time.Second)
	if st, _ := adminCheckFrom(t, third, a.URL(), teacher); st != http.StatusNoContent {
		t.Fatalf("the right password after the wait: %d, want 204", st)
	}
	// A success starts the address afresh: five free tries again.
	for i := range 5 {
		if st, _ := adminCheckFrom(t, third, a.URL(), "again-"+strconv.Itoa(i)); st != http.StatusUnauthorized {
			t.Fatalf("free try %d after a success: %d, want 401", i, st)
		}
	}
}

// overviewDetails reports whether the dashboard's overview, asked from hc with tok, shows the
// details only the admin sees.
func overviewDetails(t *testing.T, hc *http.Client, base, tok string) bool {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/dashboard/overview", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct {
		Details bool `json:"details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d %v", resp.StatusCode, err)
	}
	return o.Details
}

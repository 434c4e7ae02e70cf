package auth

import (
	"net/http"
	"sync"
	"time"
)

// The back-off of wrong admin tokens. A strong token (16 characters at least, see config) is
// beyond guessing anyway; the back-off is the second wall, for a token that leaked in part or a
// box started before the length rule. An address gets a few free mistakes (a teacher mistypes),
// then each further wrong token doubles its wait, up to a minute: 10,000 guesses take a week.
const (
	adminFreeTries   = 5
	adminFirstWait   = time.Second
	adminMaxWait     = time.Minute
	adminForgetAfter = 15 * time.Minute // an address that stopped guessing starts afresh
	adminMaxTracked  = 4096             // addresses remembered at once (memory bound)
)

// Admin is the one check of the teacher's (admin) token, shared by the native API and the
// dashboard, with a back-off for the client addresses that present wrong ones.
type Admin struct {
	secret *Secret
	now    func() time.Time

	mu    sync.Mutex
	fails map[string]*adminFails
}

// adminFails is one address's run of wrong tokens.
type adminFails struct {
	n     int
	last  time.Time
	until time.Time // no admin check from the address succeeds before this
}

// NewAdmin returns the check of the admin token; an empty token matches nothing. now is the
// back-off's clock (nil: time.Now).
func NewAdmin(token string, now func() time.Time) *Admin {
	if now == nil {
		now = time.Now
	}
	return &Admin{secret: NewSecret(token), now: now, fails: map[string]*adminFails{}}
}

// Set reports whether an admin token is configured.
func (a *Admin) Set() bool { return a != nil && a.secret.Set() }

// Match reports whether tok is the admin token, with no bookkeeping: for deciding which budget
// a request is charged to, not for granting anything.
func (a *Admin) Match(tok string) bool { return a != nil && a.secret.Match(tok) }

// Check is the admin check of a token presented by addr: ok when it is the admin token and the
// address is not backing off. A wrong token counts against the address; past the free tries it
// starts the address's wait. wait > 0 means the address is waiting: the token was not looked at,
// and wait is how long is left.
// While an address backs off every token is refused alike, the right one too, so its answers
// tell a guesser nothing.
func (a *Admin) Check(addr, tok string) (ok bool, wait time.Duration) {
	if a == nil || !a.secret.Set() || tok == "" {
		return false, 0 // no token is no attempt: the public dashboard asks without one
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fails[addr]
	if f != nil && now.Before(f.until) {
		return false, f.until.Sub(now)
	}
	if a.secret.Match(tok) {
		delete(a.fails, addr)
		return true, 0
	}
	if f == nil || now.Sub(f.last) > adminForgetAfter {
		a.makeRoom(now)
		f = &adminFails{}
		a.fails[addr] = f
	}
	f.n++
	f.last = now
	if over := f.n - adminFreeTries; over >= 0 {
		d := adminMaxWait
		if over < 7 { // 1s << 6 is past the cap already
			d = min(adminFirstWait<<over, adminMaxWait)
		}
		f.until = now.Add(d) // this answer still says "wrong"; the next ones wait
	}
	return false, 0
}

// CheckRequest is Check for r's bearer token (header or ?token=), from addr.
func (a *Admin) CheckRequest(r *http.Request, addr string) (ok bool, wait time.Duration) {
	return a.Check(addr, Token(r, nil))
}

// makeRoom keeps the table bounded: addresses that stopped guessing are forgotten first; if
// every entry is recent, those still within their free tries go (they cost a guesser little).
// Called with mu held.
func (a *Admin) makeRoom(now time.Time) {
	if len(a.fails) < adminMaxTracked {
		return
	}
	for k, f := range a.fails {
		if now.Sub(f.last) > adminForgetAfter {
			delete(a.fails, k)
		}
	}
	for k, f := range a.fails {
		if len(a.fails) < adminMaxTracked {
			return
		}
		if f.n < adminFreeTries {
			delete(a.fails, k)
		}
	}
}

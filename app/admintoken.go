package app

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"

	"meshbox/config"
	"meshbox/web"
	"meshbox/web/qr"
)

// AdminTokenFile is where meshbox keeps the admin token it created for a database: beside it,
// as SQLite keeps its -wal and -shm files. "" for a database that is not a file.
//
// Beside the database, because it belongs to that box's data: whoever can read the database
// reads every payload anyway, a backup or a Docker volume (/data) carries both, and a second
// database in the same folder gets its own token. Mode 0600, because the token opens the
// dashboard's details and the admin actions: only the account meshbox runs as may read it.
func AdminTokenFile(db string) string {
	if db == "" || db == ":memory:" || strings.HasPrefix(db, "file:") {
		return ""
	}
	return db + "-admin-token"
}

// adminToken returns the admin token to use: the configured one; else the one kept in the
// token file; else a new one, written there (created is true only then, so it is shown once).
func adminToken(configured, file string) (token string, created bool, err error) {
	if configured != "" {
		return configured, false, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		switch {
		case err == nil:
			if tok := strings.TrimSpace(string(b)); tok != "" {
				if n := utf8.RuneCountInString(tok); n < config.MinAdminTokenLen {
					return "", false, fmt.Errorf("the admin token in %s is too short (%d characters): a short password can be guessed from any pupil's computer; write one of at least %d characters there, or delete the file and meshbox creates a strong one", file, n, config.MinAdminTokenLen)
				}
				return tok, false, nil
			}
		case !errors.Is(err, fs.ErrNotExist):
			return "", false, fmt.Errorf("read admin token %s: %w", file, err)
		}
	}
	raw := make([]byte, 18) // 144 bits, 24 characters: short enough to type from a screen
	rand.Read(raw)
	token = base64.RawURLEncoding.EncodeToString(raw)
	if file == "" {
		return token, true, nil // a database that is not a file: a new token each start
	}
	// Written to a temporary file and renamed, so a crash never leaves half a token.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // WriteFile keeps an existing file's mode
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	return token, true, nil
}

// announceAdmin tells the teacher how to open the dashboard's details. A new token is shown
// once, as a one-click link (also as a QR code on the terminal, for a phone or a box without a
// screen), the way Jupyter does; the link carries it in the fragment (#token=), which browsers
// never send to a server, so it stays out of proxies' logs and Referer headers, and the page
// moves it into the tab's session storage and removes it from the address bar. Later starts
// only say where the token is kept.
func (a *App) announceAdmin(dash *web.Handler, file string, configured, created bool, term io.Writer) {
	switch {
	case configured:
		a.log.Info("the dashboard's details need the admin token set by " + a.cfg.Source("admin-token"))
		return
	case !created:
		a.log.Info("the dashboard's details need the admin token kept in "+file, "file", file)
		return
	}
	link := dash.TeacherLink(a.URL()) + "#token=" + a.cfg.AdminToken
	where := "it is kept in " + file
	if file == "" {
		where = "the database is not a file, so a new one is made at every start"
	}
	a.log.Info("admin token created: open this link to see the dashboard's details and act as the teacher; it is shown only now, "+where, "url", link)
	if term == nil {
		return
	}
	if code, err := qr.Encode(link); err == nil {
		fmt.Fprintf(term, "\nTeacher dashboard (scan, or open the link; keep it private):\n%s%s\n\n", code.Terminal(), link)
	}
}

// AdminToken is the admin token in use: configured, kept beside the database, or created.
func (a *App) AdminToken() string { return a.cfg.AdminToken }

package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"meshbox/config"
	"meshbox/web"
	"meshbox/web/qr"
)

// LinkPlaces are where `meshbox admin-link` looks when it is not told which database: the
// database the settings name, then the service's (meshbox service install keeps it in
// /var/lib/meshbox, readable by root only) with the unit that says its address.
type LinkPlaces struct {
	ServiceDB   string // the service's database, such as /var/lib/meshbox/meshbox.db
	ServiceUnit string // the unit file, such as /etc/systemd/system/meshbox.service
}

// PrintAdminLink prints the teacher's link (with the admin token in its fragment) and its QR
// code again, read from the token file beside the database: the link shown at first start
// scrolls away, and on a Raspberry Pi the file sits in the service's private state folder.
// When the database was not named (--db or MESHBOX_DB) and the default one has no token file,
// the service's is used.
func PrintAdminLink(cfg config.Config, places LinkPlaces, m *web.Machine, out io.Writer) error {
	tok, where := cfg.AdminToken, cfg.Source("admin-token")
	addr := cfg.Addr
	if tok == "" {
		file := AdminTokenFile(cfg.DB)
		if !cfg.Given("db") && places.ServiceDB != "" && !exists(file) && exists(filepath.Dir(places.ServiceDB)) {
			file = AdminTokenFile(places.ServiceDB)
			if a := unitAddr(places.ServiceUnit); a != "" && !cfg.Given("addr") {
				addr = a
			}
		}
		if file == "" {
			return fmt.Errorf("the database %s is not a file, so its admin token is not kept: a new one is shown at every start", cfg.DB)
		}
		b, err := os.ReadFile(file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("no admin token in %s yet: start meshbox with this database once and it creates one (or name the database with --db)", file)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("this user may not read %s (only the account meshbox runs as, and root, may): run it again with sudo", file)
		case err != nil:
			return fmt.Errorf("read admin token: %w", err)
		}
		tok, where = strings.TrimSpace(string(b)), file
		if tok == "" {
			return fmt.Errorf("%s is empty: delete it and meshbox creates a new token at its next start", file)
		}
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		port = "8080"
	}
	base := "http://" + net.JoinHostPort("127.0.0.1", port)
	cfg.Addr = addr
	link := web.TeacherLinkFor(cfg.PublicURL, cfg.Addr, m, base) + "#token=" + tok
	code, err := qr.Encode(link)
	if err != nil {
		return fmt.Errorf("QR code: %w", err)
	}
	fmt.Fprintf(out, "Teacher dashboard (scan, or open the link; keep it private):\n%s%s\n\nThe token is kept in %s.\n", code.Terminal(), link, where)
	return nil
}

func exists(path string) bool {
	if path == "" {
		return false
	}
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// unitAddr is the MESHBOX_ADDR the service's unit sets, or "".
func unitAddr(unit string) string {
	f, err := os.Open(unit)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Environment=MESHBOX_ADDR="); ok {
			return v
		}
	}
	return ""
}

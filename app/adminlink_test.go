package app_test

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"meshbox/app"
	"meshbox/config"
	"meshbox/web"
)

// schoolLAN is a machine whose one network address is 192.168.1.20.
var schoolLAN = &web.Machine{Addrs: func() []web.HostAddr {
	return []web.HostAddr{{IP: netip.MustParseAddr("192.168.1.20"), Interface: "eth0"}}
}}

func parse(t *testing.T, args []string, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Parse(args, func(k string) string { return env[k] }, io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAdminLinkAgain: `meshbox admin-link` prints the teacher's link and its QR code again from
// the token kept beside the database, on the box's network address; when no database is named
// and there is none here, the service's (with the port its unit sets); and it says in words
// when there is no token yet.
func TestAdminLinkAgain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "meshbox.db")
	const tok = "abcdefghijklmnopqrstuvwx"
	if err := os.WriteFile(app.AdminTokenFile(db), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := app.PrintAdminLink(parse(t, []string{"--db", db, "--addr", ":8090"}, nil), app.LinkPlaces{}, schoolLAN, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "http://192.168.1.20:8090/#token="+tok+"\n") || !strings.ContainsAny(out.String(), "\u2580\u2584\u2588") {
		t.Errorf("no link with a QR code:\n%s", out.String())
	}
	if !strings.Contains(out.String(), app.AdminTokenFile(db)) {
		t.Errorf("does not say where the token is kept:\n%s", out.String())
	}

	// No database named, none in the working folder: the service's, on its unit's port.
	svc := t.TempDir()
	unit := filepath.Join(svc, "meshbox.service")
	if err := os.WriteFile(unit, []byte("[Service]\nEnvironment=MESHBOX_ADDR=:80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	places := app.LinkPlaces{ServiceDB: db, ServiceUnit: unit}
	cfg := parse(t, nil, nil)
	cfg.DB = filepath.Join(t.TempDir(), "meshbox.db") // the default ./meshbox.db, somewhere empty
	out.Reset()
	if err := app.PrintAdminLink(cfg, places, schoolLAN, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "http://192.168.1.20:80/#token="+tok) {
		t.Errorf("the service's link:\n%s", out.String())
	}

	// A named database without a token yet.
	err := app.PrintAdminLink(parse(t, []string{"--db", filepath.Join(dir, "other.db")}, nil), places, schoolLAN, &out)
	if err == nil || !strings.Contains(err.Error(), "start meshbox with this database once") {
		t.Errorf("no token yet: %v", err)
	}
}

// Package service writes the systemd unit that runs meshbox as a hardened system service, so a
// box (a Raspberry Pi in a classroom) starts meshbox at boot with no internet and no extra files.
package service

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"meshbox/config"
)

// Unit is what varies between installations; everything else in the unit is fixed hardening.
type Unit struct {
	// Binary is the absolute path of the meshbox executable.
	Binary string
	// Addr is the listen address (MESHBOX_ADDR).
	Addr string
	// MemoryLimit is the Go runtime's soft memory limit (MESHBOX_MEMORY_LIMIT), such as
	// "300MiB"; empty sets none.
	MemoryLimit string
	// MDNS turns the LAN advertisement (meshbox.local) on or off.
	MDNS bool
}

// StateDir is where systemd keeps the database (StateDirectory=meshbox); with DynamicUser it is
// a link into /var/lib/private, owned by the unit's transient user.
const StateDir = "/var/lib/meshbox"

// UnitPath is where `meshbox service install` writes the unit by default.
const UnitPath = "/etc/systemd/system/meshbox.service"

// unitText is the unit. Why each line is there:
//   - DynamicUser: a user that exists only while meshbox runs, owning only StateDirectory.
//   - StateDirectory: /var/lib/meshbox, created with the right owner, kept across restarts.
//   - LimitNOFILE: each WebSocket or SSE reader holds a file descriptor; a class of 30 with
//     several tabs is far below it, a bench run with thousands of readers is not.
//   - Restart=on-failure: the box heals itself after a crash; a clean stop stays stopped.
//   - The Protect*/Restrict*/SystemCall* lines: meshbox only needs its state directory, TCP
//     sockets, netlink (to list interfaces for the join page and mDNS) and UDP multicast.
var unitText = template.Must(template.New("unit").Parse(`# Written by "meshbox service install". Re-run it to change the settings below, or add
# overrides with "systemctl edit meshbox" (they survive reinstalling).
[Unit]
Description=meshbox, a real-time relay for classrooms
After=network.target
Wants=network.target

[Service]
Type=simple
ExecStart={{.Binary}}
Environment=MESHBOX_ADDR={{.Addr}}
Environment=MESHBOX_DB=` + StateDir + `/meshbox.db
Environment=MESHBOX_MDNS={{.MDNS}}
{{- if .MemoryLimit}}
Environment=MESHBOX_MEMORY_LIMIT={{.MemoryLimit}}
{{- end}}
DynamicUser=yes
StateDirectory=meshbox
StateDirectoryMode=0750
WorkingDirectory=` + StateDir + `
UMask=0027
Restart=on-failure
RestartSec=2s
TimeoutStopSec=20s
LimitNOFILE=65536
{{- if .LowPort}}
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
{{- else}}
CapabilityBoundingSet=
{{- end}}
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`))

// Render returns the unit file's text.
func (u Unit) Render() ([]byte, error) {
	if !filepath.IsAbs(u.Binary) || strings.ContainsAny(u.Binary, " \t\n\"'\\%$;") {
		return nil, fmt.Errorf("binary path %q must be absolute, without spaces or quotes", u.Binary)
	}
	_, port, err := net.SplitHostPort(u.Addr)
	if err != nil || strings.ContainsAny(u.Addr, " \t\n\"'\\%$") {
		return nil, fmt.Errorf("address %q: want host:port, such as :8080", u.Addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("address %q: bad port", u.Addr)
	}
	if u.MemoryLimit != "" {
		if _, err := config.ParseBytes(u.MemoryLimit); err != nil {
			return nil, fmt.Errorf("memory limit: %w", err)
		}
	}
	var b bytes.Buffer
	err = unitText.Execute(&b, struct {
		Unit
		LowPort bool
	}{u, p < 1024})
	return b.Bytes(), err
}

// unitMark is the unit's first words: uninstall removes only a unit that install wrote.
const unitMark = `# Written by "meshbox service install".`

const serviceUsage = `Usage:
  meshbox service install [settings]     write a systemd unit for this binary (run as root)
  meshbox service uninstall [settings]   remove that unit; the database is kept
`

// Run is `meshbox service …`: `install` writes the unit (or prints it with --print),
// `uninstall` removes it.
func Run(args []string, out io.Writer) error {
	if len(args) == 0 || (args[0] != "install" && args[0] != "uninstall") {
		fmt.Fprint(out, serviceUsage)
		if len(args) > 0 && args[0] != "--help" && args[0] != "-h" && args[0] != "help" {
			return fmt.Errorf("%q is not a service command; use install or uninstall", args[0])
		}
		return nil
	}
	if args[0] == "uninstall" {
		return uninstall(args[1:], out)
	}
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		self = "/usr/local/bin/meshbox"
	}
	fs := newFlagSet("meshbox service install", out)
	var u Unit
	fs.StringVar(&u.Binary, "binary", self, "absolute path of the meshbox binary the unit runs")
	fs.StringVar(&u.Addr, "addr", ":8080", "listen address")
	fs.StringVar(&u.MemoryLimit, "memory-limit", "", "Go memory limit, such as 300MiB for a 1 GB Raspberry Pi (empty: none)")
	fs.BoolVar(&u.MDNS, "mdns", true, "advertise meshbox.local on the LAN")
	dir := fs.String("unit-dir", filepath.Dir(UnitPath), "directory the unit file is written to")
	print := fs.Bool("print", false, "print the unit instead of writing it")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	text, err := u.Render()
	if err != nil {
		return err
	}
	if *print {
		_, err := out.Write(text)
		return err
	}
	path := filepath.Join(*dir, "meshbox.service")
	if err := writeFile(path, text); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\nnext:\n  systemctl daemon-reload\n  systemctl enable --now meshbox\n  journalctl -u meshbox -f     # the log, with the dashboard's address\n", path)
	return nil
}

// writeFile replaces path atomically, so a half-written unit never meets systemd.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".meshbox.service-*")
	if err != nil {
		return fmt.Errorf("write unit: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write unit: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write unit: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write unit: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write unit: %w", err)
	}
	return nil
}

// newFlagSet is a flag set whose help spells settings --name, as the rest of meshbox does.
func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s [settings]\n", name)
		config.PrintFlags(fs)
	}
	return fs
}

// uninstall removes the unit install wrote, and its enablement link, and says what is left to
// do. It refuses a unit it did not write. The database and the admin token stay: a teacher who
// reinstalls keeps the classes' groups and the same link.
func uninstall(args []string, out io.Writer) error {
	fs := newFlagSet("meshbox service uninstall", out)
	dir := fs.String("unit-dir", filepath.Dir(UnitPath), "directory the unit file was written to")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	path := filepath.Join(*dir, "meshbox.service")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no meshbox service is installed (%s does not exist)", path)
	case err != nil:
		return fmt.Errorf("read unit: %w", err)
	case !bytes.HasPrefix(b, []byte(unitMark)):
		return fmt.Errorf("%s was not written by meshbox service install: remove it yourself if it is meshbox's", path)
	}
	// systemctl enable links the unit into the target it is wanted by; a dangling link would
	// make systemd complain at every boot.
	wants := filepath.Join(*dir, "multi-user.target.wants", "meshbox.service")
	if target, err := os.Readlink(wants); err == nil && (target == path || filepath.Base(target) == "meshbox.service") {
		if err := os.Remove(wants); err != nil {
			return fmt.Errorf("remove %s: %w", wants, err)
		}
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove unit: %w", err)
	}
	fmt.Fprintf(out, "removed %s\nnext:\n  systemctl stop meshbox\n  systemctl daemon-reload\n"+
		"The database and the admin token are kept in %s; delete that folder to remove them too.\n", path, StateDir)
	return nil
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of utime/stime in /proc/PID/stat.
// It is 100 on every architecture Go supports (the kernel fixes it for
// userspace), and reading it via sysconf would need cgo.
const clockTicks = 100

// procSample is a snapshot of a process's CPU time and resident memory.
type procSample struct {
	at  time.Time
	cpu time.Duration // user + system
	rss int64         // bytes
}

// sampleProc reads /proc/PID/stat and /proc/PID/status.
func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return s, fmt.Errorf("read process stat: %w", err)
	}
	if s.cpu, err = parseStatCPU(stat); err != nil {
		return s, err
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	if s.rss, err = parseStatusRSS(status); err != nil {
		return s, err
	}
	return s, nil
}

// parseStatCPU returns utime+stime from a /proc/PID/stat line. Fields are
// counted after the last ')' because the command name may contain spaces.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse process stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')': state(3) ppid(4) … utime(14) stime(15), so indexes 11 and 12.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse process stat: %d fields", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse process stat: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseStatusRSS returns VmRSS from /proc/PID/status, in bytes.
func parseStatusRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse VmRSS %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse VmRSS %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("parse process status: no VmRSS")
}

// raiseFileLimit lifts the soft open-file limit to the hard one, so many
// connections can be held open, and returns the limit now in force.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, fmt.Errorf("raise open-file limit: %w", err)
		}
	}
	return lim.Cur, nil
}

// portRange returns the loopback ephemeral port range, which caps how many
// connections one client address can open to one server port.
func portRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, fmt.Errorf("read port range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("parse port range %q", b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parse port range %q", b)
	}
	return lo, hi, nil
}

// machineBusy returns the share of all CPUs (0..1) that was busy during d,
// from /proc/stat; the tool's figures are only as good as the idle machine
// it starts on. It returns -1 when unknown.
func machineBusy(ctx context.Context, d time.Duration) float64 {
	busy0, total0, err := cpuTimes()
	if err != nil {
		return -1
	}
	sleep(ctx, d)
	busy1, total1, err := cpuTimes()
	if err != nil || total1 <= total0 {
		return -1
	}
	return float64(busy1-busy0) / float64(total1-total0)
}

// cpuTimes reads the aggregate busy and total jiffies from /proc/stat.
func cpuTimes() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("parse /proc/stat %q", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc/stat %q: %w", line, err)
		}
		if i >= 7 {
			break // guest times are already counted in user
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// liveMemory asks a server that serves /debug/pprof (meshbox -pprof) for its live memory: the
// heap left after a collection the request forces, plus goroutine stacks. Unlike RSS it holds
// no garbage awaiting collection and no memory the runtime has yet to return, so its growth
// divided by connections is what each connection keeps. ok is false when the server does not
// serve the profile.
func (c *client) liveMemory(ctx context.Context) (n int64, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return 0, false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	var heap, stack int64
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			heap, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			found++
		} else if v, ok := strings.CutPrefix(line, "# Stack = "); ok {
			inuse, _, _ := strings.Cut(v, " ")
			stack, _ = strconv.ParseInt(inuse, 10, 64)
			found++
		}
	}
	return heap + stack, found == 2 && sc.Err() == nil
}

package server

import (
	"net"
	"testing"
	"time"
)

// A reserved connection's deadlines are clamped to its window, until it carries the admin
// token: then it is the teacher's (the dashboard's stream lives on it) and keeps its own, up
// to teacherConns such connections.
func TestTeacherKeepsAReservedConnection(t *testing.T) {
	t.Parallel()
	b := &connBudget{budget: 1, addrs: map[string]*addrConns{}}
	var conns []*budgetConn
	for range teacherConns + 1 {
		client, server := net.Pipe()
		t.Cleanup(func() { client.Close(); server.Close() })
		c := &budgetConn{Conn: server, b: b, addr: "10.0.0.1", terms: pastBudget, until: time.Now().Add(reserveWindow), counted: true}
		b.addrs["10.0.0.1"] = &addrConns{conns: map[*budgetConn]struct{}{}, reserved: teacherConns + 1}
		b.reserved++
		conns = append(conns, c)
	}
	far := time.Now().Add(time.Hour)
	if got := conns[0].clamp(far); !got.Equal(conns[0].until) {
		t.Fatalf("a reserved connection's deadline is %v, want its window's end", got)
	}
	for i, c := range conns[:teacherConns] {
		if !b.promote(c) {
			t.Fatalf("teacher connection %d refused", i)
		}
		if got := c.clamp(far); !got.Equal(far) || !c.clamp(time.Time{}).IsZero() {
			t.Fatalf("the teacher's connection %d is still clamped: %v", i, got)
		}
	}
	if b.promote(conns[teacherConns]) {
		t.Fatalf("more than %d teacher connections on the reserve", teacherConns)
	}
	if got := conns[teacherConns].clamp(far); !got.Equal(conns[teacherConns].until) {
		t.Fatal("a connection refused as the teacher's lost its clamp")
	}
}

package jetstream

import (
	"encoding/base64"
	"strings"
)

// The layout of the stream's subjects, under a prefix P (default "meshbox"):
//
//	P.g.<gid>.i          the group's items, in frames: one message per batch (frames.go)
//	P.g.<gid>.r.g        the group's record (the newest message wins; a tombstone deletes it)
//	P.g.<gid>.r.n.<nid>  a node's record (likewise)
//	P.m.<gid>            the group's purge mark: its newest item a purge deleted
//	P.p                  the stream's purge mark: the newest item any purge deleted
//	P.c                  a message that only carries a check (state of no record changed)
//	P.l.<name>           a lease: which instance does a job for the cluster, until when
//	P.d.<domain>         the domain's creation mark: written by every batch that creates a
//	                     group in the domain, so that concurrent creations conflict
//	P.v                  the layout mark: items are in frames after the sequence it names
//
// A group's records lie under P.g.<gid>.r.>, so one expected-last-subject-sequence check on
// that filter tells whether another instance changed the group's state.
// Records are published with a subject rollup, so the stream keeps one message per record;
// everything of a group lies under P.g.<gid>.> so that forgetting a group is one purge.
type subjects struct{ p string }

func (s subjects) items(gid string) string { return s.p + ".g." + token(gid) + ".i" }
func (s subjects) group(gid string) string { return s.p + ".g." + token(gid) + ".r.g" }
func (s subjects) node(gid, nid string) string {
	return s.p + ".g." + token(gid) + ".r.n." + token(nid)
}
func (s subjects) records(gid string) string  { return s.p + ".g." + token(gid) + ".r.>" }
func (s subjects) domain(d string) string     { return s.p + ".d." + token(d) }
func (s subjects) check() string              { return s.p + ".c" }
func (s subjects) lease(name string) string   { return s.p + ".l." + token(name) }
func (s subjects) groupAll(gid string) string { return s.p + ".g." + token(gid) + ".>" }
func (s subjects) mark(gid string) string     { return s.p + ".m." + token(gid) }
func (s subjects) purged() string             { return s.p + ".p" }
func (s subjects) all() string                { return s.p + ".>" }
func (s subjects) layout() string             { return s.p + ".v" }
func (s subjects) allItems() string           { return s.p + ".g.*.i" }

// followed are the subjects every instance's follower delivers, whichever groups it wants:
// everything but items (records, purge marks, checks, leases, domain marks). They grow with
// groups and nodes, not with items, and the rules' limits need them all.
func (s subjects) followed() []string {
	return []string{s.p + ".g.*.r.>", s.p + ".m.*", s.purged(), s.check(), s.p + ".l.*", s.p + ".d.*"}
}

// parse tells what a subject of the stream holds and whose it is.
func (s subjects) parse(subj string) (kind byte, gid, nid string, ok bool) {
	rest, found := strings.CutPrefix(subj, s.p+".")
	if !found {
		return 0, "", "", false
	}
	parts := strings.Split(rest, ".")
	switch {
	case len(parts) == 1 && parts[0] == "p":
		return 'p', "", "", true
	case len(parts) == 2 && parts[0] == "m":
		gid, ok = untoken(parts[1])
		return 'm', gid, "", ok
	case len(parts) == 2 && parts[0] == "d":
		d, ok := untoken(parts[1])
		return 'd', d, "", ok
	case len(parts) == 3 && parts[0] == "g" && parts[2] == "i":
		gid, ok = untoken(parts[1])
		return 'i', gid, "", ok
	case len(parts) == 4 && parts[0] == "g" && parts[2] == "r" && parts[3] == "g":
		gid, ok = untoken(parts[1])
		return 's', gid, "", ok
	case len(parts) == 5 && parts[0] == "g" && parts[2] == "r" && parts[3] == "n":
		gid, ok1 := untoken(parts[1])
		nid, ok2 := untoken(parts[4])
		return 'n', gid, nid, ok1 && ok2
	}
	return 0, "", "", false
}

// token makes an id usable as one subject token. Ids of plain characters are kept as they
// are, so subjects stay readable in `nats stream view`; any other id is base64url-encoded
// behind a '~', which no plain id contains.
func token(id string) string {
	if id != "" && plain(id) {
		return id
	}
	return "~" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func untoken(t string) (string, bool) {
	enc, found := strings.CutPrefix(t, "~")
	if !found {
		return t, t != ""
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	return string(b), err == nil
}

func plain(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

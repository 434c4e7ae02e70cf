package meshv2

import (
	"context"
	"errors"
	"fmt"
)

// Bounds of one GraphQL request. The Smalruby client sends one root field per request, no
// aliases, a handful of fields and no introspection, so these leave it ample room while a
// document of hundreds of aliased mutations or __schema selections is refused before it runs.
const (
	defaultMaxAliases    = 10
	defaultMaxSelections = 1000
	defaultMaxDepth      = 12
	defaultMaxCost       = 1000
	// Cost weights: every field costs 1, a root field (one store operation) 10 more, and an
	// introspection field (__schema, __type: a walk over the whole schema) 100 more.
	costRootField     = 10
	costIntrospection = 100
)

// errQueryTooLarge is wrapped by the errors of documents over a bound.
var errQueryTooLarge = errors.New("query exceeds a limit")

// docCounts is what a GraphQL document asks for, counted from its text before execution.
// Fragments are counted once where they are defined: their expansion is bounded by the
// library's MaxSelections, and the same field reached through several spreads is merged.
type docCounts struct {
	aliases       int
	fields        int
	rootFields    int
	introspection int
}

func (c docCounts) cost() int {
	return c.fields + costRootField*c.rootFields + costIntrospection*c.introspection
}

// checkDocument refuses a document over the handler's bounds, or with introspection when it
// is off. It reads the text once with a lexer and keeps no tokens, only one flag per open
// brace, so its cost is linear in the document's length.
func (h *Handler) checkDocument(query string) error {
	c, err := countDocument(query)
	if err != nil {
		// Leave syntax errors to the library, which reports them with locations.
		return nil
	}
	switch {
	case c.introspection > 0 && !h.cfg.Introspection:
		return newError(errValidation, "introspection is disabled on this server")
	case c.aliases > h.cfg.MaxAliases:
		return newError(errValidation, "%v: %d aliases (at most %d)", errQueryTooLarge, c.aliases, h.cfg.MaxAliases)
	case c.cost() > h.cfg.MaxCost:
		return newError(errValidation, "%v: cost %d (at most %d)", errQueryTooLarge, c.cost(), h.cfg.MaxCost)
	}
	return nil
}

// countDocument walks the tokens of a GraphQL document. A field is a name inside a selection
// set (braces) outside any parentheses (arguments, variable definitions and their values,
// where object literals live) that is not a directive, a fragment spread or a type
// condition; an alias is such a name followed by a colon.
func countDocument(src string) (docCounts, error) {
	var c docCounts
	lx := lexer{src: src}
	parens := 0
	// braces holds, for each open brace, whether it is an inline fragment's, which adds no
	// field level; depth counts the others.
	var braces []bool
	depth := 0
	inline := false   // the next brace opens an inline fragment
	typeCond := false // the next name is the type of an inline fragment ("... on T")
	prev := token{}
	cur, err := lx.next()
	if err != nil {
		return c, err
	}
	for cur.kind != tokEOF {
		nxt, err := lx.next()
		if err != nil {
			return c, err
		}
		switch cur.kind {
		case tokPunct:
			switch cur.text {
			case "{":
				braces = append(braces, inline)
				if !inline {
					depth++
				}
				inline = false
			case "}":
				if len(braces) == 0 {
					return c, errors.New("unbalanced '}'")
				}
				if !braces[len(braces)-1] {
					depth--
				}
				braces = braces[:len(braces)-1]
			case "(":
				parens++
			case ")":
				parens--
			case "...":
				// A spread names a fragment; anything else ("on", a directive, a brace)
				// starts an inline fragment.
				inline = nxt.kind != tokName || nxt.text == "on"
			}
			if parens < 0 {
				return c, errors.New("unbalanced ')'")
			}
		case tokName:
			if len(braces) == 0 || parens > 0 {
				break
			}
			switch {
			case typeCond:
				typeCond = false
			case prev.kind == tokPunct && prev.text == "...":
				typeCond = cur.text == "on" // else a fragment spread
			case prev.kind == tokPunct && (prev.text == "@" || prev.text == "$"):
				// a directive or a variable
			case nxt.kind == tokPunct && nxt.text == ":":
				c.aliases++
			default:
				c.fields++
				if depth == 1 {
					c.rootFields++
				}
				if cur.text == "__schema" || cur.text == "__type" {
					c.introspection++
				}
			}
		}
		prev, cur = cur, nxt
	}
	return c, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokName
	tokPunct
	tokValue // strings and numbers
)

type token struct {
	kind tokKind
	text string // names and punctuators only
}

// lexer yields GraphQL tokens (spec §2.1): it skips ignored tokens and comments and reads
// strings, block strings and numbers as values.
type lexer struct {
	src string
	pos int
}

func (l *lexer) next() (token, error) {
	s := l.src
	for l.pos < len(s) {
		switch ch := s[l.pos]; {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == ',':
			l.pos++
		case ch == 0xEF && len(s) >= l.pos+3 && s[l.pos:l.pos+3] == "\uFEFF":
			l.pos += 3
		case ch == '#':
			for l.pos < len(s) && s[l.pos] != '\n' && s[l.pos] != '\r' {
				l.pos++
			}
		case ch == '.':
			if len(s) < l.pos+3 || s[l.pos:l.pos+3] != "..." {
				return token{}, fmt.Errorf("unexpected '.' at %d", l.pos)
			}
			l.pos += 3
			return token{kind: tokPunct, text: "..."}, nil
		case ch == '"':
			return l.str()
		case ch == '_' || ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z':
			start := l.pos
			for l.pos < len(s) && isNameChar(s[l.pos]) {
				l.pos++
			}
			return token{kind: tokName, text: s[start:l.pos]}, nil
		case ch == '-' || ch >= '0' && ch <= '9':
			l.pos++
			for l.pos < len(s) && (isNameChar(s[l.pos]) || s[l.pos] == '.' || s[l.pos] == '+' || s[l.pos] == '-') {
				l.pos++
			}
			return token{kind: tokValue}, nil
		case ch == '!' || ch == '$' || ch == '&' || ch == '(' || ch == ')' || ch == ':' || ch == '=' ||
			ch == '@' || ch == '[' || ch == ']' || ch == '{' || ch == '|' || ch == '}':
			l.pos++
			return token{kind: tokPunct, text: s[l.pos-1 : l.pos]}, nil
		default:
			return token{}, fmt.Errorf("unexpected character at %d", l.pos)
		}
	}
	return token{kind: tokEOF}, nil
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

func (l *lexer) str() (token, error) {
	s := l.src
	if len(s) >= l.pos+3 && s[l.pos:l.pos+3] == `"""` {
		l.pos += 3
		for l.pos < len(s) {
			switch {
			case len(s) >= l.pos+4 && s[l.pos:l.pos+4] == `\"""`:
				l.pos += 4
			case len(s) >= l.pos+3 && s[l.pos:l.pos+3] == `"""`:
				l.pos += 3
				return token{kind: tokValue}, nil
			default:
				l.pos++
			}
		}
		return token{}, errors.New("unterminated block string")
	}
	l.pos++
	for l.pos < len(s) {
		switch s[l.pos] {
		case '\\':
			l.pos += 2
		case '"':
			l.pos++
			return token{kind: tokValue}, nil
		case '\n', '\r':
			return token{}, errors.New("unterminated string")
		default:
			l.pos++
		}
	}
	return token{}, errors.New("unterminated string")
}

// execSlots bounds how many GraphQL requests execute at once; a request waits for a slot up
// to wait, then is refused, so a burst queues briefly instead of piling up work.
type execSlots struct {
	slots chan struct{}
	wait  func(context.Context) (context.Context, context.CancelFunc)
}

func newExecSlots(n int, wait func(context.Context) (context.Context, context.CancelFunc)) *execSlots {
	return &execSlots{slots: make(chan struct{}, n), wait: wait}
}

// acquire takes a slot; false when none freed up in time or ctx ended.
func (e *execSlots) acquire(ctx context.Context) bool {
	select {
	case e.slots <- struct{}{}:
		return true
	default:
	}
	wctx, cancel := e.wait(ctx)
	defer cancel()
	select {
	case e.slots <- struct{}{}:
		return true
	case <-wctx.Done():
		return false
	}
}

func (e *execSlots) release() { <-e.slots }

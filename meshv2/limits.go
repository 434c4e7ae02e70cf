package meshv2

import (
	"context"
	"errors"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/parser"
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

// maxDocumentTokens bounds the tokens the bounds' parser reads, so a hostile document is not
// built whole before it is counted: the parse stops there. The Smalruby client's documents
// have under a hundred tokens (their inputs travel as variables): this is forty times that.
const maxDocumentTokens = 1 << 12

// docCounts is what a GraphQL document asks for, counted on its parse before execution.
// Fragments are counted once where they are defined: their expansion is bounded by the
// library's MaxSelections, and the same field reached through several spreads is merged.
type docCounts struct {
	aliases       int
	fields        int
	rootFields    int
	introspection int
	// depth is the deepest field nesting of one operation or fragment (an inline fragment
	// adds no level); the library also counts it through spreads.
	depth int
}

func (c docCounts) cost() int {
	return c.fields + costRootField*c.rootFields + costIntrospection*c.introspection
}

// checkDocument refuses a document over the handler's bounds, with introspection when it is
// off, or one the bounds' parser cannot read; otherwise it returns the document to execute.
//
// One parse decides both what is counted and what runs: the document is parsed here
// (github.com/vektah/gqlparser, which follows the specification's grammar) and the text
// handed to the executor is that parse printed back, not the client's text. graph-gophers'
// own parser is internal to it, and two parsers that read one text differently (its names
// take any Unicode letter, the specification's only ASCII ones: one "é:" alias made the
// old lexer give up and the document run unchecked) would otherwise let a document run
// that was never counted. What the executor sees is now exactly what was counted.
func (h *Handler) checkDocument(query string) (string, error) {
	c, doc, err := countDocument(query)
	if err != nil {
		return "", newError(errValidation, "the query is not a GraphQL document this server can read: %v", err)
	}
	switch {
	case c.introspection > 0 && !h.cfg.Introspection:
		return "", newError(errValidation, "introspection is disabled on this server")
	case c.aliases > h.cfg.MaxAliases:
		return "", newError(errValidation, "%v: %d aliases (at most %d)", errQueryTooLarge, c.aliases, h.cfg.MaxAliases)
	case c.depth > h.cfg.MaxDepth:
		return "", newError(errValidation, "%v: depth %d (at most %d)", errQueryTooLarge, c.depth, h.cfg.MaxDepth)
	case c.cost() > h.cfg.MaxCost:
		return "", newError(errValidation, "%v: cost %d (at most %d)", errQueryTooLarge, c.cost(), h.cfg.MaxCost)
	}
	var b strings.Builder
	formatter.NewFormatter(&b, formatter.WithCompacted()).FormatQueryDocument(doc)
	return b.String(), nil
}

// countDocument parses a GraphQL document and counts its fields, aliases, root fields,
// introspection fields and depth. A field is an alias when its response key differs from its
// name (`a: a` asks for nothing more than `a`).
func countDocument(src string) (docCounts, *ast.QueryDocument, error) {
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: src}, maxDocumentTokens)
	if err != nil {
		return docCounts{}, nil, err
	}
	var c docCounts
	for _, op := range doc.Operations {
		c.walk(op.SelectionSet, 1)
	}
	for _, f := range doc.Fragments {
		c.walk(f.SelectionSet, 1)
	}
	return c, doc, nil
}

// walk counts one selection set at depth (the parser bounds nesting, so the recursion is
// bounded too).
func (c *docCounts) walk(set ast.SelectionSet, depth int) {
	for _, sel := range set {
		switch sel := sel.(type) {
		case *ast.Field:
			c.fields++
			c.depth = max(c.depth, depth)
			if sel.Alias != sel.Name {
				c.aliases++
			}
			if depth == 1 {
				c.rootFields++
			}
			if sel.Name == "__schema" || sel.Name == "__type" {
				c.introspection++
			}
			c.walk(sel.SelectionSet, depth+1)
		case *ast.InlineFragment:
			c.walk(sel.SelectionSet, depth)
		case *ast.FragmentSpread:
			// counted where the fragment is defined
		}
	}
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

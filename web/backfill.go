package web

import (
	"encoding/json"
	"fmt"

	"meshbox/stream"
)

// A teacher who opens the dashboard mid-lesson sees each group's recent activity at once
// rather than an empty feed until the next item. The backfill comes from the hub's bounded
// global feed (memory only: no database read per dashboard), so it holds what that feed still
// has; these bounds keep the first message of a teacher's stream small whatever the class sends.
const (
	// backfillPerGroup is the newest items shown per group: a chatty group must not push a
	// quiet one out of the backfill.
	backfillPerGroup = 20
	// backfillItems bounds the items of all groups together.
	backfillItems = 200
	// backfillBytes bounds the items' JSON together (payloads can be large).
	backfillBytes = 128 << 10
	// backfillScan is how far back in the global feed the backfill looks, at most.
	backfillScan = 4096
)

// backfillLimits are the bounds of one backfill (Handler.backfillLim); tests set small ones.
type backfillLimits struct{ perGroup, items, bytes int }

// pickBackfill chooses, from items in cursor order, the newest ones within the limits: at most
// perGroup of each group, items in all, and bytes of item JSON. What it keeps of a group is
// that group's newest items without a gap; the result is in cursor order.
func pickBackfill(items []stream.Item, lim backfillLimits) []stream.Item {
	perGroup := map[string]int{}
	var picked []stream.Item
	bytes := 0
	for i := len(items) - 1; i >= 0 && len(picked) < lim.items; i-- {
		it := items[i]
		if perGroup[it.Group] >= lim.perGroup {
			continue
		}
		if bytes+len(it.JSON) > lim.bytes {
			break // older items of every group would leave a gap before this one
		}
		bytes += len(it.JSON)
		perGroup[it.Group]++
		picked = append(picked, it)
	}
	for i, j := 0, len(picked)-1; i < j; i, j = i+1, j-1 {
		picked[i], picked[j] = picked[j], picked[i]
	}
	return picked
}

// backfill encodes the items event that opens a teacher's stream: the recent activity of every
// group up to through (the cursor after which the stream's live items start), so the page shows
// each item once. Only admin streams get it: it names groups and nodes and carries payloads.
func (h *Handler) backfill(through int64) ([]byte, error) {
	items := pickBackfill(h.feed.ReadAllThrough(through, backfillScan), h.backfillLim)
	entries := make([]feedEntry, 0, len(items))
	for _, it := range items {
		entries = append(entries, feedEntry{Group: it.Group, Item: it.JSON})
	}
	data, err := json.Marshal(feedItems{Items: entries, Next: through, Backfill: true})
	if err != nil {
		return nil, fmt.Errorf("encode dashboard backfill: %w", err)
	}
	return data, nil
}

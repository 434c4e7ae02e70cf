package rules_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"meshbox/rules"
)

// BenchmarkGroupCommit is the whole write path below HTTP: 64 writers publishing through the
// rules (validation, the writer's batch, the SQLite log's commit, applying state) on a real
// database file; it reports items/s. It measures what db's BenchmarkIngest measured before the
// store was split into rules and log, so the two figures compare.
func BenchmarkGroupCommit(b *testing.B) {
	for _, perOp := range []int{1, 10} {
		b.Run(fmt.Sprintf("64-writers/%d-events-per-publish", perOp), func(b *testing.B) {
			bx := open(b, filepath.Join(b.TempDir(), "bench.db"), rules.Options{}, rules.Hooks{})
			benchPublish(b, bx.Engine, 1, 64, perOp)
		})
	}
}

// BenchmarkJoinAmongManyGroups is a join on a server holding 2,000 live groups, with the
// share of nodes in all groups (which counts the client's members in every live group) on
// and off: what that count costs the writer per join.
func BenchmarkJoinAmongManyGroups(b *testing.B) {
	for _, share := range []int{0, 1 << 30} {
		b.Run(fmt.Sprintf("max-nodes-per-client=%d", share), func(b *testing.B) {
			bx := open(b, filepath.Join(b.TempDir(), "bench.db"), rules.Options{Limits: rules.Limits{
				MaxGroups: 3000, MaxGroupsPerDomain: 3000, MaxNodesPerGroup: 1 << 20, MaxNodesPerClient: share,
			}}, rules.Hooks{})
			ctx := rules.WithClient(context.Background(), "10.0.0.2")
			gids := make([]string, 2000)
			for i := range gids {
				j, err := bx.CreateGroup(context.Background(), rules.NewGroup{Domain: "d", Name: "g"})
				if err != nil {
					b.Fatal(err)
				}
				gids[i] = j.Group.ID
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := bx.Join(ctx, gids[i%len(gids)], rules.NewNode{Name: "m"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

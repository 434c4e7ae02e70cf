// Resolver of the one subscription, onMessageInGroup: a group's stream as the AppSync
// real-time endpoint delivers it.

package meshv2

import (
	"context"
	"meshbox/live"
)

// OnMessageInGroup resolves Subscription.onMessageInGroup: the group's stream from now on,
// turned into batchEvent, nodeStatus and groupDissolve messages.
func (r *root) OnMessageInGroup(ctx context.Context, args groupArgs) (<-chan *meshMessage, error) {
	snap, err := r.liveSnapshot(ctx, "onMessageInGroup", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	out := make(chan *meshMessage)
	release := func() {}
	node, rel, ok := r.roster.claimRealtime(snap.Group.ID, callerOf(ctx).ip)
	if ok {
		release = rel // idempotent
		// The socket's pings now time this node's link (the dashboard's link quality).
		if sock, ok := ctx.Value(socketKey{}).(*live.Socket); ok {
			if lk, ok := r.backend.(linker); ok {
				sock.SetLink(lk.Link(snap.Group.ID, node, transportRealtime))
				release = func() { sock.SetLink(nil); rel() }
			}
		}
		atEnd(ctx, release)
	}
	go func() {
		defer release()
		r.follow(ctx, snap, node, out)
	}()
	markStarted(ctx)
	return out, nil
}

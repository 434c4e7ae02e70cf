// Package types checks the TypeScript declarations meshbox serves at /meshbox.d.ts: a real
// meshbox is started in-process, its /meshbox.js and /meshbox.d.ts are fetched over HTTP, and
// the real TypeScript compiler (npm, pinned in package.json) checks example.ts, which uses the
// whole client API, against them with --strict. The test skips when `npm ci` has not been run
// here (or node is missing), unless MESHBOX_E2E=1 is set, in which case that is a failure.
package types

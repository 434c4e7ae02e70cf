// Package browser holds end-to-end tests of the browser client library (/meshbox.js) and the
// /try page: a real meshbox started in-process, a real headless Chromium driven over the
// DevTools protocol. The tests skip when no Chromium is installed, unless MESHBOX_E2E=1 is set,
// in which case a missing browser is a failure.
package browser

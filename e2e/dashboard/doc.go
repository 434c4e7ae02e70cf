// Package dashboard holds end-to-end tests of the teacher dashboard and the Prometheus metrics:
// a real meshbox started in-process, real traffic over its HTTP API, `promtool check metrics`
// and a real Prometheus server scraping it, and a headless Chromium driving the dashboard.
// Screenshots go to e2e/dashboard/screenshots (git-ignored). The tests skip when Prometheus or
// Chromium is missing, unless MESHBOX_E2E=1 is set, in which case that is a failure.
package dashboard

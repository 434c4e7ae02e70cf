// Package dashboard holds end-to-end tests of the teacher dashboard and the Prometheus metrics:
// a real meshbox started in-process, real traffic over its HTTP API, `promtool check metrics`
// and a real Prometheus server scraping it, and a headless Chromium driving the dashboard.
// Screenshots go to e2e/dashboard/screenshots (git-ignored); with MESHBOX_DOCS_SCREENSHOTS=1,
// TestDashboardBackfill also refreshes the documentation's pictures in docs/screenshots
// (the dashboard with backfilled activity, ja and en, desktop and phone). The tests skip when Prometheus or
// Chromium is missing, unless MESHBOX_E2E=1 is set, in which case that is a failure.
package dashboard

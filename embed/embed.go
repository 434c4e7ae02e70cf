// Package embed holds the static files the binary serves: the dashboard, the /try page and the
// browser client library. They are compiled in so meshbox works with no internet.
package embed

import "embed"

// Assets is the tree under assets/, served by package web.
//
//go:embed assets
var Assets embed.FS

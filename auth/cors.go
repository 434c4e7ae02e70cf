package auth

import (
	"net/http"

	"github.com/rs/cors"
)

// Cross-origin access follows from how meshbox authenticates: by token, never by cookie, so
// a page on any origin (a class project on a teacher's site, the Scratch or Smalruby editor)
// may call it, and no credentials mode is ever allowed. The middleware is github.com/rs/cors
// (well kept, and it answers Private Network Access preflights, which a public editor calling
// a box on the school LAN needs), rather than headers written by hand.

// CORSOptions choose how an entrance answers other origins.
type CORSOptions struct {
	// EchoOrigin answers with the caller's origin (and Vary: Origin) rather than "*", as
	// AppSync does and the aws-appsync client expects.
	EchoOrigin bool
	// Methods are the methods other origins may use.
	Methods []string
	// Expose lists response headers scripts of other origins may read.
	Expose []string
	// MaxAgeSeconds is how long a browser may cache a preflight.
	MaxAgeSeconds int
}

// CORS returns the middleware: preflights (OPTIONS with Access-Control-Request-Method) are
// answered 204 with the requested headers allowed (the AppSync links add headers with their
// releases; a fixed list would have to follow them) and Private Network Access granted;
// other requests get the allow-origin header and go on.
func CORS(o CORSOptions) func(http.Handler) http.Handler {
	opts := cors.Options{
		AllowedMethods:      o.Methods,
		AllowedHeaders:      []string{"*"},
		ExposedHeaders:      o.Expose,
		MaxAge:              o.MaxAgeSeconds,
		AllowPrivateNetwork: true,
	}
	if o.EchoOrigin {
		opts.AllowOriginFunc = func(string) bool { return true }
	} else {
		opts.AllowedOrigins = []string{"*"}
	}
	return cors.New(opts).Handler
}

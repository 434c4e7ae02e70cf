package config

import (
	"flag"
	"fmt"
)

// PrintFlags prints the flags of fs as meshbox spells settings everywhere, --name (the flag
// package's own PrintDefaults prints -name, which both accept): the subcommands' help then
// reads like meshbox --help and the documentation (docs/operations.md).
func PrintFlags(fs *flag.FlagSet) {
	out := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(out, "  --%s\n      %s%s\n", f.Name, f.Usage, def)
	})
}

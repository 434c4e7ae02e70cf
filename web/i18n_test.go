package web

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"meshbox/embed"
)

// Where the pages name catalog keys: data-i18n attributes in HTML (and in attribute objects in
// JavaScript), and full keys written as string literals in JavaScript (t('dash.title'), tables).
var (
	attrKey    = regexp.MustCompile(`data-i18n(?:-[a-z-]+)?["']?\s*[=:]\s*["']([^"']+)["']`)
	literalKey = regexp.MustCompile(`["']((?:lang|common|dash|try|client|error|transport|reason)\.[a-z0-9_.]+)["']`)
	placeholer = regexp.MustCompile(`\{(\w+)\}`)
)

// TestCatalogs: every key the dashboard, /try and the browser client use exists in every
// catalog, no catalog has a key nobody uses, each message has the same placeholders in every
// language, and the server lists every catalog as a language.
func TestCatalogs(t *testing.T) {
	t.Parallel()
	used := map[string]string{} // key -> a file that uses it
	err := fs.WalkDir(embed.Assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".html") || strings.HasSuffix(p, ".js")) {
			return err
		}
		body, err := fs.ReadFile(embed.Assets, p)
		if err != nil {
			return err
		}
		for _, re := range []*regexp.Regexp{attrKey, literalKey} {
			for _, m := range re.FindAllStringSubmatch(string(body), -1) {
				used[m[1]] = p
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(used) < 100 {
		t.Fatalf("found only %d keys in the assets: the scan is broken", len(used))
	}
	catalogs, err := fs.Glob(embed.Assets, "assets/i18n/*.json")
	if err != nil || len(catalogs) < 2 {
		t.Fatalf("catalogs: %v %v", catalogs, err)
	}
	placeholders := map[string]string{} // key -> its sorted placeholders in English
	for _, c := range append([]string{"assets/i18n/en.json"}, catalogs...) {
		body, err := fs.ReadFile(embed.Assets, c)
		if err != nil {
			t.Fatal(err)
		}
		var cat map[string]any
		if err := json.Unmarshal(body, &cat); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		for key, file := range used {
			if _, ok := cat[key]; !ok {
				t.Errorf("%s lacks %q (used in %s)", c, key, file)
			}
		}
		for key, v := range cat {
			if _, ok := used[key]; !ok {
				t.Errorf("%s has %q, which no page uses", c, key)
			}
			var texts []string
			switch v := v.(type) {
			case string:
				texts = []string{v}
			case map[string]any:
				if _, ok := v["other"]; !ok {
					t.Errorf("%s: plural %q has no \"other\" form", c, key)
				}
				for _, f := range v {
					s, _ := f.(string)
					texts = append(texts, s)
				}
			default:
				t.Errorf("%s: %q is neither a text nor plural forms", c, key)
			}
			for _, text := range texts {
				if strings.TrimSpace(text) == "" {
					t.Errorf("%s: %q is empty", c, key)
				}
				var ps []string
				for _, m := range placeholer.FindAllStringSubmatch(text, -1) {
					ps = append(ps, m[1])
				}
				sort.Strings(ps)
				got := strings.Join(ps, ",")
				if want, ok := placeholders[key]; !ok {
					placeholders[key] = got
				} else if got != want {
					t.Errorf("%s: %q has placeholders {%s}, English has {%s}", c, key, got, want)
				}
			}
		}
	}

	b := newTestBox(t, "")
	resp := b.do(t, http.MethodGet, "/assets/i18n/languages.json", "")
	var langs []struct{ Code, Name string }
	if err := json.NewDecoder(resp.Body).Decode(&langs); err != nil || resp.StatusCode != 200 {
		t.Fatalf("languages.json: %d %v", resp.StatusCode, err)
	}
	if len(langs) != len(catalogs) || langs[0].Code != "en" || langs[0].Name != "English" || langs[1].Code != "ja" || langs[1].Name != "日本語" {
		t.Errorf("languages = %+v, catalogs %v", langs, catalogs)
	}
}

package appconfig

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	want := []string{"inventree", "nextgisweb", "paperless-ngx", "papermerge"}
	if got := Presets(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Presets() = %v, want %v", got, want)
	}
	for _, name := range want {
		t.Run(name, func(t *testing.T) {
			data, err := Preset(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(data, "/etc/cairn/"+name+".toml")
			if err != nil {
				t.Fatalf("preset does not parse:\n%v", err)
			}
			if cfg.App.Name != name {
				t.Errorf("app.name = %q", cfg.App.Name)
			}
			if cfg.Database == nil || cfg.Database.Engine != EnginePostgres || cfg.Database.Migrations == "" {
				t.Errorf("database = %+v", cfg.Database)
			}
			if len(cfg.App.Paths) == 0 || cfg.Retention == nil || cfg.Schedule == nil {
				t.Errorf("incomplete preset: %+v", cfg)
			}
			if !strings.HasPrefix(string(data), "# cairn.toml for ") {
				t.Errorf("preset does not start with its description")
			}
		})
	}
}

// TestPresetAlternatives checks that the commented-out alternatives in the presets
// are valid too, by uncommenting the lines that set a key.
func TestPresetAlternatives(t *testing.T) {
	tests := []struct {
		preset string
		from   string // replace this line …
		to     string // … with this text
	}{
		{"paperless-ngx", "engine = \"postgres\"\ndsn = \"postgres://paperless@127.0.0.1:5432/paperless\"\nmigrations = \"django\"\n",
			"engine = \"sqlite\"\npath = \"/opt/paperless/data/db.sqlite3\"\nmigrations = \"django\"\n"},
		{"papermerge", "engine = \"postgres\"\ndsn = \"postgres://coco@127.0.0.1:5432/pmgdb\"\n",
			"engine = \"sqlite\"\npath = \"/var/lib/docker/volumes/papermerge_db/_data/db.sqlite3\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.preset, func(t *testing.T) {
			data, err := Preset(tc.preset)
			if err != nil {
				t.Fatal(err)
			}
			src := string(data)
			if !strings.Contains(src, tc.from) {
				t.Fatalf("preset has no %q", tc.from)
			}
			if _, err := Parse([]byte(strings.Replace(src, tc.from, tc.to, 1)), "cairn.toml"); err != nil {
				t.Errorf("alternative does not parse: %v", err)
			}
		})
	}
	// The Docker variant of the Paperless-ngx preset: its commented paths and version
	// replace the bare-metal ones in [app].
	data, _ := Preset("paperless-ngx")
	src := string(data)
	i := strings.Index(src, "# paths = [\n#   \"/var/lib/docker")
	appStart := strings.Index(src, "paths = [\n  \"/opt/paperless/data\"")
	appEnd := strings.Index(src, "[database]")
	if i < 0 || appStart < 0 || appEnd < appStart {
		t.Fatal("paperless-ngx preset has no Docker variant")
	}
	docker := strings.NewReplacer("#   ", "  ", "# ", "").Replace(src[i:])
	variant := src[:appStart] + docker + "\n" + src[appEnd:]
	cfg, err := Parse([]byte(variant), "/opt/paperless/cairn.toml")
	if err != nil {
		t.Fatalf("Docker variant does not parse: %v\n%s", err, variant)
	}
	if len(cfg.App.Paths) != 3 || cfg.App.Version.Command[0] != "docker" {
		t.Errorf("Docker variant: %+v", cfg.App)
	}
}

func TestPresetUnknown(t *testing.T) {
	_, err := Preset("nextcloud")
	if !errors.Is(err, ErrUnknownPreset) {
		t.Fatalf("err = %v, want ErrUnknownPreset", err)
	}
	if !strings.Contains(err.Error(), "paperless-ngx") {
		t.Errorf("error does not list the presets: %v", err)
	}
}

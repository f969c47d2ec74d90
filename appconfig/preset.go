package appconfig

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// ErrUnknownPreset is returned by Preset for names not in Presets.
var ErrUnknownPreset = errors.New("unknown preset")

//go:embed presets/*.toml
var presetFS embed.FS

// Presets lists the names of the built-in presets, sorted.
func Presets() []string {
	entries, err := fs.ReadDir(presetFS, "presets")
	if err != nil {
		panic(fmt.Sprintf("appconfig: embedded presets: %v", err))
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".toml"))
	}
	slices.Sort(names)
	return names
}

// Preset returns a commented cairn.toml for the named application (one of Presets),
// with that application's documented default folders and database. It parses with
// Parse; the repository and password file are placeholders to adapt.
func Preset(name string) ([]byte, error) {
	if !slices.Contains(Presets(), name) {
		return nil, fmt.Errorf("%w %q (available: %s)", ErrUnknownPreset, name, strings.Join(Presets(), ", "))
	}
	data, err := presetFS.ReadFile("presets/" + name + ".toml")
	if err != nil {
		return nil, fmt.Errorf("preset %s: %w", name, err)
	}
	return data, nil
}

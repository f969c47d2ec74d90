package crypto

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"filippo.io/age"
	"filippo.io/age/plugin"
)

// ErrPlugin is wrapped by errors of age plugins (hardware keys): a plugin program that
// is not installed, or one that failed while unwrapping a key file. It is not a wrong
// credential: the key file may well be the right one.
var ErrPlugin = errors.New("age plugin failed")

// PluginError reports a failing age plugin, by name.
type PluginError struct {
	Name string // plugin name: "yubikey" runs the program age-plugin-yubikey
	Err  error
}

func (e *PluginError) Error() string {
	var nf *plugin.NotFoundError
	if errors.As(e.Err, &nf) {
		return fmt.Sprintf("age plugin %q is not installed: the program age-plugin-%s is not on PATH", e.Name, e.Name)
	}
	return fmt.Sprintf("age plugin %q (program age-plugin-%s) failed: %v", e.Name, e.Name, e.Err)
}

// Unwrap returns ErrPlugin and the plugin's error.
func (e *PluginError) Unwrap() []error { return []error{ErrPlugin, e.Err} }

// DefaultPluginUI talks to the user on the terminal (/dev/tty) for plugins that ask
// for a PIN or a touch, and prints their messages on standard error.
func DefaultPluginUI() *plugin.ClientUI {
	return plugin.NewTerminalUI(func(format string, v ...any) {
		fmt.Fprintf(os.Stderr, "cairn: "+format+"\n", v...)
	}, func(format string, v ...any) {
		fmt.Fprintf(os.Stderr, "cairn: warning: "+format+"\n", v...)
	})
}

// pluginIdentity is an age plugin identity ("AGE-PLUGIN-NAME-1…") whose failures are
// reported as *PluginError. A plugin that does not recognise a file's stanzas returns
// age.ErrIncorrectIdentity, which passes unchanged.
type pluginIdentity struct {
	id *plugin.Identity

	mu      sync.Mutex
	lastErr error
}

func (p *pluginIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	key, err := p.id.Unwrap(stanzas)
	if err == nil || errors.Is(err, age.ErrIncorrectIdentity) {
		return key, err
	}
	perr := &PluginError{Name: p.id.Name(), Err: err}
	p.mu.Lock()
	p.lastErr = perr
	p.mu.Unlock()
	return nil, perr
}

func (p *pluginIdentity) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// parseRecipientString parses one recipient: native X25519 ("age1…"), hybrid
// post-quantum ("age1pq1…") or an age plugin's ("age1NAME1…").
func parseRecipientString(s string, ui *plugin.ClientUI) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "\n\r") {
		return nil, errors.New("invalid recipient: want one age1… recipient")
	}
	if r, err := parseRecipient(s); err == nil {
		return r, nil
	}
	if name, _, err := plugin.ParseRecipient(s); err == nil && name != "" {
		r, err := plugin.NewRecipient(s, ui)
		if err != nil {
			return nil, fmt.Errorf("invalid plugin recipient: %w", err)
		}
		return &pluginRecipient{r: r}, nil
	}
	return nil, fmt.Errorf("invalid recipient %q: not an X25519, post-quantum or plugin recipient", s)
}

// pluginRecipient reports a failing plugin's wrap as a *PluginError.
type pluginRecipient struct{ r *plugin.Recipient }

func (p *pluginRecipient) String() string { return p.r.String() }

func (p *pluginRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	st, err := p.r.Wrap(fileKey)
	if err != nil {
		return nil, &PluginError{Name: p.r.Name(), Err: err}
	}
	return st, nil
}

// SetRecipient sets the recipient new key files for this credential are encrypted to,
// for identities that cannot derive theirs (age plugins, hardware keys): "age1NAME1…"
// as printed by the plugin, or a native "age1…" / "age1pq1…" recipient. SealKey checks
// that the identity opens what was sealed to it.
func (f *IdentityFile) SetRecipient(s string) error {
	r, err := parseRecipientString(s, f.ui)
	if err != nil {
		return err
	}
	f.explicit = r
	return nil
}

// Plugins returns the names of the age plugins the file's identities need.
func (f *IdentityFile) Plugins() []string {
	var names []string
	for _, id := range f.ids {
		if p, ok := id.(*pluginIdentity); ok {
			names = append(names, p.id.Name())
		}
	}
	return names
}

// PluginErr returns the last failure of one of the file's plugins (a *PluginError),
// or nil. repo.Open tries a credential on every key file and reports failures as
// damaged keys; this tells the user that the plugin, not the repository, failed.
func (f *IdentityFile) PluginErr() error {
	for _, id := range f.ids {
		if p, ok := id.(*pluginIdentity); ok {
			if err := p.err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// recipientComment returns the recipient named by an identity file comment, as
// written by age-keygen ("# public key: age1…") and by plugins such as
// age-plugin-yubikey ("#    Recipient: age1yubikey1…").
func recipientComment(line string) (string, bool) {
	body := strings.TrimSpace(strings.TrimPrefix(line, "#"))
	key, val, ok := strings.Cut(body, ":")
	if !ok {
		return "", false
	}
	switch strings.ToLower(strings.TrimSpace(key)) {
	case "recipient", "public key":
	default:
		return "", false
	}
	val = strings.TrimSpace(val)
	if !strings.HasPrefix(val, "age1") || strings.ContainsAny(val, " \t") {
		return "", false
	}
	return val, true
}

package sftp

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Config is a parsed "sftp:" location.
type Config struct {
	User string // empty: the local user name
	Host string // host name or IP address, without brackets
	Port string // "22" unless given
	Path string // repository directory; relative paths start at the login directory
}

// Addr returns host:port for dialing and known_hosts lookups.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, c.Port) }

// ParseLocation parses "sftp:[user@]host:path" (scp-like; path may be relative to the
// login directory) and "sftp://[user@]host[:port]/absolute/path".
func ParseLocation(loc string) (Config, error) {
	if strings.HasPrefix(loc, "sftp://") {
		u, err := url.Parse(loc)
		if err != nil {
			return Config{}, fmt.Errorf("parse sftp location %q: %w", loc, err)
		}
		if _, hasPw := u.User.Password(); hasPw {
			return Config{}, fmt.Errorf("parse sftp location: passwords in the location are not supported; use an SSH key or agent")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return Config{}, fmt.Errorf("parse sftp location %q: query and fragment are not supported", loc)
		}
		cfg := Config{User: u.User.Username(), Host: u.Hostname(), Port: u.Port(), Path: u.Path}
		if cfg.Port == "" {
			cfg.Port = "22"
		}
		return cfg, cfg.check(loc)
	}
	rest, ok := strings.CutPrefix(loc, "sftp:")
	if !ok {
		return Config{}, fmt.Errorf("parse sftp location %q: missing sftp: prefix", loc)
	}
	cfg := Config{Port: "22"}
	if i := strings.Index(rest, "@"); i >= 0 && (strings.Index(rest, ":") < 0 || i < strings.Index(rest, ":")) {
		cfg.User, rest = rest[:i], rest[i+1:]
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return Config{}, fmt.Errorf("parse sftp location %q: unterminated [ in host", loc)
		}
		cfg.Host, rest = rest[1:end], rest[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return Config{}, fmt.Errorf("parse sftp location %q: want sftp:[user@]host:path", loc)
		}
		rest = rest[1:]
	} else {
		host, p, found := strings.Cut(rest, ":")
		if !found {
			return Config{}, fmt.Errorf("parse sftp location %q: want sftp:[user@]host:path or sftp://[user@]host[:port]/path", loc)
		}
		cfg.Host, rest = host, p
	}
	cfg.Path = rest
	return cfg, cfg.check(loc)
}

func (c Config) check(loc string) error {
	if c.Host == "" {
		return fmt.Errorf("parse sftp location %q: missing host", loc)
	}
	if c.Path == "" || c.Path == "/" {
		return fmt.Errorf("parse sftp location %q: missing repository path", loc)
	}
	if strings.ContainsAny(c.User, ":/") {
		return fmt.Errorf("parse sftp location %q: invalid user name %q", loc, c.User)
	}
	return nil
}

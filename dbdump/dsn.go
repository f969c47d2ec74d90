package dbdump

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// splitPGPassword removes the password from a libpq connection string (URL or
// keyword/value form) so that the rest can go on a command line, and returns it
// separately for PGPASSWORD.
func splitPGPassword(dsn string) (rest, password string, err error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", fmt.Errorf("parse postgres dsn: %w", redactURLError(err))
		}
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				password = pw
				u.User = url.User(u.User.Username())
			}
		}
		q := u.Query()
		if q.Has("password") {
			password = q.Get("password")
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		return u.String(), password, nil
	}
	kvs, err := parseKeywordValue(dsn)
	if err != nil {
		return "", "", err
	}
	var b strings.Builder
	for _, kv := range kvs {
		if kv[0] == "password" {
			password = kv[1]
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(quoteKeywordValue(kv[1]))
	}
	return b.String(), password, nil
}

// parseKeywordValue parses libpq's "key=value key='quoted \' value'" form.
func parseKeywordValue(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		skip()
		if i >= len(s) || s[i] != '=' || key == "" {
			return nil, fmt.Errorf("parse postgres dsn: expected key=value near %q", key)
		}
		i++
		skip()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					i++
					closed = true
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, errors.New("parse postgres dsn: unterminated quoted value")
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, val.String()})
	}
}

func quoteKeywordValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// redactURLError drops the URL (which may hold a password) from a url.Parse error.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// mysqlConn is a parsed mysql://user:pass@host:port/db?socket=… DSN.
type mysqlConn struct {
	user, password, host, port, socket, database string
	params                                       url.Values
}

// parseMySQLDSN parses mysql://user:pass@host:port/db (scheme "mariadb" too). The
// query may hold socket=/path/to/mysqld.sock, and ssl-mode / ssl-ca, which are handed to
// the client tools as --ssl-mode / --ssl-ca.
func parseMySQLDSN(dsn string) (mysqlConn, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return mysqlConn{}, fmt.Errorf("parse mysql dsn: %w", redactURLError(err))
	}
	if u.Scheme != "mysql" && u.Scheme != "mariadb" {
		return mysqlConn{}, fmt.Errorf("parse mysql dsn: scheme %q, want mysql://user:pass@host:port/database", u.Scheme)
	}
	c := mysqlConn{params: u.Query()}
	if u.User != nil {
		c.user = u.User.Username()
		c.password, _ = u.User.Password()
	}
	if u.Host != "" {
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, port = u.Host, ""
		}
		c.host, c.port = strings.Trim(host, "[]"), port
	}
	c.socket = c.params.Get("socket")
	c.database = strings.TrimPrefix(u.Path, "/")
	if c.database == "" || strings.Contains(c.database, "/") {
		return mysqlConn{}, fmt.Errorf("parse mysql dsn: want one database name in the path (mysql://user:pass@host:port/database)")
	}
	if c.host == "" && c.socket == "" {
		c.host = "127.0.0.1"
	}
	return c, nil
}

package sftp

import (
	"strings"
	"testing"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		loc  string
		want Config
	}{
		{"sftp:alice@host.example:/srv/repo", Config{User: "alice", Host: "host.example", Port: "22", Path: "/srv/repo"}},
		{"sftp:host:repo", Config{Host: "host", Port: "22", Path: "repo"}},
		{"sftp:bob@10.0.0.1:backups/cairn", Config{User: "bob", Host: "10.0.0.1", Port: "22", Path: "backups/cairn"}},
		{"sftp:carol@[::1]:/srv/r", Config{User: "carol", Host: "::1", Port: "22", Path: "/srv/r"}},
		{"sftp://alice@host:2222/srv/repo", Config{User: "alice", Host: "host", Port: "2222", Path: "/srv/repo"}},
		{"sftp://host/srv/repo", Config{Host: "host", Port: "22", Path: "/srv/repo"}},
		{"sftp://dave@[::1]:2200/r", Config{User: "dave", Host: "::1", Port: "2200", Path: "/r"}},
		{"sftp:user.name@host:/p:with:colons", Config{User: "user.name", Host: "host", Port: "22", Path: "/p:with:colons"}},
	}
	for _, tc := range tests {
		got, err := ParseLocation(tc.loc)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.loc, err)
		}
		if got != tc.want {
			t.Fatalf("parse %q: got %+v, want %+v", tc.loc, got, tc.want)
		}
	}
	if got := (Config{Host: "::1", Port: "22"}).Addr(); got != "[::1]:22" {
		t.Fatalf("addr of an IPv6 host: %q", got)
	}
	bad := map[string]string{
		"host:/srv":                     "missing sftp: prefix",
		"sftp:host":                     "want sftp:[user@]host:path",
		"sftp:host:":                    "missing repository path",
		"sftp::/srv":                    "missing host",
		"sftp://host":                   "missing repository path",
		"sftp://host/":                  "missing repository path",
		"sftp:[::1/srv":                 "unterminated [",
		"sftp://alice:hunter2@host/srv": "passwords in the location are not supported",
		"sftp://host/srv?x=1":           "query",
	}
	for loc, want := range bad {
		_, err := ParseLocation(loc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("parse %q: want an error containing %q, got %v", loc, want, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("parse %q: error %q reveals the password", loc, err)
		}
	}
}

package s3

import (
	"strings"
	"testing"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		loc  string
		want Config
	}{
		{"s3:http://127.0.0.1:9000/bucket", Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket"}},
		{"s3:http://127.0.0.1:9000/bucket/", Config{Endpoint: "127.0.0.1:9000", Bucket: "bucket"}},
		{"s3:https://s3.example.com/b/some/prefix", Config{Endpoint: "s3.example.com", Secure: true, Bucket: "b", Prefix: "some/prefix"}},
		{"s3:https://s3.example.com/b/some/prefix/", Config{Endpoint: "s3.example.com", Secure: true, Bucket: "b", Prefix: "some/prefix"}},
		{"s3:s3.amazonaws.com/bucket/repo", Config{Endpoint: "s3.amazonaws.com", Secure: true, Bucket: "bucket", Prefix: "repo"}},
		{"s3:localhost:9000/bucket", Config{Endpoint: "localhost:9000", Secure: true, Bucket: "bucket"}},
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
	bad := map[string]string{
		"http://host/bucket":                "missing s3: prefix",
		"s3:http://host":                    "missing bucket",
		"s3:http://host/":                   "missing bucket",
		"s3:http:///bucket":                 "missing host",
		"s3:/bucket":                        "missing host",
		"s3://host/bucket":                  "want s3:http://host/bucket",
		"s3:http://host/bucket/a/../b":      "not a clean path",
		"s3:http://host/bucket/a//b":        "not a clean path",
		"s3:http://host/bucket?x=1":         "query",
		"s3:http://AKIA:secret@host/bucket": "credentials in the location",
		"s3:AKIA:secret@host/bucket":        "credentials in the location",
	}
	for loc, want := range bad {
		_, err := ParseLocation(loc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("parse %q: want an error containing %q, got %v", loc, want, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("parse %q: error %q reveals the secret", loc, err)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := connect("s3:http://127.0.0.1:1/b", Options{LockMode: "forever"}); err == nil || !strings.Contains(err.Error(), `invalid object-lock mode "forever"`) {
		t.Fatalf("want an invalid-mode error, got %v", err)
	}
	b, err := connect("s3:http://127.0.0.1:1/b/p", Options{LockMode: "compliance", AccessKeyID: "a", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if b.opts.LockMode != Compliance {
		t.Fatalf("lock mode %q, want %q", b.opts.LockMode, Compliance)
	}
	if got := b.Key(handleForTest()); got != "p/data/ab/abcd" {
		t.Fatalf("key %q, want p/data/ab/abcd", got)
	}
}

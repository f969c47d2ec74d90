package auth

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func TestPasswordHashes(t *testing.T) {
	h, err := HashPasswordParams("hunter2 hunter2", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q", h)
	}
	h2, _ := HashPasswordParams("hunter2 hunter2", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"hunter2 hunter2": true, "hunter2": false, "": false, "hunter2 hunter2 ": false} {
		if ok, err := VerifyPassword(h+"\n", pw); err != nil || ok != want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	b, err := bcrypt.GenerateFromPassword([]byte("bcrypt pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := VerifyPassword(string(b), "bcrypt pw"); err != nil || !ok {
		t.Fatalf("bcrypt: %v %v", ok, err)
	}
	if ok, _ := VerifyPassword(string(b), "other"); ok {
		t.Fatal("bcrypt accepted a wrong password")
	}
	for _, bad := range []string{"", "plain text", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA$"} {
		if err := CheckHash(bad); err == nil {
			t.Errorf("CheckHash(%q) accepted it", bad)
		}
		if ok, err := VerifyPassword(bad, "x"); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v", bad, ok, err)
		}
	}
}

func TestSessions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewSessions(func() time.Time { return now })
	a, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Create()
	if a.ID == b.ID || a.CSRF == b.CSRF || len(a.ID) < 40 {
		t.Fatalf("weak or repeated session ids: %+v %+v", a, b)
	}
	now = now.Add(29 * time.Minute)
	if s.Get(a.ID) == nil {
		t.Fatal("session gone after 29 minutes")
	}
	now = now.Add(29 * time.Minute)
	if s.Get(a.ID) == nil {
		t.Fatal("a used session expired")
	}
	if s.Get(b.ID) != nil {
		t.Fatal("an idle session lives after 58 minutes")
	}
	for i := 0; i < 40; i++ {
		now = now.Add(20 * time.Minute)
		s.Get(a.ID)
	}
	if s.Get(a.ID) != nil {
		t.Fatal("a session lives beyond 12 hours")
	}
	if s.Get("") != nil || s.Len() != 0 {
		t.Fatal("store not empty")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(func() time.Time { return now })
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow("1.2.3.4"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.Fail("1.2.3.4")
		now = now.Add(time.Minute)
	}
	ok, wait := l.Allow("1.2.3.4")
	if ok || wait != 10*time.Minute {
		t.Fatalf("after 5 failures: %v, wait %v", ok, wait)
	}
	if ok, _ := l.Allow("5.6.7.8"); !ok {
		t.Fatal("another address is limited too")
	}
	now = now.Add(10 * time.Minute)
	if ok, _ := l.Allow("1.2.3.4"); !ok {
		t.Fatal("still limited after the window")
	}
	l.Reset("1.2.3.4")
	if ok, _ := l.Allow("1.2.3.4"); !ok {
		t.Fatal("limited after a reset")
	}
}

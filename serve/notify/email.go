package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"os"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appconfig"
)

// TLSOptions adjusts how the SMTP server's certificate is verified.
type TLSOptions struct {
	// RootCAs replaces the system roots when set.
	RootCAs *x509.CertPool
}

// tlsConfig returns the client TLS configuration for host: the system roots, plus the
// certificates of $SSL_CERT_FILE (read at each call, so a CA named there is trusted
// even when the system pool was loaded before), unless TLS.RootCAs replaces them.
func (n *Notifier) tlsConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if n.TLS != nil && n.TLS.RootCAs != nil {
		cfg.RootCAs = n.TLS.RootCAs
		return cfg, nil
	}
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read SSL_CERT_FILE: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SSL_CERT_FILE %s holds no PEM certificate", f)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// sendMail delivers one message describing ev through the configured server.
func (n *Notifier) sendMail(ctx context.Context, e *appconfig.Email, ev Event) error {
	host, _, err := net.SplitHostPort(e.SMTP)
	if err != nil {
		return permanent{fmt.Errorf("smtp address %q: %w", e.SMTP, err)}
	}
	password := ""
	if e.Username != "" {
		data, err := os.ReadFile(e.PasswordFile)
		if err != nil {
			return fmt.Errorf("read SMTP password file: %w", err)
		}
		password = strings.TrimRight(string(data), "\r\n")
	}
	msg, err := n.message(e, ev)
	if err != nil {
		return permanent{err}
	}

	ctx, cancel := context.WithTimeout(ctx, n.SMTPTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.SMTP)
	if err != nil {
		return fmt.Errorf("connect to SMTP server: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("SMTP greeting from %s: %w", e.SMTP, err)
	}
	defer c.Close()
	if err := c.Hello(n.heloName()); err != nil {
		return fmt.Errorf("SMTP EHLO: %w", err)
	}
	if e.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("SMTP server %s does not offer STARTTLS (notify.email.starttls is set)", e.SMTP)
		}
		tc, err := n.tlsConfig(host)
		if err != nil {
			return err
		}
		if err := c.StartTLS(tc); err != nil {
			return fmt.Errorf("SMTP STARTTLS: %w", err)
		}
	}
	if e.Username != "" {
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return fmt.Errorf("SMTP server %s does not offer AUTH (notify.email.username is set)", e.SMTP)
		}
		var a smtp.Auth
		switch {
		case hasMech(mechs, "PLAIN"):
			a = smtp.PlainAuth("", e.Username, password, host)
		case hasMech(mechs, "LOGIN"):
			a = &loginAuth{user: e.Username, pass: password, host: host}
		default:
			return permanent{fmt.Errorf("SMTP server %s offers no supported AUTH mechanism (have %q, want PLAIN or LOGIN)", e.SMTP, mechs)}
		}
		if err := c.Auth(a); err != nil {
			return fmt.Errorf("SMTP AUTH as %s: %w", e.Username, err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return fmt.Errorf("SMTP MAIL FROM: %w", err)
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("SMTP RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("SMTP DATA: %w", err)
	}
	// The message is accepted once DATA is answered; how QUIT goes does not matter.
	_ = c.Quit()
	return nil
}

func hasMech(mechs, m string) bool {
	for _, x := range strings.Fields(mechs) {
		if strings.EqualFold(x, m) {
			return true
		}
	}
	return false
}

func (n *Notifier) heloName() string {
	h := n.Hostname
	if h == "" || strings.ContainsAny(h, " \r\n") {
		return "localhost"
	}
	return h
}

// subject is the e-mail subject of ev.
func subject(ev Event) string {
	what := map[string]string{ResultSuccess: "succeeded", ResultWarning: "finished with warnings", ResultFailure: "FAILED"}[ev.Result]
	if what == "" {
		what = ev.Result
	}
	return fmt.Sprintf("[cairn] %s: %s %s on %s", ev.App, ev.Job, what, ev.Host)
}

// message builds the RFC 5322 message: plain text, UTF-8, quoted-printable.
func (n *Notifier) message(e *appconfig.Email, ev Event) ([]byte, error) {
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("message id: %w", err)
	}
	clean := func(s string) string { return strings.Map(dropControl, s) }
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", clean(e.From))
	hdr("To", clean(strings.Join(e.To, ", ")))
	hdr("Subject", mime.QEncoding.Encode("utf-8", clean(subject(ev))))
	hdr("Date", time.Now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+clean(n.heloName())+">")
	hdr("Auto-Submitted", "auto-generated")
	hdr("X-Cairn-App", mime.QEncoding.Encode("utf-8", clean(ev.App)))
	hdr("X-Cairn-Job", clean(ev.Job))
	hdr("X-Cairn-Result", clean(ev.Result))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(summaryText(ev), "\r\n", "\n")
	if _, err := qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b.Bytes(), nil
}

func dropControl(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return -1
	}
	return r
}

// loginAuth implements the LOGIN mechanism, which some servers offer instead of
// PLAIN. Like smtp.PlainAuth it refuses to send the password unencrypted except to
// localhost.
type loginAuth struct {
	user, pass, host string
}

func (a *loginAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !isLocalhost(server.Name) {
		return "", nil, errors.New("unencrypted connection: refusing to send the SMTP password")
	}
	if server.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch strings.ToLower(strings.TrimSpace(string(fromServer))) {
	case "username:", "user name", "username":
		return []byte(a.user), nil
	case "password:", "password":
		return []byte(a.pass), nil
	}
	return nil, fmt.Errorf("unexpected LOGIN challenge %q", fromServer)
}

func isLocalhost(name string) bool {
	return name == "localhost" || name == "127.0.0.1" || name == "::1"
}

// Package web is the HTTP interface of cairn serve: a server-rendered dashboard
// (html/template, a little vanilla JavaScript, all assets embedded) with the
// snapshots of each app on a timeline with their versions and migrations, the
// repository's growth, a browser of snapshot trees with file downloads, snapshot
// diffs, restores, and backup/check jobs whose progress the page follows; plus a JSON
// API for jobs and the Prometheus /metrics.
//
// Everything but the login page and its static assets needs a login: a session cookie
// (HttpOnly, SameSite=Strict, Secure behind TLS; 30 minutes idle, 12 hours at most)
// from the login form, or for scripts an Authorization header (Bearer token, or Basic
// with the password). Every POST with a session carries the session's CSRF token,
// failed logins are limited per client address, and files are served only as nodes of
// a snapshot's tree — a path that is not in the snapshot is a 404, nothing is read
// from the local file system.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cairn-backup/cairn/snapshot"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/serve"
	"github.com/cairn-backup/cairn/serve/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the Handler. Exactly one of PasswordHash and Token is set.
type Options struct {
	Server *serve.Server
	// PasswordHash is an argon2id or bcrypt hash (the password_hash_file).
	PasswordHash string
	// Token is the secret of token_file (or one made up at start).
	Token string
	Log   *slog.Logger
	// SessionIdle and SessionAbsolute override the session lifetimes.
	SessionIdle, SessionAbsolute time.Duration
	// MaxFailures failed logins per FailureWindow and client address are allowed
	// (defaults 5 per 15 minutes).
	MaxFailures   int
	FailureWindow time.Duration
}

// Handler serves the web interface.
type Handler struct {
	srv      *serve.Server
	hash     string
	token    string
	log      *slog.Logger
	sessions *auth.Sessions
	limiter  *auth.Limiter
	tmpl     map[string]*template.Template
	mux      *http.ServeMux
	static   http.Handler
}

const (
	sessionCookie = "cairn_session"
	loginCookie   = "cairn_login"
)

// New builds the handler.
func New(opts Options) (*Handler, error) {
	if opts.Server == nil {
		return nil, errors.New("web: no server")
	}
	if (opts.PasswordHash == "") == (opts.Token == "") {
		return nil, errors.New("web: set exactly one of a password hash and a token")
	}
	if opts.PasswordHash != "" {
		if err := auth.CheckHash(opts.PasswordHash); err != nil {
			return nil, fmt.Errorf("web: password hash: %w", err)
		}
	}
	if opts.Token != "" && len(opts.Token) < 16 {
		return nil, errors.New("web: the token must have at least 16 characters")
	}
	h := &Handler{srv: opts.Server, hash: strings.TrimSpace(opts.PasswordHash), token: strings.TrimSpace(opts.Token), log: opts.Log}
	if h.log == nil {
		h.log = slog.Default()
	}
	clock := opts.Server.Clock()
	h.sessions = auth.NewSessions(clock.Now)
	if opts.SessionIdle > 0 {
		h.sessions.Idle = opts.SessionIdle
	}
	if opts.SessionAbsolute > 0 {
		h.sessions.Absolute = opts.SessionAbsolute
	}
	h.limiter = auth.NewLimiter(clock.Now)
	if opts.MaxFailures > 0 {
		h.limiter.Max = opts.MaxFailures
	}
	if opts.FailureWindow > 0 {
		h.limiter.Window = opts.FailureWindow
	}
	if err := h.parseTemplates(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("web: static assets: %w", err)
	}
	h.static = http.StripPrefix("/static/", http.FileServer(http.FS(sub)))
	h.routes()
	return h, nil
}

func (h *Handler) parseTemplates() error {
	funcs := template.FuncMap{
		"bytes":    formatBytes,
		"ago":      func(t time.Time) string { return ago(h.srv.Clock().Now(), t) },
		"when":     formatTime,
		"short":    shortID,
		"dur":      formatSeconds,
		"migsum":   func(m map[string]string) string { return snapshot.MigrationSummary(m, 3) },
		"join":     strings.Join,
		"resultOK": func(r string) bool { return r == "success" },
		"isZero":   func(t time.Time) bool { return t.IsZero() },
	}
	pages, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return fmt.Errorf("web: templates: %w", err)
	}
	h.tmpl = map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", p)
		if err != nil {
			return fmt.Errorf("web: template %s: %w", name, err)
		}
		h.tmpl[name] = t
	}
	return nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", h.static)
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("POST /logout", h.authed(h.logout))
	m.HandleFunc("GET /{$}", h.authed(h.dashboard))
	m.HandleFunc("GET /snapshots/{id}", h.authed(h.snapshotPage))
	m.HandleFunc("GET /snapshots/{id}/download", h.authed(h.download))
	m.HandleFunc("GET /snapshots/{id}/dump", h.authed(h.downloadDump))
	m.HandleFunc("POST /snapshots/{id}/restore", h.authed(h.restore))
	m.HandleFunc("GET /diff", h.authed(h.diffPage))
	m.HandleFunc("GET /jobs", h.authed(h.jobsPage))
	m.HandleFunc("POST /jobs", h.authed(h.startJob))
	m.HandleFunc("GET /jobs/{id}", h.authed(h.jobPage))
	m.HandleFunc("GET /api/jobs", h.authed(h.apiJobs))
	m.HandleFunc("POST /api/jobs", h.authed(h.startJob))
	m.HandleFunc("GET /api/jobs/{id}", h.authed(h.apiJob))
	m.HandleFunc("GET /api/status", h.authed(h.apiStatus))
	m.HandleFunc("GET /metrics", h.authed(h.metrics))
	m.HandleFunc("/", h.authed(func(w http.ResponseWriter, r *http.Request, _ *request) {
		h.notFound(w, r, "no such page")
	}))
	h.mux = m
}

// ServeHTTP adds the security headers and dispatches.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		hd.Set("Cache-Control", "no-store")
	}
	h.mux.ServeHTTP(w, r)
}

// request is what the auth middleware learned about a request.
type request struct {
	session *auth.Session // nil for header (API) authentication
}

func (rq *request) csrf() string {
	if rq.session == nil {
		return ""
	}
	return rq.session.CSRF
}

type authedFunc func(w http.ResponseWriter, r *http.Request, rq *request)

// authed requires a session or valid credentials in the Authorization header, and a
// valid CSRF token on POSTs made with a session.
func (h *Handler) authed(fn authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ah := r.Header.Get("Authorization"); ah != "" {
			ip := clientIP(r)
			if ok, wait := h.limiter.Allow(ip); !ok {
				h.tooMany(w, r, wait)
				return
			}
			if !h.checkAuthorization(ah) {
				h.limiter.Fail(ip)
				h.log.Warn("failed API login", "client", ip, "path", r.URL.Path)
				w.Header().Set("WWW-Authenticate", h.challenge())
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			fn(w, r, &request{})
			return
		}
		var sess *auth.Session
		if c, err := r.Cookie(sessionCookie); err == nil {
			sess = h.sessions.Get(c.Value)
		}
		if sess == nil {
			if r.Method == http.MethodGet && acceptsHTML(r) {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", h.challenge())
			http.Error(w, "unauthorized: log in first", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
				return
			}
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = r.PostFormValue("csrf")
			}
			if !auth.TokenEqual(token, sess.CSRF) {
				h.log.Warn("rejected a POST without a valid CSRF token", "client", clientIP(r), "path", r.URL.Path)
				http.Error(w, "forbidden: invalid or missing CSRF token (reload the page)", http.StatusForbidden)
				return
			}
		}
		fn(w, r, &request{session: sess})
	}
}

func (h *Handler) challenge() string {
	if h.token != "" {
		return `Bearer realm="cairn"`
	}
	return `Basic realm="cairn", charset="UTF-8"`
}

// checkAuthorization accepts "Bearer <token>" when a token is configured and
// "Basic <any user:password>" when a password is.
func (h *Handler) checkAuthorization(ah string) bool {
	scheme, cred, _ := strings.Cut(ah, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && h.token != "":
		return auth.TokenEqual(strings.TrimSpace(cred), h.token)
	case strings.EqualFold(scheme, "Basic") && h.hash != "":
		r := &http.Request{Header: http.Header{"Authorization": {ah}}}
		_, pw, ok := r.BasicAuth()
		if !ok {
			return false
		}
		good, err := auth.VerifyPassword(h.hash, pw)
		return err == nil && good
	}
	return false
}

// sameOrigin rejects requests whose Origin (or, lacking it, Referer) names another
// host: a second line of defense next to the CSRF token and SameSite cookies.
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" || src == "null" {
		return src == ""
	}
	u, err := url.Parse(src)
	if err != nil {
		return false
	}
	return u.Host == r.Host
}

// acceptsHTML reports whether the client asked for a page: browsers navigating say
// text/html; scripts and API clients get plain status codes instead of redirects.
func acceptsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// clientIP is the address of the peer; proxies' headers are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// secure reports whether cookies should carry the Secure flag: the connection is TLS,
// or a proxy on this machine says it terminated TLS.
func secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if ip := net.ParseIP(clientIP(r)); ip != nil && ip.IsLoopback() {
		return strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	}
	return false
}

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode})
}

func (h *Handler) tooMany(w http.ResponseWriter, r *http.Request, wait time.Duration) {
	secs := int(wait.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	h.log.Warn("login refused: too many failures", "client", clientIP(r), "retry_after_seconds", secs)
	http.Error(w, fmt.Sprintf("too many failed logins from your address; try again in %d seconds", secs), http.StatusTooManyRequests)
}

type loginData struct {
	pageData
	Next     string
	Error    string
	Token    bool
	LoginKey string
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.renderLogin(w, r, http.StatusOK, "")
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// Reuse the login key of an earlier visit: several tabs, or a browser fetching
	// an icon that redirects here, must not invalidate a login form already shown.
	var key string
	if c, err := r.Cookie(loginCookie); err == nil && len(c.Value) == 32 {
		key = c.Value
	} else if key, err = auth.RandomToken(24); err != nil {
		h.serverError(w, r, err)
		return
	}
	h.setCookie(w, r, loginCookie, key, 1800)
	next := r.FormValue("next")
	if !localPath(next) {
		next = "/"
	}
	h.render(w, r, status, "login", &loginData{pageData: pageData{Title: "Log in"}, Next: next, Error: msg, Token: h.token != "", LoginKey: key})
}

// localPath accepts only paths on this server, never "//host" or "/\host".
func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "/\\") && !strings.ContainsAny(p, "\r\n")
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, err := r.Cookie(loginCookie)
	if err != nil || !auth.TokenEqual(r.PostFormValue("csrf"), c.Value) || !sameOrigin(r) {
		h.log.Warn("rejected a login without a valid CSRF token", "client", clientIP(r))
		http.Error(w, "forbidden: invalid or missing CSRF token (reload the login page)", http.StatusForbidden)
		return
	}
	ip := clientIP(r)
	if ok, wait := h.limiter.Allow(ip); !ok {
		h.tooMany(w, r, wait)
		return
	}
	secret := r.PostFormValue("password")
	good := false
	if h.token != "" {
		good = auth.TokenEqual(strings.TrimSpace(secret), h.token)
	} else if secret != "" {
		good, err = auth.VerifyPassword(h.hash, secret)
		if err != nil {
			h.serverError(w, r, err)
			return
		}
	}
	if !good {
		h.limiter.Fail(ip)
		h.log.Warn("failed login", "client", ip)
		what := "password"
		if h.token != "" {
			what = "token"
		}
		h.renderLogin(w, r, http.StatusUnauthorized, "Wrong "+what+".")
		return
	}
	h.limiter.Reset(ip)
	if old, err := r.Cookie(sessionCookie); err == nil {
		h.sessions.Delete(old.Value)
	}
	sess, err := h.sessions.Create()
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	h.log.Info("login", "client", ip)
	h.setCookie(w, r, sessionCookie, sess.ID, 0)
	h.setCookie(w, r, loginCookie, "", -1)
	next := r.PostFormValue("next")
	if !localPath(next) {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, rq *request) {
	if rq.session != nil {
		h.sessions.Delete(rq.session.ID)
	}
	h.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (h *Handler) metrics(w http.ResponseWriter, r *http.Request, _ *request) {
	w.Header().Set("Content-Type", serve.MetricsContentType)
	if err := h.srv.WriteMetrics(r.Context(), w); err != nil {
		h.log.Warn("write metrics", "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// pageData is what every page template gets.
type pageData struct {
	Title   string
	App     string
	CSRF    string
	Version string
	Nav     string
}

func (h *Handler) page(rq *request, title, nav string) pageData {
	return pageData{Title: title, App: h.srv.Config().App.Name, CSRF: rq.csrf(), Version: h.srv.Version(), Nav: nav}
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t := h.tmpl[name]
	if t == nil {
		h.serverError(w, r, fmt.Errorf("no template %q", name))
		return
	}
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "layout.html", data); err != nil {
		h.serverError(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

type errorData struct {
	pageData
	Status  int
	Message string
}

func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if !acceptsHTML(r) || strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	h.render(w, r, status, "error", &errorData{pageData: pageData{Title: http.StatusText(status), App: h.srv.Config().App.Name,
		Version: h.srv.Version()}, Status: status, Message: msg})
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request, msg string) {
	h.errorPage(w, r, http.StatusNotFound, msg)
}

func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	h.log.Error("request failed", "path", r.URL.Path, "err", err)
	h.errorPage(w, r, http.StatusInternalServerError, err.Error())
}

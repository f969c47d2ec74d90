package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// browser is a headless Chromium driven through the DevTools protocol over the pipe
// of --remote-debugging-pipe: JSON messages separated by NUL bytes, commands on the
// child's fd 3, replies and events on its fd 4.
type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	w   *os.File
	r   *os.File

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpMessage
	events  []chan cdpMessage
	closed  bool
	readErr error

	session string // the page's session
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *cdpError       `json:"error,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
}

type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data,omitempty"`
}

func (e *cdpError) Error() string {
	return fmt.Sprintf("cdp error %d: %s %s", e.Code, e.Message, e.Data)
}

// findChromium returns the Chromium binary: $CAIRN_CHROMIUM, else chromium or
// chromium-browser on PATH.
func findChromium() string {
	if p := os.Getenv("CAIRN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser launches Chromium with a fresh profile and opens one page.
func startBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	profile := t.TempDir()
	// Commands go to the child's fd 3; replies come from its fd 4.
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir="+profile, "--remote-debugging-pipe", "--window-size=1280,900", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, respW}
	logf, err := os.Create(profile + "/chromium.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	cmdR.Close()
	respW.Close()
	b := &browser{t: t, cmd: cmd, w: cmdW, r: respR, pending: map[int64]chan cdpMessage{}}
	go b.readLoop()
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.call(ctx, "", "Browser.close", nil, nil)
		cancel()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		cmdW.Close()
		respR.Close()
		logf.Close()
		if t.Failed() {
			if data, err := os.ReadFile(profile + "/chromium.log"); err == nil && len(data) > 0 {
				t.Logf("chromium log (tail):\n%s", tail(string(data), 3000))
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatalf("chromium does not answer over the DevTools pipe: %v", err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatal(err)
	}
	b.session = att.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable"} {
		if err := b.call(ctx, b.session, m, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.call(ctx, b.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (b *browser) readLoop() {
	br := bufio.NewReaderSize(b.r, 1<<20)
	for {
		data, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			if errors.Is(err, io.EOF) {
				err = errors.New("chromium closed the DevTools pipe")
			}
			b.readErr = err
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(data[:len(data)-1], &m); err != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.pending[m.ID]; ch != nil {
				ch <- m
				delete(b.pending, m.ID)
			}
		} else {
			for _, ch := range b.events {
				select {
				case ch <- m:
				default:
				}
			}
		}
		b.mu.Unlock()
	}
}

// subscribe returns a channel receiving every event from now on.
func (b *browser) subscribe() (<-chan cdpMessage, func()) {
	ch := make(chan cdpMessage, 256)
	b.mu.Lock()
	b.events = append(b.events, ch)
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, c := range b.events {
			if c == ch {
				b.events = append(b.events[:i], b.events[i+1:]...)
				return
			}
		}
	}
}

// call sends a command (to the page session, or the browser with session "") and
// decodes its result into result.
func (b *browser) call(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	if b.readErr != nil {
		err := b.readErr
		b.mu.Unlock()
		return err
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.w.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: write to chromium: %w", method, err)
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: %v", method, b.readErr)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %w", method, m.Error)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	}
}

// eval evaluates a JavaScript expression in the page (awaiting promises) and
// decodes its value into out (which may be nil).
func (b *browser) eval(js string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := b.call(ctx, b.session, "Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true, "awaitPromise": true}, &res)
	if err != nil {
		return err
	}
	if e := res.ExceptionDetails; e != nil {
		msg := e.Text
		if e.Exception != nil {
			msg += " " + e.Exception.Description
		}
		return fmt.Errorf("javascript %q: %s", js, msg)
	}
	if out != nil && len(res.Result.Value) > 0 {
		return json.Unmarshal(res.Result.Value, out)
	}
	return nil
}

// must evaluates js and fails the test on an error.
func (b *browser) must(js string, out any) {
	b.t.Helper()
	if err := b.eval(js, out); err != nil {
		b.t.Fatal(err)
	}
}

// waitFor polls the JavaScript condition until it is true.
func (b *browser) waitFor(what, cond string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		var ok bool
		if err := b.eval("Boolean("+cond+")", &ok); err == nil && ok {
			return
		} else if err != nil {
			lastErr = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	var text string
	_ = b.eval("location.href + '\\n' + (document.body ? document.body.innerText.slice(0, 2000) : '')", &text)
	b.t.Fatalf("timed out waiting for %s (%s); last error %v; page:\n%s", what, cond, lastErr, text)
}

// act runs js that leads to a new page (a click, a submit, a navigation) and waits
// until that page has loaded.
func (b *browser) act(what, js string) {
	b.t.Helper()
	b.must("window.__cairnOld = true", nil)
	b.must(js, nil)
	b.waitFor(what, "!window.__cairnOld && document.readyState === 'complete'", 30*time.Second)
}

// open navigates to url and waits for the page.
func (b *browser) open(url string) {
	b.t.Helper()
	b.act("load "+url, fmt.Sprintf("location.href = %q", url))
}

// text returns the visible text of the page.
func (b *browser) text() string {
	b.t.Helper()
	var s string
	b.must("document.body.innerText", &s)
	return s
}

// screenshot saves a PNG of the whole page.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var metrics struct {
		CSSContentSize struct {
			Width  float64 `json:"width"`
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	if err := b.call(ctx, b.session, "Page.getLayoutMetrics", nil, &metrics); err != nil {
		b.t.Fatal(err)
	}
	h := metrics.CSSContentSize.Height
	if h < 900 {
		h = 900
	}
	var shot struct {
		Data string `json:"data"`
	}
	err := b.call(ctx, b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": 1280, "height": h, "scale": 1}}, &shot)
	if err != nil {
		b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

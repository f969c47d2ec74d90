// Package e2e holds cairn's browser end-to-end tests: they build the cairn binary,
// run `cairn serve` on a test repository and drive a headless Chromium through the
// DevTools protocol (over --remote-debugging-pipe, no extra dependency) to log in,
// browse and download, compare snapshots and start a backup as a person would. They
// skip when no Chromium is installed (Debian package chromium).
//
// With CAIRN_E2E_SCREENSHOTS=DIR the tests save screenshots of the main pages there
// (docs/screenshots holds the ones the documentation shows).
package e2e

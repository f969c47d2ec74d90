package main

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cairn": func() {
			os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
		},
	})
}

// TestScripts runs the CLI scenarios in testdata/script/*.txt: each one a fresh
// directory, the real cairn binary, and assertions on stdout, stderr and exit codes.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("CAIRN_REPOSITORY", env.WorkDir+"/repo")
			env.Setenv("CAIRN_PASSWORD_FILE", env.WorkDir+"/pw")
			env.Setenv("HOME", env.WorkDir+"/home")
			return os.WriteFile(env.WorkDir+"/pw", []byte("correct horse\n"), 0o600)
		},
		RequireExplicitExec: false,
	})
}

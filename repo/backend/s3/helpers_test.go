package s3

import "github.com/cairn-backup/cairn/repo/backend"

func handleForTest() backend.Handle { return backend.Handle{Type: backend.PackFile, Name: "abcd"} }

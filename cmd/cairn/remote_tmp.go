package main

import (
	"context"
	"fmt"

	"github.com/cairn-backup/cairn/repo/backend"
)

func openRemote(ctx context.Context, loc string, create bool) (backend.Backend, error) {
	return nil, fmt.Errorf("remote location %s", loc)
}

package main

import (
	"context"
	"time"

	"github.com/cairn-backup/cairn/repo/backend"
	"github.com/cairn-backup/cairn/repo/backend/location"
)

// openRemote opens (or creates) an s3: or sftp: repository location, with credentials
// and options from cairn.toml where given, else from the environment.
func (g *globalOptions) openRemote(ctx context.Context, loc string, create bool) (backend.Backend, error) {
	var opts location.Options
	cfg, err := g.appConfig()
	if err != nil {
		return nil, err
	}
	if cfg != nil && cfg.S3 != nil {
		opts.S3.AccessKeyID = cfg.S3.AccessKeyID
		opts.S3.SecretAccessKey = cfg.S3.SecretAccessKey
		opts.S3.Region = cfg.S3.Region
		if cfg.S3.ObjectLockDays > 0 {
			opts.S3.LockRetention = time.Duration(cfg.S3.ObjectLockDays) * 24 * time.Hour
			opts.S3.LockMode = cfg.S3.ObjectLockMode
		}
	}
	if cfg != nil && cfg.SFTP != nil {
		opts.SFTP.KeyFile = cfg.SFTP.KeyFile
		opts.SFTP.KnownHostsFile = cfg.SFTP.KnownHosts
	}
	if create {
		return location.Create(ctx, loc, opts)
	}
	return location.Open(ctx, loc, opts)
}

//go:build !unix && !windows

package local

func isNoSpace(err error) bool { return false }

func syncUnsupported(err error) bool { return true }
